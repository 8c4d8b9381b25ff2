"""bf16 serving's packed weights give the plain bf16 model's outputs, and nothing changes where oneDNN
has no bf16 kernels or the model is not bf16."""
import pytest
import torch

from core.model import load_classifier, load_tokenizer
from inference import prepack as prepack_module
from inference.classifier import Classifier
from inference.prepack import PackedLinear, can_prepack, prepack

TWEETS = ["i love this so much", "awful terrible day", "going to work on the bus", "love",
          "the worst monday at the office, so sad and angry"]
needs_onednn_bf16 = pytest.mark.skipif(not can_prepack(), reason="this CPU has no oneDNN bf16 kernels")


@pytest.fixture
def tokenizer(tiny_model):
    return load_tokenizer(str(tiny_model))


def bf16_model(tiny_model, tokenizer):
    torch.manual_seed(0)  # the same new head each time
    return load_classifier(str(tiny_model), tokenizer, dtype=torch.bfloat16).eval()


def logits(model, tokenizer, texts=TWEETS):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.float()


@needs_onednn_bf16
def test_packed_layers_compute_what_the_plain_ones_do(tiny_model, tokenizer):
    plain, packed = bf16_model(tiny_model, tokenizer), bf16_model(tiny_model, tokenizer)
    assert prepack(packed) == 2 * 4 + 1  # 4 per block and the head
    assert all(not isinstance(m, torch.nn.Linear) and type(m).__name__ != "Conv1D" for m in packed.modules())
    assert isinstance(packed.score, PackedLinear)
    for texts in (TWEETS, TWEETS[:1]):  # a batch, and one tweet (a single row through each layer)
        torch.testing.assert_close(logits(packed, tokenizer, texts), logits(plain, tokenizer, texts),
                                   atol=2e-2, rtol=2e-2)


def test_fp32_models_and_cpus_without_bf16_kernels_are_left_alone(tiny_model, tokenizer, monkeypatch):
    fp32 = load_classifier(str(tiny_model), tokenizer).eval()
    assert prepack(fp32) == 0
    assert not any(isinstance(m, PackedLinear) for m in fp32.modules())
    monkeypatch.setattr(prepack_module, "can_prepack", lambda: False)
    model = bf16_model(tiny_model, tokenizer)
    before = logits(model, tokenizer)
    assert prepack(model) == 0
    assert any(type(m).__name__ == "Conv1D" for m in model.modules())  # not even converted
    torch.testing.assert_close(logits(model, tokenizer), before)


@needs_onednn_bf16
def test_bf16_serving_packs_and_explains(trained_run):
    clf = Classifier.load(trained_run, precision="bf16")
    assert isinstance(clf.model.score, PackedLinear)
    text, variants = "so happy with my new phone", ["happy with my new phone", "so with my new phone"]
    packed_rows = clf.predict_proba_variants(text, variants)  # the shared-start path runs through them too
    torch.testing.assert_close(torch.tensor(packed_rows), torch.tensor(clf.predict_proba([text, *variants])),
                               atol=2e-2, rtol=0)
