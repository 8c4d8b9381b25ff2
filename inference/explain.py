"""Why a tweet got its label: word occlusion, a per-word score and the span that carries the sentiment.

    ex = explain(model, "my boss is bullying me...")        # any SentimentModel (inference.classifier)
    ex.label, ex.words      # "negative", [("my", 0.01), ("boss", 0.04), ..., ("bullying", 0.41), ...]
    ex.span                 # "bullying me..."
    ex.highlighted()        # the value for gr.HighlightedText

Method: each word (whitespace-separated, as the competition's Jaccard counts words) is left out in
turn and the tweet classified again; the word's score is how much the probability of the explained
label falls without it (below 0: the word argued against the label). It is faithful by construction
(it measures what the model does without the word, not a gradient's local guess) and cheap on CPU:
no backward pass: a tweet of n words is n + 1 short rows, classified together by
`classify_variants`, which for a fine-tuned decoder packs them into one causal forward where each
row reuses the words before its gap (README, Explanations). All labels' scores come from the same
forward, so explaining another label costs nothing extra.

The span is the run of consecutive words whose scores, less `SPAN_THRESHOLD` × the top score, add up
to the most; for a neutral label it is the whole tweet (people mark the whole tweet for neutral ones).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from core.labels import LABELS

from .classifier import SentimentModel, check_text

SPAN_THRESHOLD = 0.0  # chosen for the model's label on 500 training rows (python -m bench.explain_eval RUN --tune 500), README
NEUTRAL = "neutral"
_WORD = re.compile(r"\S+")


def jaccard(a: str, b: str) -> float:
    """The Kaggle competition's word-level Jaccard: lower-cased, whitespace-split word sets."""
    x, y = set(a.lower().split()), set(b.lower().split())
    if not x and not y:
        return 1.0
    return len(x & y) / len(x | y)


@dataclass
class Explanation:
    text: str
    label: str                   # the label explained (the model's, unless another was asked for)
    scores: dict                 # the model's probabilities for the whole tweet
    words: list                  # [(word, score)]: how much P(label) falls without the word
    span: str                    # the words that carry the label, as they appear in the text
    span_start: int              # character offsets of the span in `text`
    span_end: int
    method: str = "word occlusion"

    def highlighted(self) -> list[tuple[str, float | None]]:
        """The whole text as (piece, value) pairs for gr.HighlightedText: each word's score scaled to
        [-1, 1] by the largest one; the whitespace between words is unscored."""
        top = max((abs(s) for _, s in self.words), default=0.0) or 1.0
        pieces, pos = [], 0
        for m, (_, score) in zip(_WORD.finditer(self.text), self.words):
            if m.start() > pos:
                pieces.append((self.text[pos:m.start()], None))
            pieces.append((m.group(), round(score / top, 3)))
            pos = m.end()
        if pos < len(self.text):
            pieces.append((self.text[pos:], None))
        return pieces

    def to_dict(self) -> dict:
        d = asdict(self)
        d["words"] = [{"word": w, "score": round(s, 4)} for w, s in self.words]
        return d


@dataclass
class Occlusion:
    """One tweet's words, with the model's probabilities for the tweet and for it without each word."""
    text: str
    spans: list                  # (start, end) character offsets of each word
    full: np.ndarray             # (labels,)
    without: np.ndarray          # (words, labels)

    def explain(self, label: str | None = None, threshold: float = SPAN_THRESHOLD) -> Explanation:
        label = label or LABELS[int(self.full.argmax())]
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        k = LABELS.index(label)
        drops = (self.full[k] - self.without[:, k]).tolist()
        i, j = best_span(drops, threshold) if label != NEUTRAL else (0, len(drops) - 1)
        start, end = self.spans[i][0], self.spans[j][1]
        return Explanation(
            text=self.text, label=label, scores={l: float(p) for l, p in zip(LABELS, self.full)},
            words=[(self.text[s:e], float(d)) for (s, e), d in zip(self.spans, drops)],
            span=self.text[start:end], span_start=start, span_end=end)


def best_span(scores: list[float], threshold: float = SPAN_THRESHOLD) -> tuple[int, int]:
    """First and last index of the consecutive words whose (score − threshold × top score) sum is the
    largest (Kadane); the whole tweet when no word raises the label."""
    top = max(scores, default=0.0)
    if top <= 0:
        return 0, len(scores) - 1
    cut = threshold * top
    best, best_ij, run, start = -np.inf, (0, 0), 0.0, 0
    for i, s in enumerate(scores):
        if run <= 0:
            run, start = 0.0, i
        run += s - cut
        if run > best:
            best, best_ij = run, (start, i)
    return best_ij


def _without(text: str, start: int, end: int) -> str:
    """The text without one word and one space before it (else one after it), as a tokenizer that
    starts a word's first token with its space sees it."""
    if start and text[start - 1].isspace():
        return text[:start - 1] + text[end:]
    return text[:start] + (text[end + 1:] if text[end:end + 1].isspace() else text[end:])


def occlude(model: SentimentModel, texts: list[str]) -> list[Occlusion]:
    """Classify each text and each text without one of its words (one `classify_variants` call per
    text: a fine-tuned model computes the words before the left-out one only once)."""
    out = []
    for text in map(check_text, texts):
        spans = [m.span() for m in _WORD.finditer(text)]
        rows = {w: _without(text, s, e) for w, (s, e) in enumerate(spans)}
        # a one-word tweet without its word is nothing: scored against no evidence (uniform)
        rows = {w: rest for w, rest in rows.items() if rest.strip()}
        probs = model.classify_variants(text, list(rows.values()))
        without = np.full((len(spans), len(LABELS)), 1 / len(LABELS))
        without[list(rows)] = probs[1:]
        out.append(Occlusion(text, spans, probs[0], without))
    return out


def explain(model: SentimentModel, text: str, label: str | None = None,
            threshold: float = SPAN_THRESHOLD) -> Explanation:
    """Explain one tweet's label (the model's, or `label`): per-word scores and a span."""
    return occlude(model, [text])[0].explain(label, threshold)


def explain_many(model: SentimentModel, texts: list[str], threshold: float = SPAN_THRESHOLD) -> list[Explanation]:
    return [o.explain(None, threshold) for o in occlude(model, texts)]
