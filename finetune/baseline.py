"""The base model before any fine-tuning, measured: few-shot prompting (`core.fewshot`) on the test rows.
This is the "before" of every run's before/after.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from core.fewshot import FewShotClassifier, pick_examples
from core.runs import write_json

from .metrics import classification_metrics


def evaluate(base_model: str, train_rows, test_rows, k: int, seed: int = 42, cache_dir: Path | None = None,
             dtype=torch.float32) -> dict:
    """The base model's few-shot metrics on `test_rows`; cached by model, examples and test rows."""
    examples = pick_examples(train_rows, k, seed)
    key = hashlib.sha256(json.dumps([base_model, examples, test_rows]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"baseline-{key}.json" if cache_dir else None
    if cache and cache.exists():
        return json.loads(cache.read_text())
    clf = FewShotClassifier.load(base_model, examples, dtype=dtype)
    probs = clf.predict_proba([t for t, _ in test_rows])
    result = {"method": f"{k}-shot prompting" if k else "zero-shot prompting", "k": k,
              **classification_metrics([l for _, l in test_rows], probs.argmax(axis=1))}
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, result)
    return result
