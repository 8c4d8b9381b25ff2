import shutil
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import make_tweets
from core.errors import UserError
from core.runs import RunWriter
from inference import Classifier, InputError, ModelLoading, ModelServer, NoModel, find_model


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
    stop, errors, served = threading.Event(), [], []

    def hammer():
        while not stop.is_set():
            try:
                model = server.get()
                model.classify("love this")
                served.append(model.name)
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
    assert first.name in served  # the old model answered while the new run was loaded (and exported)
    assert server.get().name == "20990101-000000-beef" and server.refresh() is False


def test_nothing_to_serve_says_what_to_set(runs_dir):
    with pytest.raises(NoModel, match="BASE_MODEL"):
        ModelServer(runs_dir, base_model="gpt2").get()


def test_server_loads_in_the_background_waits_then_retries(runs_dir, monkeypatch):
    """One state machine: a request waits up to wait_s for the load under way; when nothing could load,
    a request after retry_s starts another load (a Hub that was down may be back)."""
    import inference.serving as serving

    release, answers, stub = threading.Event(), [NoModel("the Hub is down")], SimpleNamespace(name="m", source="s")

    def find(*args, **kwargs):
        assert release.wait(10)
        answer = answers.pop(0) if answers else stub
        if isinstance(answer, Exception):
            raise answer
        return answer
    monkeypatch.setattr(serving, "find_model", find)
    server = ModelServer(runs_dir, hub_model_id="someone/repo", wait_s=0.05, retry_s=0.0)
    with pytest.raises(ModelLoading, match="still loading"):
        server.get()  # the first request starts the load and waits for it, briefly
    release.set()
    with pytest.raises(NoModel, match="the Hub is down") as failed:
        server.get(wait_s=5)
    assert not isinstance(failed.value, ModelLoading)
    deadline = time.monotonic() + 5  # that request started another load, which now succeeds
    while server.model is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert server.get() is stub


def test_a_hub_repo_is_asked_once_per_load(runs_dir, monkeypatch):
    import core.errors
    import inference.classifier as classifier

    asked, loaded = [], []
    info = SimpleNamespace(sha="0123456789abcdef")
    monkeypatch.setattr(core.errors.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(core.errors, "model_info", lambda repo, timeout: asked.append(repo) or info)
    monkeypatch.setattr(classifier, "model_info", lambda repo, timeout: asked.append(repo) or info)
    monkeypatch.setattr(Classifier, "load", classmethod(lambda cls, source, precision, revision=None:
                                                        loaded.append(revision) or SimpleNamespace(source=source)))
    find_model(runs_dir, hub_model_id="someone/tweet-sentiment")
    assert asked == ["someone/tweet-sentiment"] and loaded == [info.sha]


def test_a_run_serves_with_the_max_length_it_was_trained_with_wherever_it_comes_from(trained_run, tmp_path):
    """The trained max_length travels in the checkpoint (its tokenizer), not only in train_config.json: a
    copy with just the weights, config and tokenizer (what a Hub repo holds) truncates where training did."""
    import json

    assert json.loads((trained_run / "tokenizer_config.json").read_text())["model_max_length"] == 32
    bare = tmp_path / "from-the-hub"
    shutil.copytree(trained_run, bare, ignore=shutil.ignore_patterns("train_config.json", "*.jsonl", "serving"))
    for source in (trained_run, bare):
        clf = Classifier.load(source, precision="fp32")
        assert clf.max_length == 32
        long_tweet = " ".join(["good", "bad"] * 100)
        prefix = clf.tokenizer.decode(clf.tokenizer(long_tweet)["input_ids"][:32])
        assert np.allclose(clf.predict_proba([long_tweet]), clf.predict_proba([prefix]), atol=1e-5)
