"""inference.checked: one tweet through int8 first, its close calls again through the exact format;
batches in the exact format; prepared in the background, the exact format serving meanwhile."""
import logging
import shutil
import threading

import numpy as np
import pytest

from inference import checked, onnx_backend
from inference.checked import Checked, gate_of, unsure
from inference.classifier import Classifier

TWEETS = ["i love this so much", "awful terrible day", "going to work on the bus", "love", "meeting",
          "the worst monday at the office, so sad and angry", "great fun with my best friends today"]


@pytest.fixture
def run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / trained_run.name, ignore=shutil.ignore_patterns(onnx_backend.SERVING_DIR))


def test_the_gate_is_twice_the_largest_move_of_a_label_and_close_calls_are_checked():
    exact = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    moved = exact * np.exp([[0.05, 0.0, 0.0], [0.0, -0.02, 0.0]])
    moved /= moved.sum(1, keepdims=True)
    assert gate_of(moved, exact) == pytest.approx(2 * (0.05 - 0.05 / 3), rel=1e-5)  # the move beyond the row's mean
    probs = np.array([[0.5, 0.3, 0.2], [0.41, 0.2, 0.39], [0.1, 0.1, 0.8]])
    assert unsure(probs, gate=0.1).tolist() == [False, True, False]  # log 0.41 - log 0.39 = 0.05 < 0.1


def test_only_the_close_calls_go_to_the_exact_format():
    fast = lambda texts: np.array([[0.41, 0.2, 0.39] if t == "close" else [0.8, 0.1, 0.1] for t in texts])
    asked = []

    def exact(texts):
        asked.append(texts)
        return np.array([[0.3, 0.3, 0.4]] * len(texts))

    checked = Checked(fast, gate=0.1)
    got = checked(["clear", "close", "clear"], exact)
    assert asked == [["close"]] and (checked.answered, checked.rechecked) == (3, 1)
    np.testing.assert_allclose(got, [[0.8, 0.1, 0.1], [0.3, 0.3, 0.4], [0.8, 0.1, 0.1]])


def test_a_run_serves_one_tweet_in_int8_checked_and_batches_in_the_exact_format(run):
    reference = Classifier.load(run, precision="fp32").predict_proba(TWEETS)
    clf = Classifier.load(run, precision="onnx-int8-checked")
    assert (clf.precision, clf.checked_by) == ("onnx-int8-checked", "onnx-fp32")  # conftest: no AMX
    assert clf.checked_ready.wait(60) and clf.checked is not None and clf.checked.gate > 0
    assert any(p.name.startswith("onnx-int8-") for p in (run / onnx_backend.SERVING_DIR).glob("*.onnx"))

    batch = clf.predict_proba(TWEETS)
    np.testing.assert_array_equal(batch, clf.exact_proba(TWEETS))  # a batch never goes through int8
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in TWEETS])
    assert (one_by_one.argmax(1) == reference.argmax(1)).all()
    assert np.abs(one_by_one - reference).max() < 0.05

    gate = clf.checked.gate
    clf.checked.gate = np.inf  # every answer checked: the exact format's
    np.testing.assert_allclose(clf.predict_proba([TWEETS[0]]), clf.exact_proba([TWEETS[0]]))
    clf.checked.gate = 0.0     # none checked: int8's own, which differs a little
    int8 = clf.predict_proba([TWEETS[0]])
    assert not np.array_equal(int8, clf.exact_proba([TWEETS[0]])) and np.abs(int8 - reference[:1]).max() < 0.05
    clf.checked.gate = gate
    assert clf.classify(TWEETS[1])[0].label == ["negative", "neutral", "positive"][reference[1].argmax()]


def test_until_int8_is_ready_the_exact_format_answers(run, monkeypatch):
    release = threading.Event()
    real = Classifier._int8

    def slow_export(self, *args):
        release.wait(60)
        return real(self, *args)
    monkeypatch.setattr(Classifier, "_int8", slow_export)
    clf = Classifier.load(run, precision="onnx-int8-checked")
    assert not clf.checked_ready.is_set() and clf.checked is None
    np.testing.assert_array_equal(clf.predict_proba([TWEETS[0]]), clf.exact_proba([TWEETS[0]]))
    release.set()
    assert clf.checked_ready.wait(60) and clf.checked is not None


def test_when_int8_cannot_be_had_every_tweet_is_served_exact_and_the_log_says_why(run, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")
    monkeypatch.setattr(onnx_backend, "onnx_model", broken)
    with caplog.at_level(logging.WARNING, logger=checked.__name__):
        clf = Classifier.load(run, precision="onnx-int8-checked")
        assert clf.checked_ready.wait(60)
    assert clf.checked is None and "no int8 first pass (RuntimeError: exporter broke)" in caplog.text
    np.testing.assert_array_equal(clf.predict_proba([TWEETS[0]]), clf.exact_proba([TWEETS[0]]))
