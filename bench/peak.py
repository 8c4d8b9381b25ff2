"""The machine's peak: a large matrix product, in fp32 and in bf16 (fp16 too on a GPU)."""
from __future__ import annotations

import time

import torch

from core.model import DTYPES

from . import sync



def matmul_gflops(dtype: torch.dtype, device: str = "cpu", n: int = 4096, seconds: float = 2.0) -> float:
    """Best GFLOP/s of an n×n @ n×n product over repeats filling about `seconds`."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up: kernels chosen, memory touched
    sync(device)
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        a @ b
        sync(device)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 2 * n**3 / best / 1e9


def peaks(device: str = "cpu", quick: bool = False) -> dict:
    """GFLOP/s per number format: {"fp32": ..., "bf16": ...} (+ "fp16" on CUDA)."""
    n = (2048 if quick else 4096) if device == "cpu" else 8192
    formats = ["fp32", "bf16"] + (["fp16"] if device == "cuda" else [])
    return {f: round(matmul_gflops(DTYPES[f], device, n, 1.0 if quick else 2.0), 1) for f in formats}
