"""inference.coalesce: concurrent requests share model calls, each gets its own rows, errors reach all."""
import threading
import time

import numpy as np
import pytest

from inference.coalesce import Coalescer


def slow_model(calls: list):
    def fn(texts):
        calls.append(len(texts))
        time.sleep(0.05)  # long enough for the other threads to queue up behind the first call
        return np.array([[len(t), i] for i, t in enumerate(texts)], dtype=float)
    return fn


def test_a_lone_request_runs_at_once_in_one_call():
    calls = []
    batched = Coalescer(slow_model(calls), threading.Lock())
    assert batched(["ab", "abc"]).tolist() == [[2, 0], [3, 1]] and calls == [2]


def test_waiting_requests_share_calls_and_get_their_own_rows():
    calls, results = [], {}
    batched = Coalescer(slow_model(calls), threading.Lock())

    def client(i):
        results[i] = batched(["x" * i, "y" * i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == list(range(1, 17))
    assert all(results[i][:, 0].tolist() == [i, i] for i in results)  # each client its own two rows
    assert sum(calls) == 32 and len(calls) < 16 and batched.calls == len(calls)  # fewer calls than requests


def test_max_rows_bounds_a_call():
    calls = []
    batched = Coalescer(slow_model(calls), threading.Lock(), max_rows=4)
    threads = [threading.Thread(target=batched, args=(["a", "b"],)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(calls) == 16 and max(calls) <= 4


def test_a_failing_call_fails_each_of_its_requests():
    def broken(texts):
        time.sleep(0.05)
        raise RuntimeError("model broke")

    batched, errors = Coalescer(broken, threading.Lock()), []

    def client():
        try:
            batched(["a"])
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=client) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == ["model broke"] * 5
    with pytest.raises(RuntimeError):  # and it keeps serving: the next call runs (and fails) again
        batched(["b"])


def test_concurrent_classify_answers_as_one_at_a_time(trained_run):
    from inference.classifier import Classifier

    clf = Classifier.load(trained_run, precision="fp32")
    tweets = [f"tweet number {i} " + "so good " * (i % 5) for i in range(24)]
    alone = [clf.classify(t)[0] for t in tweets]
    together = [None] * len(tweets)

    def client(i):
        together[i] = clf.classify(tweets[i])[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(tweets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [p.label for p in together] == [p.label for p in alone]
    for a, b in zip(alone, together):
        assert b.scores == pytest.approx(a.scores, abs=1e-5)  # padded with longer tweets: the same answer
