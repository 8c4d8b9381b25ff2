"""A new run serves only if it is no worse than what serves now, on the same held-out tweets.

    metrics["test_rows"] = fingerprint(test_rows)
    metrics["promotion"] = judge(cfg, metrics, test_rows, parent)   # {"promoted": bool, "message", ...}

What serves now is the runs folder's serving run (`core.runs.serving`), else the Hub run a chain continues
(`parent`); the first fine-tuned run takes over from the base model (its before/after is on the card). Runs
tested on the same tweets (the same fingerprint) are compared by their recorded accuracy; otherwise the
serving run is tested on this run's test tweets first. A run that scores at least the serving accuracy less
TOLERANCE takes over (`core.runs.serving` picks the newest such run); a worse one is kept and listed, and
an admin can still pick it in the Runs tab.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from core.model import load_classifier, load_tokenizer, predict_proba, trained_max_length
from core.runs import serving

from .config import TrainConfig

# accuracy a new run may lose against the serving one and still take over: a tenth of the standard error of
# an accuracy near 0.7 on 1,000 test tweets (0.0145), so that the better of two equal runs is not held back
TOLERANCE = 0.005


def fingerprint(rows: list[tuple[str, int]]) -> str:
    """Which test tweets (and labels) a run was tested on: runs with the same one compare directly."""
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()[:16]


def judge(cfg: TrainConfig, metrics: dict, test_rows: list[tuple[str, int]], parent=None) -> dict:
    """Whether the run with `metrics` should serve instead of what serves now, and why, in words."""
    accuracy = metrics["test"]["accuracy"]
    against, theirs = incumbent(cfg, metrics, test_rows, parent)
    if theirs is None:
        return {"promoted": True, "against": against, "their_accuracy": None, "accuracy": accuracy,
                "tolerance": TOLERANCE, "reason": against, "message": f"serves: {against}"}
    promoted = accuracy >= theirs - TOLERANCE
    reason = (f"test accuracy {accuracy:.3f} against {theirs:.3f} for {against} on the same {len(test_rows):,} "
              f"test tweets (it takes over at {theirs - TOLERANCE:.3f} or more)")
    return {"promoted": promoted, "against": against, "their_accuracy": round(theirs, 4), "accuracy": accuracy,
            "tolerance": TOLERANCE, "reason": reason,
            "message": f"{'serves' if promoted else 'does not serve'}: {reason}"}


def incumbent(cfg: TrainConfig, metrics: dict, test_rows, parent) -> tuple[str, float | None]:
    """(what serves now, its accuracy on `test_rows`; None when nothing can be compared)."""
    run = serving(cfg.runs_dir)
    if run is not None and run.id != metrics.get("run_id"):
        return f"run {run.id}", _accuracy(str(run.path), run.metrics, metrics, test_rows)
    if parent is not None:  # a chain continued from the Hub after a restart: no run of its own here yet
        return parent.name, _accuracy(parent.source, parent.metrics, metrics, test_rows, parent.revision)
    return "the base model: no fine-tuned run serves yet", None


def _accuracy(source: str, their: dict, ours: dict, test_rows, revision: str | None = None) -> float:
    """Their accuracy on our test rows: recorded, when they were tested on the same ones; else measured."""
    if their.get("test_rows") == ours.get("test_rows") and (their.get("test") or {}).get("accuracy") is not None:
        return their["test"]["accuracy"]
    tokenizer = load_tokenizer(source, revision=revision)
    model = load_classifier(source, tokenizer, revision=revision, serving=True)
    probs = predict_proba(model, tokenizer, [t for t, _ in test_rows], trained_max_length(tokenizer))
    return float(np.mean(probs.argmax(axis=1) == np.array([l for _, l in test_rows])))
