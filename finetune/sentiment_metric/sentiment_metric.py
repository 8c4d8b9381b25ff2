"""The project's classification metric as an `evaluate` module, loaded by path (works offline):

    metric = evaluate.load("finetune/sentiment_metric")
    metric.compute(predictions=[0, 2, 1], references=[0, 1, 1])
    # {"accuracy", "f1_macro", "per_class": {label: {precision, recall, f1, support}}, "confusion_matrix", "n"}

Labels are the ids 0..2 of negative, neutral, positive; the confusion matrix has one row per true label.
"""
import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

LABELS = ("negative", "neutral", "positive")  # core.labels.LABELS; a metric module stands alone

_DESCRIPTION = "Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix of 3-way tweet sentiment."
_KWARGS = """
Args:
    predictions (list of int): predicted label ids (0 negative, 1 neutral, 2 positive).
    references (list of int): true label ids.
Returns:
    accuracy (float), f1_macro (float), per_class (dict of label → precision, recall, f1, support),
    confusion_matrix (list of lists, rows = true label), n (int).
"""


class SentimentMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        ids = list(range(len(LABELS)))
        precision, recall, f1, support = precision_recall_fscore_support(
            references, predictions, labels=ids, zero_division=0)
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "f1_macro": float(f1_score(references, predictions, labels=ids, average="macro", zero_division=0)),
            "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                                 "f1": float(f1[i]), "support": int(support[i])} for i, name in enumerate(LABELS)},
            "confusion_matrix": confusion_matrix(references, predictions, labels=ids).tolist(),
            "n": len(references),
        }
