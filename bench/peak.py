"""The machine's peak: a large matrix product, in fp32 and in bf16 (fp16 too on a GPU)."""
from __future__ import annotations

from core.model import DTYPES, matmul_gflops


def peaks(device: str = "cpu", quick: bool = False) -> dict:
    """GFLOP/s per number format: {"fp32": ..., "bf16": ...} (+ "fp16" on CUDA)."""
    n = (2048 if quick else 4096) if device == "cpu" else 8192
    formats = ["fp32", "bf16"] + (["fp16"] if device == "cuda" else [])
    return {f: round(matmul_gflops(DTYPES[f], device, n, 1.0 if quick else 2.0), 1) for f in formats}
