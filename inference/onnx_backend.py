"""Serving through ONNX Runtime: a classifier exported once to ONNX and, for `onnx-int8` and
`onnx-int8-block`, its matrix products quantised to int8, cached and reused until the weights change.

    model = onnx_model(source, "onnx-int8")   # stands in for the torch model

The cache file is named by a hash of the weights (every *.safetensors of the folder), the precision and
FORMAT, so a run whose weights change is exported again and a stale file is never served. It lies in
the run folder (`<run>/serving/`, which the Hub push leaves out) or, for anything else (a Hub
snapshot, a model folder, a run folder that cannot be written), under CACHE_DIR. A new run's first load pays the export (seconds for a
gpt2-size model); later loads read the file.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from core.fewshot import builtin_calibration
from core.model import trained_max_length
from core.runs import SERVING_DIR

from .quantize import conv1d_to_linear, smooth

log = logging.getLogger(__name__)

FORMAT = 2               # bump when the export or the quantisation changes: older cache files are rebuilt
CACHE_DIR = Path.home() / ".cache" / "tweet-sentiment" / "onnx"
OPSET = 17
_EXPORTING = threading.Lock()


class OrtModel:
    """An ONNX Runtime session in the torch model's place for `core.model.predict_proba`:
    `model(input_ids=…, attention_mask=…).logits` and `model.device`."""

    device = torch.device("cpu")

    def __init__(self, session, path: Path):
        self.session, self.path = session, path

    def eval(self) -> "OrtModel":
        return self

    def __call__(self, input_ids, attention_mask, **_):
        feed = {"input_ids": input_ids.numpy().astype(np.int64),
                "attention_mask": attention_mask.numpy().astype(np.int64)}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))


def onnx_model(source: str, precision: str, revision: str | None = None, threads: int = 1) -> OrtModel:
    """The ONNX Runtime stand-in for the classifier in `source` (a folder or a Hub repo at `revision`), from
    the cache, or exported now (in a child process, `export_in_child`)."""
    import onnxruntime as ort

    path = cached_export(source, precision, revision)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # the pool's threads wait for the next operator spinning rather than asleep: one tweet (hundreds of small
    # operators) took 23.7 ms instead of 33.4 for a fine-tuned smollm2-135m in int8 on 2 cores; between calls
    # they sleep (RESULTS.md "Serving")
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    return OrtModel(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), path)


def cached_export(source: str, precision: str, revision: str | None = None) -> Path:
    """The export of `source`'s weights in `precision`, made now (one at a time) if it is not cached."""
    key = weights_key(source, revision, precision)
    path = cache_dir(source) / f"{precision}-{key}.onnx"
    with _EXPORTING:  # one export at a time (a second finds the first's file)
        if not path.exists():
            export_in_child(source, precision, path, revision)
    return path


def export_in_child(source: str, precision: str, path: Path, revision: str | None = None) -> None:
    """`python -m inference.onnx_backend` exports in a process of its own: the exporter's copies of the
    weights (the model smoothed, its graph, the quantiser's) never join the server's memory, which the
    child hands back to the system when it ends, and its global state cannot break a second export."""
    command = [sys.executable, "-m", "inference.onnx_backend", source, precision, str(path)]
    result = subprocess.run(command + (["--revision", revision] if revision else []), capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parent.parent)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"the export exited with {result.returncode}")


