"""The base model before any fine-tuning, measured: few-shot prompting (`core.fewshot`) on the test rows,
calibrated on unlabelled training tweets. This is the "before" of every run's before/after.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.fewshot import FewShotClassifier, calibrate, calibration_texts, pick_examples
from core.model import torch_dtype
from core.runs import write_json

from .metrics import classification_metrics

METHOD_VERSION = 2  # 2: chat template where the tokenizer has one, batch calibration


def evaluate(base_model: str, train_rows, test_rows, k: int, seed: int = 42, cache_dir: Path | None = None,
             precision: str = "fp32") -> dict:
    """The base model's calibrated few-shot metrics on `test_rows` (and, as `uncalibrated`, the same
    prompts' raw answers), the prompts run in `precision` (fp32, or bf16: half the time with AMX); cached
    by model, examples, calibration tweets, test rows and precision."""
    examples = pick_examples(train_rows, k, seed)
    calibration = calibration_texts(train_rows, seed=seed, exclude=examples)
    key = hashlib.sha256(json.dumps([METHOD_VERSION, base_model, examples, calibration, test_rows,
                                     precision]).encode())
    cache = Path(cache_dir) / f"baseline-{key.hexdigest()[:16]}.json" if cache_dir else None
    if cache and cache.exists():
        return json.loads(cache.read_text())
    clf = FewShotClassifier.load(base_model, examples, calibration, dtype=torch_dtype(precision))
    raw = clf.predict_proba([t for t, _ in test_rows], calibrated=False)
    labels = [l for _, l in test_rows]
    result = {"method": clf.method, "k": k, "prompt": clf.details, "precision": precision,
              **classification_metrics(labels, calibrate(raw, clf.calibration).argmax(axis=1)),
              "uncalibrated": classification_metrics(labels, raw.argmax(axis=1))}
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, result)
    return result
