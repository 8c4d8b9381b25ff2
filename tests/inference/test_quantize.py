"""Int8 serving's model surgery leaves the function alone: Conv1D as Linear, and SmoothQuant's scales
folded into norms and linear rows (gpt2 and llama-style blocks, grouped-query heads included), while
it flattens the activations' outlier channels."""
import pytest
import torch

from core.model import load_classifier, load_tokenizer
from inference.quantize import conv1d_to_linear, input_maxima, smooth

TWEETS = ["i love this so much", "awful terrible day", "going to work on the bus", "love", "meeting",
          "the worst monday at the office, so sad and angry", "great fun with my best friends today"]


@pytest.fixture
def tokenizer(tiny_model):
    return load_tokenizer(str(tiny_model))


@pytest.fixture
def gpt2(tiny_model, tokenizer):
    return load_classifier(str(tiny_model), tokenizer).eval()


@pytest.fixture
def llama(tokenizer):
    """A 2-block llama classifier with grouped-query attention (4 query heads over 2 value heads)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=3,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config).eval()
    with torch.no_grad():  # trained norms are not all ones: give them some spread
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 2.0)
    return model


def logits(model, tokenizer):
    batch = tokenizer(TWEETS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits


def test_conv1d_to_linear_is_exact(gpt2, tokenizer):
    before = logits(gpt2, tokenizer)
    conv1d_to_linear(gpt2)
    assert not any(type(m).__name__ == "Conv1D" for m in gpt2.modules())
    assert sum(isinstance(m, torch.nn.Linear) for m in gpt2.modules()) == 2 * 4 + 1  # 4 per layer + head
    torch.testing.assert_close(logits(gpt2, tokenizer), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch, smoothed_per_block", [("gpt2", 3), ("llama", 7)])
def test_smoothing_keeps_the_function_and_moves_the_scales(arch, smoothed_per_block, request, tokenizer):
    model = conv1d_to_linear(request.getfixturevalue(arch))
    before = logits(model, tokenizer)
    weights = {n: p.clone() for n, p in model.named_parameters()}
    assert smooth(model, tokenizer, TWEETS, 64) == 2 * smoothed_per_block
    torch.testing.assert_close(logits(model, tokenizer), before, atol=1e-4, rtol=1e-4)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, weights[n])}
    norm = "ln_1.weight" if arch == "gpt2" else "input_layernorm.weight"
    assert any(n.endswith(norm) for n in changed) and not any("score" in n for n in changed)


def test_smoothing_flattens_an_outlier_channel(gpt2, tokenizer):
    """Channel 0 of the first block's attention input made 50x larger (its weights 50x smaller: the
    same function): after smoothing the largest channel is far closer to the typical one."""
    model = conv1d_to_linear(gpt2)
    block = model.transformer.h[0]
    with torch.no_grad():
        block.ln_1.weight[0] *= 50
        block.ln_1.bias[0] *= 50
        block.attn.c_attn.weight[:, 0] /= 50

    def spread():
        x = input_maxima(model, tokenizer, TWEETS, [block.attn.c_attn], 128)[block.attn.c_attn]
        return (x.max() / x.median()).item()

    before = spread()
    smooth(model, tokenizer, TWEETS, 64)
    assert before > 20 and spread() < before / 4


def test_an_unknown_architecture_is_left_as_it_is(gpt2, tokenizer):
    """gpt2 still with its Conv1D layers: no block is recognised, nothing changes."""
    weights = {n: p.clone() for n, p in gpt2.named_parameters()}
    assert smooth(gpt2, tokenizer, TWEETS, 64) == 0
    assert all(torch.equal(p, weights[n]) for n, p in gpt2.named_parameters())
