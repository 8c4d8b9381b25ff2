"""Serving through ONNX Runtime: the same labels as eager torch, one export per weights (reused, redone
when the weights change), eager fp32 when the export fails, and the precision the settings ask for."""
import logging
import shutil

import numpy as np
import pytest

from inference import onnx_backend
from inference.classifier import Classifier

TWEETS = ["i love this so much", "awful terrible day", "going to work on the bus", "love", "meeting",
          "the worst monday at the office, so sad and angry", "great fun with my best friends today",
          "lunch at home", "i hate the bus", "thanks so much, wonderful"]


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy of the trained run that a test may export into and change."""
    return shutil.copytree(trained_run, tmp_path / trained_run.name, ignore=shutil.ignore_patterns(onnx_backend.SERVING_DIR))


@pytest.fixture(scope="module")
def eager(trained_run):
    return Classifier.load(trained_run, precision="fp32").predict_proba(TWEETS)


def exports(folder):
    return sorted(p.name for p in (folder / onnx_backend.SERVING_DIR).glob("*.onnx"))


@pytest.mark.parametrize("precision, tolerance", [("onnx-fp32", 1e-4), ("onnx-int8", 0.05), ("onnx-int8-block", 0.05)])
def test_onnx_gives_eager_labels(run, eager, precision, tolerance):
    clf = Classifier.load(run, precision=precision)
    assert clf.precision == precision and isinstance(clf.model, onnx_backend.OrtModel)
    got = clf.predict_proba(TWEETS)
    assert (got.argmax(1) == eager.argmax(1)).all()
    assert np.abs(got - eager).max() < tolerance
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)
    one = clf.classify(TWEETS[0])[0]  # a batch of one, and variants (padded rows) through the same session
    assert one.label == ["negative", "neutral", "positive"][eager[0].argmax()]
    np.testing.assert_allclose(clf.classify_variants(TWEETS[0], TWEETS[1:3]), got[:3], atol=tolerance)


def test_export_is_cached_and_redone_when_the_weights_change(run, monkeypatch, caplog):
    Classifier.load(run, precision="onnx-int8")
    assert "pre-processing" not in caplog.text  # ONNX Runtime's hint for image models stays out of the log
    first = exports(run)
    assert len(first) == 1 and first[0].startswith("onnx-int8-")
    with monkeypatch.context() as m:
        m.setattr(onnx_backend, "export_in_child", lambda *a: pytest.fail("exported again"))
        Classifier.load(run, precision="onnx-int8")
    assert exports(run) == first

    weights = run / "model.safetensors"
    from safetensors.torch import load_file, save_file
    tensors = load_file(weights)
    name = next(n for n in tensors if n.endswith("score.weight"))
    tensors[name] = -tensors[name]  # a changed head: other labels
    save_file(tensors, weights, metadata={"format": "pt"})
    clf = Classifier.load(run, precision="onnx-int8")
    assert len(exports(run)) == 1 and exports(run) != first  # the stale file replaced, not kept beside
    fresh = Classifier.load(run, precision="fp32").predict_proba(TWEETS)
    assert (clf.predict_proba(TWEETS).argmax(1) == fresh.argmax(1)).mean() >= 0.9


def test_blockwise_int8_is_its_own_export_with_an_fp32_head(run):
    import onnx

    block = Classifier.load(run, precision="onnx-int8-block").model.path
    ops = [node.op_type for node in onnx.load(str(block)).graph.node]
    assert "MatMulNBits" in ops and "MatMulInteger" not in ops
    assert ops.count("MatMul") >= 1  # the head (and attention's products of activations) stay fp32
    Classifier.load(run, precision="onnx-int8")  # another precision's export does not replace it
    assert len(exports(run)) == 2 and block.exists()


def test_failed_export_serves_eager_fp32(run, eager, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("Exporting the operator 'aten::something' is not supported\nsecond line")

    monkeypatch.setattr(onnx_backend, "export_in_child", broken)
    with caplog.at_level(logging.WARNING, logger="inference.classifier"):
        clf = Classifier.load(run, precision="onnx-int8")
    assert clf.precision == "fp32" and not isinstance(clf.model, onnx_backend.OrtModel)
    np.testing.assert_allclose(clf.predict_proba(TWEETS), eager, atol=1e-6)
    [record] = [r for r in caplog.records if "ONNX Runtime" in r.getMessage()]
    assert "RuntimeError: Exporting the operator 'aten::something' is not supported" in record.getMessage()
    assert "second line" not in record.getMessage() and exports(run) == []  # nothing half-written kept


def test_unwritable_folder_exports_to_the_cache_dir(run, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_backend, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(onnx_backend.os, "access", lambda path, mode: False)
    clf = Classifier.load(run, precision="onnx-fp32")
    assert clf.model.path.parent.parent == tmp_path / "cache" and exports(run) == []


def test_unknown_precision_is_a_sentence(trained_run):
    from core.errors import UserError
    with pytest.raises(UserError, match="precision must be one of auto, fp32, onnx-fp32, onnx-int8, bf16, int8, "
                                        "onnx-int8-block"):
        Classifier.load(trained_run, precision="fp8")
