"""inference.policy: `auto` serves fp32 at once, then for one tweet and for batches the format that measures
fastest here, its labels kept by the check; the choice is kept per machine and model shape."""
import logging
import shutil
import threading

import numpy as np
import pytest

from inference import onnx_backend, policy
from inference.classifier import Classifier
from inference.policy import Timing, choose

TWEETS = ["i love this so much", "awful terrible day", "going to work on the bus", "love", "meeting",
          "the worst monday at the office, so sad and angry", "great fun with my best friends today"]


@pytest.fixture
def run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / trained_run.name, ignore=shutil.ignore_patterns(onnx_backend.SERVING_DIR))


@pytest.fixture(autouse=True)
def choices(tmp_path, monkeypatch):
    """Each test measures afresh: no choice remembered from another test or an earlier session."""
    monkeypatch.setattr(policy, "CHOICES", tmp_path / "serving-choice.json")


def test_each_path_takes_the_lowest_cost_with_its_checks_counted():
    exact = Timing("fp32", single_ms=80, batch_per_s=40)
    int8 = Timing("onnx-int8", single_ms=24, batch_per_s=80, gate=0.5, checked=0.1,   # 24 + 8 ms
                  batch_gate=0.5, batch_checked=0.1)                                  # 1/(1/80 + .1/40)
    bf16 = Timing("bf16", single_ms=30, batch_per_s=90, gate=0.3, checked=0.5,        # 70 ms
                  batch_gate=0.3, batch_checked=0.5)                                  # 1/(1/90 + .5/40)
    assert choose({"fp32": exact, "onnx-int8": int8, "bf16": bf16}) == ("onnx-int8", "onnx-int8")
    assert int8.single_cost(exact) == pytest.approx(32) and int8.batch_rate(exact) == pytest.approx(66.67, abs=0.01)
    # int8 sure of itself alone but not in batches (dynamic int8 scales a batch as a whole): 1/(1/80 + .7/40)
    loose = Timing("onnx-int8", single_ms=24, batch_per_s=80, gate=0.4, checked=0.1, batch_gate=1.8, batch_checked=0.7)
    assert loose.batch_rate(exact) == pytest.approx(33.3, abs=0.1)
    assert choose({"fp32": exact, "onnx-int8": loose}) == ("onnx-int8", "fp32")
    slow = Timing("bf16", single_ms=150, batch_per_s=20, gate=0.1, checked=0.05)     # a CPU where bf16 is slow
    assert choose({"fp32": exact, "bf16": slow}) == ("fp32", "fp32")
    fast = Timing("bf16", single_ms=20, batch_per_s=300, gate=0.1, checked=0.05)     # one with AMX
    assert choose({"fp32": exact, "bf16": fast}) == ("bf16", "bf16")


def test_auto_serves_fp32_at_once_then_the_measured_route_with_fp32_labels(run, monkeypatch):
    monkeypatch.setattr("core.model.cpu_bf16_speedup", lambda: 2.0)  # a CPU whose bf16 products pay: bf16 is timed
    reference = Classifier.load(run, precision="fp32").predict_proba(TWEETS)
    clf = Classifier.load(run)
    assert clf.precision == "auto"
    assert clf.ready.wait(120) and clf.route is not None
    assert set(clf.route.timings) == {"fp32", "onnx-int8", "bf16"}
    assert all(t.single_ms > 0 and t.batch_per_s > 0 for t in clf.route.timings.values())
    assert all(t.gate > 0 and t.batch_gate > 0 for name, t in clf.route.timings.items() if name != "fp32")
    for path, gate in (("single", "gate"), ("batch", "batch_gate")):  # each path checked with its own gate
        fmt = clf.route.single_fmt if path == "single" else clf.route.batch_fmt
        if fmt != "fp32":
            assert clf.route.checks[path].gate == getattr(clf.route.timings[fmt], gate)
    assert (clf.predict_proba(TWEETS).argmax(1) == reference.argmax(1)).all()
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in TWEETS])
    assert (one_by_one.argmax(1) == reference.argmax(1)).all()
    said = clf.serving()
    assert said["one tweet"].startswith(clf.route.single_fmt) and "ms a tweet; measured fp32" in said["one tweet"]
    assert said["batches"].startswith(clf.route.batch_fmt) and said["source"] == "measured"


def test_bf16_is_not_built_where_its_products_are_no_faster_than_fp32(run):
    """conftest: bf16 matrix products measure no faster than fp32's (most CPUs without AMX): no second copy
    of the weights is made for a format that cannot win."""
    clf = Classifier.load(run)
    assert clf.ready.wait(120) and set(clf.route.timings) == {"fp32", "onnx-int8"}


def test_a_lossy_format_answers_where_it_is_sure_and_fp32_where_it_is_not(run, monkeypatch):
    monkeypatch.setattr(policy, "choose", lambda timings: ("onnx-int8", "onnx-int8"))  # whatever this machine measures
    clf = Classifier.load(run)
    assert clf.ready.wait(120) and clf.route.single_fmt == "onnx-int8"
    check = clf.route.checks["single"]
    check.gate = np.inf  # every answer checked: fp32's
    np.testing.assert_allclose(clf.predict_proba([TWEETS[0]]), clf.exact_proba([TWEETS[0]]))
    check.gate = 0.0     # none checked: int8's own, which differs a little
    int8 = clf.predict_proba([TWEETS[0]])
    assert not np.array_equal(int8, clf.exact_proba([TWEETS[0]])) and np.abs(int8 - clf.exact_proba([TWEETS[0]])).max() < 0.05
    assert check.answered >= 2 and check.rechecked >= 1


def test_until_the_formats_are_measured_fp32_answers(run, monkeypatch):
    release = threading.Event()
    real = policy.measure_and_choose

    def slow(*args):
        release.wait(60)
        return real(*args)
    monkeypatch.setattr(policy, "measure_and_choose", slow)
    clf = Classifier.load(run)
    assert not clf.ready.is_set() and clf.route is None and "being measured" in clf.serving()["one tweet"]
    np.testing.assert_array_equal(clf.predict_proba([TWEETS[0]]), clf.exact_proba([TWEETS[0]]))
    release.set()
    assert clf.ready.wait(120) and clf.route is not None


def test_a_format_that_cannot_be_had_is_left_out_and_the_log_says_why(run, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")
    monkeypatch.setattr(onnx_backend, "onnx_model", broken)
    with caplog.at_level(logging.WARNING, logger=policy.__name__):
        clf = Classifier.load(run)
        assert clf.ready.wait(120)
    assert "onnx-int8" not in clf.route.timings and "onnx-int8 cannot serve (RuntimeError: exporter broke)" in caplog.text


def test_the_choice_is_kept_per_machine_and_shape_and_a_later_load_builds_only_the_chosen(run, monkeypatch):
    monkeypatch.setattr(policy, "choose", lambda timings: ("onnx-int8", "fp32"))
    first = Classifier.load(run)
    assert first.ready.wait(120)
    built = []
    real = Classifier._candidates

    def spy(self, *args):
        return {name: (lambda build=build, name=name: built.append(name) or build())
                for name, build in real(self, *args).items()}
    monkeypatch.setattr(Classifier, "_candidates", spy)
    monkeypatch.setattr(policy, "choose", lambda timings: pytest.fail("measured again"))
    second = Classifier.load(run)
    assert second.ready.wait(120)
    assert built == ["onnx-int8"] and (second.route.single_fmt, second.route.batch_fmt) == ("onnx-int8", "fp32")
    assert second.route.source.startswith("chosen by a measurement of")