def export_to(path: Path, load_torch, tokenizer, source: str, precision: str) -> None:
    """Export (and for int8 smooth, then quantise) the model `load_torch()` loads into `path`, atomically:
    a crash half-way leaves no file to trust; older exports of the same precision are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        exported = Path(tmp) / "fp32.onnx"
        model = load_torch()
        if precision in QUANTIZERS:  # outliers moved from the activations into the weights first
            smooth(conv1d_to_linear(model), tokenizer, builtin_calibration(), trained_max_length(tokenizer))
        export(model, tokenizer, exported)
        del model
        if precision in QUANTIZERS:
            quantized = Path(tmp) / "int8.onnx"
            QUANTIZERS[precision](exported, quantized)
            exported = quantized
        for old in path.parent.glob(f"{precision}-{'?' * 16}.onnx"):  # the same precision, older weights
            old.unlink()
        os.replace(exported, path)
    log.info("exported %s to %s", source, path)


def weights_key(source: str, revision: str | None, precision: str) -> str:
    """A hash of the weight files' bytes, the precision and FORMAT."""
    digest = hashlib.sha256(f"{FORMAT}|{precision}".encode())
    for file in weight_files(source, revision):
        with open(file, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def weight_files(source: str, revision: str | None) -> list[Path]:
    folder = Path(source).expanduser()
    if not folder.is_dir():  # a Hub repo: the snapshot that loading just downloaded
        from huggingface_hub import snapshot_download
        folder = Path(snapshot_download(source, revision=revision, allow_patterns=["*.safetensors"]))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {folder}")
    return files


def cache_dir(source: str) -> Path:
    """`<run>/serving/` for a run folder the app may write; CACHE_DIR for anything else (a Hub
    snapshot, someone's model folder), one subfolder per source."""
    folder = Path(source).expanduser()
    if (folder / "status.json").is_file() and os.access(folder, os.W_OK):
        return folder / SERVING_DIR
    return CACHE_DIR / hashlib.sha256(source.encode()).hexdigest()[:16]


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def export(model, tokenizer, path: Path) -> None:
    """The classifier as an ONNX graph of (input_ids, attention_mask) → logits, batch and length dynamic
    (traced on a padded batch of two, as `predict_proba` feeds it)."""
    import warnings

    sample = tokenizer(["a short tweet to trace the graph", "hi"], padding=True, return_tensors="pt")
    axes = {"batch": 0, "tokens": 1}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python branches it bakes in
        torch.onnx.export(_Logits(model.eval()), (sample["input_ids"], sample["attention_mask"]), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {v: k for k, v in axes.items()},
                                        "attention_mask": {v: k for k, v in axes.items()}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def quantize(src: Path, dest: Path) -> None:
    """Int8 weights, one scale per output channel, activations quantised per tensor on the fly
    (ONNX Runtime's dynamic quantisation), for the matrix products with constant weights. Fast, but on
    a fine-tuned smollm2-135m it changed 14% of the labels, and 3.4% after SmoothQuant (`smooth`, done
    before the export); 8-bit blockwise weights kept more but ran slower than fp32 (RESULTS.md "Int8
    serving, smoothed"), so it is an explicit choice, not the default."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _Without("pre-processing before quantization")  # ONNX Runtime's advice for image models, on every call
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(src, dest, weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"MatMulConstBOnly": True})
    finally:
        logging.getLogger().removeFilter(hint)


class _Without(logging.Filter):
    """Drops the log records that say `words`."""

    def __init__(self, words: str):
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        return self.words not in record.getMessage()


BLOCK = 128  # onnx-int8-block's weights and activations: one scale per this many input channels


def quantize_blockwise(src: Path, dest: Path) -> None:
    """8-bit weights with a scale per BLOCK input channels, and int8 products whose activations are
    quantised per block of BLOCK channels of each token too (ONNX Runtime's `MatMulNBits`, accuracy level
    4), not with one scale per tensor: after SmoothQuant it kept 99.7% of a fine-tuned smollm2's labels
    (onnx-int8: 96.6%), one tweet in 24.1 ms against eager bf16's 32.9 on AMX, but batches at a third of
    bf16's speed (RESULTS.md "Weights packed once"). The head stays fp32."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    head = [node.name for node in model.graph.node if node.op_type == "MatMul" and "score" in node.name]
    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=BLOCK, is_symmetric=False, accuracy_level=4,
                                     nodes_to_exclude=head)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dest), use_external_data_format=False)


QUANTIZERS = {"onnx-int8": quantize, "onnx-int8-block": quantize_blockwise}


def main(argv=None) -> int:
    """python -m inference.onnx_backend SOURCE PRECISION PATH [--revision R]: the export `export_in_child` runs."""
    import argparse

    from core.model import load_classifier, load_tokenizer
    from core.settings import quiet_libraries

    p = argparse.ArgumentParser(prog="python -m inference.onnx_backend", description=main.__doc__)
    p.add_argument("source")
    p.add_argument("precision", choices=["onnx-fp32", *QUANTIZERS])
    p.add_argument("path", type=Path)
    p.add_argument("--revision")
    args = p.parse_args(argv)
    quiet_libraries()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = load_tokenizer(args.source, revision=args.revision)
    export_to(args.path, lambda: load_classifier(args.source, tokenizer, revision=args.revision, serving=True),
              tokenizer, args.source, args.precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
