"""finetune.card: the model card of a run, as a whole, against the card it must be (expected_card.md)."""
from pathlib import Path

from finetune.card import model_card
from finetune.config import TrainConfig

EXPECTED = Path(__file__).with_name("expected_card.md")

CONFIG = TrainConfig(base_model="gpt2", dataset="mteb/tweet_sentiment_extraction", train_size=1777, epochs=1,
                     learning_rate=2.5e-4, batch_size=16, max_length=128, seed=42, precision="fp32")
METRICS = {
    "run_id": "20261207-044636-5df2", "precision": "fp32", "train_seconds": 126.8, "best_checkpoint_step": 93,
    "test": {"n": 1000, "accuracy": 0.723, "f1_macro": 0.726,
             "per_class": {"negative": {"precision": 0.71, "recall": 0.69, "f1": 0.7, "support": 283},
                           "neutral": {"precision": 0.68, "recall": 0.7, "f1": 0.69, "support": 404},
                           "positive": {"precision": 0.8, "recall": 0.79, "f1": 0.795, "support": 313}},
             "confusion_matrix": [[195, 70, 18], [60, 283, 61], [20, 46, 247]]},
    "baseline": {"method": "0-shot", "accuracy": 0.575, "f1_macro": 0.571},
    "lineage": {"parent": "20261207-044358-8c9d", "clicks": 2, "tweets_seen": 3700, "train_seconds": 237.8,
                "passes": 1},
    "promotion": {"promoted": False, "reason": "test accuracy 0.700 against 0.725 for run 20261207-044358-8c9d "
                                               "on the same 1,000 test tweets (it takes over at 0.720 or more)"},
}
REPORT = {"rows_in": {"train": 27481, "test": 3534}, "sizes": {"train": 1923, "validation": 190, "test": 1000}}
HISTORY = [{"event": "eval", "epoch": 0.77, "step": 93, "eval_loss": 0.635, "eval_accuracy": 0.74,
            "eval_f1_macro": 0.741}, {"event": "log", "step": 10, "loss": 0.9}]


def test_the_card_is_the_expected_card():
    """Front matter (model-index with the test metrics, the Hub base model and dataset), the chain's lineage,
    why it does not serve, the results, confusion matrix, validation, data and training tables: every line.
    A deliberate change to the card changes expected_card.md in the same commit."""
    assert model_card(CONFIG, METRICS, REPORT, HISTORY) == EXPECTED.read_text()
