import shutil
import threading

import numpy as np
import pytest

from conftest import make_tweets
from core.errors import UserError
from core.runs import RunWriter
from inference import Classifier, InputError, ModelServer, NoModel


@pytest.fixture(scope="module")
def clf(trained_run):
    return Classifier.load(trained_run)


def test_labels_and_probabilities(clf, trained_run):
    tweets = make_tweets(30, seed=9)   # unseen tweets of the fixture's kind
    preds = clf.classify([t["text"] for t in tweets])
    right = sum(p.label == t["label_text"] for p, t in zip(preds, tweets))
    assert right >= 20, f"only {right}/30 right: the fine-tuned tiny model should have learned the words"
    for p in preds:
        assert set(p.scores) == {"negative", "neutral", "positive"}
        assert abs(sum(p.scores.values()) - 1) < 1e-5 and p.confidence == max(p.scores.values())
    assert clf.name == trained_run.name


def test_batch_equals_one_by_one_and_order_is_kept(clf):
    texts = ["love", "i hate the monday bus so so much today", "meeting", "great fun with my best friends today"]
    batch = clf.predict_proba(texts)
    single = np.stack([clf.predict_proba([t])[0] for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_bad_text(clf):
    for text in ["", "   \n\t"]:
        with pytest.raises(InputError, match="empty"):
            clf.classify(text)
    with pytest.raises(InputError):
        clf.classify([None])
    long = clf.classify("love " * 200_000)[0]   # a megabyte: truncated, not a crash
    assert long.label in long.scores


def test_thread_safe(clf):
    texts = [f"i love this {i}" if i % 2 else f"awful sad day {i}" for i in range(40)]
    expected = [p.label for p in clf.classify(texts)]
    results, errors = {}, []

    def work(i):
        try:
            results[i] = clf.classify(texts[i]).pop().label
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and [results[i] for i in range(len(texts))] == expected


def test_incomplete_run_is_refused(runs_dir):
    w = RunWriter(runs_dir)
    w.abandon("stopped")
    with pytest.raises(UserError, match="not complete"):
        Classifier.load(w.path)


def test_server_serves_latest_and_switches_without_failing_requests(trained_run, runs_dir, tiny_model):
    server = ModelServer(runs_dir, base_model=str(tiny_model))
    first = server.get()
    assert first.kind == "few-shot" and first.classify("i love it")[0].label
    target = runs_dir / "20990101-000000-beef"
    shutil.copytree(trained_run, target)
    stop, errors = threading.Event(), []

    def hammer():
        while not stop.is_set():
            try:
                server.get().classify("love this")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    assert server.refresh() is True
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert server.get().name == "20990101-000000-beef" and server.refresh() is False


def test_nothing_to_serve_says_what_to_set(runs_dir):
    with pytest.raises(NoModel, match="BASE_MODEL"):
        ModelServer(runs_dir, base_model="gpt2").get()
