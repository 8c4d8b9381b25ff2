"""Int8 serving's model surgery: gpt2's `Conv1D` as `nn.Linear`, torch's dynamic int8, and SmoothQuant.

    smooth(conv1d_to_linear(model), tokenizer, texts, max_length)   # the same function, outliers moved into weights

Dynamic int8 quantises each activation tensor with one scale, so a few channels with large values
(transformer activations have them) crush the rest to a handful of levels. SmoothQuant (Xiao et al.,
2023, arXiv:2211.10438) divides each input channel of a linear layer by a scale s and multiplies the
layer's weight columns by s, which leaves the function unchanged: s is folded into what produces the
input (a norm's weight and bias, or the rows of the linear before). With s = max|x|^α / max|w|^(1-α) the
activations flatten and the weights take the outliers, which per-channel weight scales absorb. On a
fine-tuned smollm2-135m run (1,000 test tweets) ONNX Runtime's dynamic int8 kept 86.1% of fp32's labels
as it was and 96.6% smoothed, at the same speed (RESULTS.md "Int8 serving, smoothed (2026-12-03)").

Folded where the input's producer is linear in each channel: llama-style blocks (input norm → q/k/v,
post-attention norm → gate/up, up → down, v → o, grouped-query heads sharing one scale) and gpt2's
(ln_1 → c_attn, ln_2 → c_fc, c_attn's value rows → attn.c_proj). gpt2's mlp.c_proj reads GELU's output,
which no scale passes through, so it keeps its outliers.
"""
from __future__ import annotations

import logging
import warnings

import torch

from core.model import predict_proba

log = logging.getLogger(__name__)

# the migration strength; the smollm2 run's int8 labels equal to fp32's, 256 training tweets to calibrate:
# 0.5 94.2%, 0.7 97.0%, 0.85 97.1%
ALPHA = 0.7


def conv1d_to_linear(module: torch.nn.Module) -> torch.nn.Module:
    """Replace transformers' `Conv1D` layers (gpt2's: y = x @ W + b, W stored (in, out)) by the
    equivalent `nn.Linear` (W stored (out, in)), which quantisation and other tools understand."""
    from transformers.pytorch_utils import Conv1D

    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(child.weight.shape[0], child.nf, dtype=child.weight.dtype)
                linear.weight.data = child.weight.data.t().contiguous()
                linear.bias.data = child.bias.data
                setattr(parent, name, linear)
    return module


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Int8 weights (one scale per output channel) for every linear layer of the transformer body,
    activations quantised on the fly (`torch.ao` dynamic quantisation); the head stays fp32."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    body = conv1d_to_linear(model.base_model)  # quantize_dynamic skips Conv1D
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(body, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                               dtype=torch.qint8, inplace=True)
    return model


@torch.no_grad()
def smooth(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int, alpha: float = ALPHA) -> int:
    """SmoothQuant `model` in place (its gpt2 `Conv1D`s already `nn.Linear`), scales from the inputs'
    channel maxima over `texts`; → the number of linear layers whose inputs were smoothed (0 for an
    architecture it does not know, left as it was)."""
    sites = list(_llama_sites(model)) or list(_gpt2_sites(model))
    if not sites:
        log.info("SmoothQuant: no llama- or gpt2-style blocks in %s, quantised as it is", type(model).__name__)
        return 0
    maxima = input_maxima(model, tokenizer, texts, [site[1][0] for site in sites], max_length)
    for producers, linears, heads in sites:
        s = _scale(maxima[linears[0]], linears, alpha, heads)
        for linear in linears:
            linear.weight.mul_(s)
        if heads:  # the value rows hold one scale per value head: the first query head's of each group
            s = s.view(-1, *heads)[:, 0].reshape(-1)
        for tensor in producers:  # norm weights and biases, or a linear's output rows (weight, bias)
            tensor.div_(s.view(-1, *[1] * (tensor.dim() - 1)))
    return sum(len(linears) for _, linears, _ in sites)


def input_maxima(model, tokenizer, texts: list[str], linears: list[torch.nn.Linear], max_length: int) -> dict:
    """{linear: the largest |input| of each of its input channels} over `texts` (one forward)."""
    maxima = {}

    def record(linear, inputs):
        x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
        maxima[linear] = torch.maximum(maxima[linear], x) if linear in maxima else x

    hooks = [linear.register_forward_pre_hook(record) for linear in linears]
    try:
        predict_proba(model, tokenizer, texts, max_length)
    finally:
        for hook in hooks:
            hook.remove()
    return maxima


def _scale(x_max: torch.Tensor, linears: list, alpha: float, heads: tuple | None) -> torch.Tensor:
    """s per input channel. With `heads` = (query heads per value head, head size), for o_proj under
    grouped-query attention, the query heads that read one value head share its scale: the value rows
    can hold only one."""
    w_max = torch.stack([linear.weight.abs().amax(0).float() for linear in linears]).amax(0)
    s = x_max.clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)
    if heads:  # o_proj's input channels are (value head, query head in its group, dim)
        groups, head_dim = heads
        s = s.view(-1, groups, head_dim).amax(1, keepdim=True).expand(-1, groups, -1).reshape(-1)
    return s.clamp(min=1e-5).to(linears[0].weight.dtype)


def _llama_sites(model):
    """(producer tensors, the linear layers reading them, heads or None) per fold, block by block."""
    for layer in getattr(getattr(model, "model", None), "layers", []):
        config = model.config
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")) or \
                not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")) or \
                not all(hasattr(layer, n) for n in ("input_layernorm", "post_attention_layernorm")):
            return
        yield _rows(layer.input_layernorm), [attn.q_proj, attn.k_proj, attn.v_proj], None
        yield _rows(layer.post_attention_layernorm), [mlp.gate_proj, mlp.up_proj], None
        yield _rows(mlp.up_proj), [mlp.down_proj], None
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        groups = heads // (getattr(config, "num_key_value_heads", None) or heads)
        yield _rows(attn.v_proj), [attn.o_proj], (groups, head_dim)


def _gpt2_sites(model):
    for block in getattr(getattr(model, "transformer", None), "h", []):
        attn, mlp = block.attn, block.mlp
        if not all(isinstance(m, torch.nn.Linear) for m in (attn.c_attn, attn.c_proj, mlp.c_fc)):
            return  # Conv1D: conv1d_to_linear first
        yield _rows(block.ln_1), [attn.c_attn], None
        yield _rows(block.ln_2), [mlp.c_fc], None
        width = attn.c_proj.weight.shape[1]  # c_attn's rows: query, key, value
        yield [attn.c_attn.weight[2 * width:], attn.c_attn.bias[2 * width:]], [attn.c_proj], None


def _rows(module: torch.nn.Module) -> list[torch.Tensor]:
    """A norm's or a linear layer's weight and its bias if it has one: what is scaled per output channel."""
    bias = getattr(module, "bias", None)
    return [module.weight] + ([bias] if bias is not None else [])
