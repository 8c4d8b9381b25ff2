"""Classification metrics that work offline (scikit-learn, no `evaluate.load` from the Hub)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from core.labels import LABELS


def classification_metrics(labels, predictions) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows = true label)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    ids = list(range(len(LABELS)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(f1_score(labels, predictions, labels=ids, average="macro", zero_division=0)),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(LABELS)},
        "confusion_matrix": confusion_matrix(labels, predictions, labels=ids).tolist(),
        "n": int(len(labels)),
    }


def trainer_metrics(eval_pred) -> dict:
    """`compute_metrics` for the Trainer: scalars only (the Trainer logs them), per class flattened."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    m = classification_metrics(labels, np.argmax(logits, axis=-1))
    flat = {"accuracy": m["accuracy"], "f1_macro": m["f1_macro"]}
    for name, values in m["per_class"].items():
        flat[f"f1_{name}"] = values["f1"]
    return flat
