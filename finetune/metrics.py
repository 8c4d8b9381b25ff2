"""Classification metrics: the project's `evaluate` module (finetune/sentiment_metric), loaded once by
path, so that it works offline (`evaluate.load("accuracy")` would fetch from the Hub)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

METRIC_PATH = Path(__file__).with_name("sentiment_metric")


@functools.cache
def metric():
    """The loaded `evaluate` module (an `evaluate.Metric`), loaded on first use."""
    # imported here: `import evaluate` costs ~3.7 s on top of torch+transformers+datasets (python -X importtime,
    # 2 shared cores), which the app would pay at start-up for a metric that only training uses
    import evaluate

    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


def classification_metrics(labels, predictions) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows = true label), n."""
    return metric().compute(predictions=np.asarray(predictions).tolist(), references=np.asarray(labels).tolist())


def trainer_metrics(eval_pred) -> dict:
    """`compute_metrics` for the Trainer: scalars only (the Trainer logs them), per class flattened."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    m = classification_metrics(labels, np.argmax(logits, axis=-1))
    flat = {"accuracy": m["accuracy"], "f1_macro": m["f1_macro"]}
    for name, values in m["per_class"].items():
        flat[f"f1_{name}"] = values["f1"]
    return flat
