import pytest
import torch

from core.labels import LABELS
from core.errors import UserError
from core.model import check_source, granted_cores, load_classifier, load_tokenizer, resolve_precision, set_threads


def test_pad_token_fix_batch_equals_one_by_one(tiny_model):
    """The recipe's bug: without pad_token_id a padded batch classifies the wrong token."""
    tok = load_tokenizer(str(tiny_model))
    model = load_classifier(str(tiny_model), tok).eval()
    assert tok.pad_token == tok.eos_token and model.config.pad_token_id == tok.pad_token_id
    assert model.config.id2label == dict(enumerate(LABELS)) and model.config.label2id["positive"] == 2
    texts = ["love", "i hate the monday bus so so much today", "meeting at the office"]
    with torch.inference_mode():
        batch = tok(texts, padding=True, return_tensors="pt")
        together = model(**batch).logits
        alone = torch.cat([model(**tok([t], return_tensors="pt")).logits for t in texts])
    assert batch["attention_mask"].sum(1).tolist() != [batch["input_ids"].shape[1]] * 3  # really padded
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_bad_model_sources(tmp_path, tiny_model):
    with pytest.raises(UserError, match="not a model folder"):
        check_source(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UserError, match="pickle"):
        check_source(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        check_source("./no/such/model")
    with pytest.raises(UserError, match="local folder"):
        load_tokenizer("nobody/no-such-model-offline")


def test_threads_follow_granted_cores(monkeypatch):
    from core.model import GRANTED, grant_cores
    from core.settings import Settings

    monkeypatch.setitem(GRANTED, "cpu_cores", "")
    monkeypatch.setenv("CPU_CORES", "1")
    grant_cores(Settings.from_env().cpu_cores)  # what an entry point does
    assert granted_cores() == 1
    before = torch.get_num_threads()
    try:
        assert set_threads(0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_precision_auto_falls_back_without_fast_hardware(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("core.model.cpu_bf16_speedup", lambda: 0.8)  # a CPU without bf16 instructions
    assert resolve_precision("auto") == "fp32" and resolve_precision("fp16") == "fp32"
    monkeypatch.setattr("core.model.cpu_bf16_speedup", lambda: 4.2)  # AVX-512-BF16 (AMD EPYC) or AMX
    assert resolve_precision("auto") == "bf16" and resolve_precision("fp32") == "fp32"


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_serving_keeps_freed_memory_for_the_next_batch(trained_run, monkeypatch):
    import ctypes

    import core.model
    from inference import classifier

    assert core.model.keep_freed_memory() is True  # glibc took both thresholds
    calls = []
    monkeypatch.setattr(classifier, "keep_freed_memory", lambda: calls.append("keep"))
    monkeypatch.setattr(classifier, "release_freed_memory", lambda: calls.append("release"))
    classifier.Classifier.load(trained_run, precision="fp32")
    assert calls == ["keep", "release"]  # kept for batches, once what loading dropped is handed back
    free = [torch.empty(1 << 22) for _ in range(8)]  # 128 MB in blocks under the 64 MiB mmap threshold
    del free
    assert core.model.release_freed_memory() is True

    def no_glibc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_glibc)
    assert core.model.keep_freed_memory() is False  # another C library: nothing changes, nothing fails
    assert core.model.release_freed_memory() is False


def test_predict_proba_batches_by_tokens_not_characters(tiny_model):
    """A tweet short in characters but long in tokens is batched with the long ones, not the short."""
    from core.model import predict_proba

    tok = load_tokenizer(str(tiny_model))
    model = load_classifier(str(tiny_model), tok).eval()
    dense, few, many = "x7#q@z!9%k~", "love love love", "love love love love love"
    n_tokens = {t: len(tok(t)["input_ids"]) for t in ("love", dense, few, many)}
    assert len(dense) < len(few) and n_tokens[dense] > n_tokens[many] > n_tokens[few] > n_tokens["love"]
    widths = []
    model.register_forward_pre_hook(lambda m, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                    with_kwargs=True)
    predict_proba(model, tok, [many, dense, "love", few], 32, batch_size=2)
    assert widths == [n_tokens[few], n_tokens[dense]]  # by characters: [dense's, many's]
