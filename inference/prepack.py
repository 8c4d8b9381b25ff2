"""bf16 serving with each linear layer's weight laid out once for oneDNN, not on every call.

    prepack(model)   # its bf16 nn.Linear (and gpt2 Conv1D) layers → PackedLinear; → how many

oneDNN's bf16 kernels (AMX, AVX-512) read weights in a blocked layout. A plain `F.linear` hands them
the weight as torch stores it, so every call reorders it first: for one tweet (~20 tokens) that was
up to half of a layer's time (768→2304, from memory: 0.36 ms plain, 0.19 packed), since the product
itself is small. `PackedLinear` reorders once at load
(`torch.ops.mkldnn._reorder_linear_weight`) and calls oneDNN's linear on the packed weight
(`_linear_pointwise`): the pair that torch.compile's freezing pass puts in place of the same layer,
without its minute of compiling. On gpt2-random in bf16 on an AMX CPU: one tweet 24.1 → 16.8 ms,
1,000 tweets +5-12%, the labels those of the plain bf16 model (RESULTS.md "Weights packed once").
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class PackedLinear(torch.nn.Module):
    """`x @ weight.T + bias` for a bf16 layer, the weight in oneDNN's blocked layout (inference only)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape  # weight (out, in): a view will do
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
        self.bias = None if bias is None else bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), self.weight, self.bias,
                                               "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def can_prepack() -> bool:
    """Whether this CPU has oneDNN bf16 kernels (AVX-512 or AMX; elsewhere bf16 runs as plain torch)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@torch.no_grad()
def prepack(model: torch.nn.Module) -> int:
    """Replace `model`'s bf16 linear layers (`nn.Linear`, and gpt2's `Conv1D`, which stores its weight
    transposed) by `PackedLinear` in place; → how many (0: left as it was, on a CPU without oneDNN bf16
    kernels or for a model that is not bf16)."""
    from transformers.pytorch_utils import Conv1D

    if not can_prepack() or next(model.parameters()).dtype != torch.bfloat16:
        return 0
    layers = torch.nn.Linear | Conv1D
    count = 0
    for parent in [m for m in model.modules() if not isinstance(m, layers)]:  # no list holds the old layers
        for name in [name for name, child in parent.named_children() if isinstance(child, layers)]:
            child = getattr(parent, name)
            if child.weight.dtype == torch.bfloat16:  # each old weight is freed as its packed copy is made
                weight = child.weight.t() if isinstance(child, Conv1D) else child.weight
                setattr(parent, name, PackedLinear(weight, child.bias))
                count += 1
    log.info("bf16 serving: %d linear layers' weights packed for oneDNN", count)
    return count
