"""ERASER faithfulness: a model that reads one word is explained by that word, and random words are not."""
import numpy as np

from core.labels import LABELS
from inference.classifier import SentimentModel
from inference.explain import explain
from inference.faithfulness import rationale, scores


class OneWordModel(SentimentModel):
    """Positive exactly when "love" is in the text, negative for "hate", else neutral."""
    name = "one-word"

    def predict_proba(self, texts):
        out = []
        for t in texts:
            words = t.lower().split()
            label = 2 if "love" in words else 0 if "hate" in words else 1
            out.append([0.9 if i == label else 0.05 for i in range(len(LABELS))])
        return np.array(out)


def test_the_rationale_is_the_span_and_for_neutral_the_top_words():
    model = OneWordModel()
    ex = explain(model, "i really love this song today")
    assert ex.label == "positive" and [ex.words[i][0] for i in rationale(ex)] == ["love"]
    neutral = explain(model, "the bus leaves at nine from the main road")
    assert neutral.label == "neutral" and len(rationale(neutral)) == 2  # a fifth of 10 words


def test_highlights_are_comprehensive_and_sufficient_where_random_words_are_not():
    texts = ["i really love this song today", "we hate waiting for the late bus", "love it so much my friend",
             "so i hate mondays at the office", "the new phone i love a lot"]
    result = scores(OneWordModel(), texts, seed=0)
    assert result["n"] == 5 and result["rationale_words"] == 1
    assert result["highlights"] == {"comprehensiveness": 0.85, "sufficiency": 0.0}
    assert result["random"]["comprehensiveness"] < 0.85 and result["random"]["sufficiency"] > 0
