"""Why a tweet got its label: word occlusion, a per-word score and the span that carries the sentiment.

    ex = explain(model, "my boss is bullying me...")        # any SentimentModel (inference.classifier)
    ex.label, ex.words      # "negative", [("my", 0.01), ("boss", 0.04), ..., ("bullying", 0.41), ...]
    ex.span                 # "bullying me..."
    ex.highlighted()        # the value for gr.HighlightedText

Method: each word (whitespace-separated, as the competition's Jaccard counts words) is left out in
turn and the tweet classified again; the word's score is how much the probability of the explained
label falls without it (below 0: the word argued against the label). It is faithful by construction
(it measures what the model does without the word, not a gradient's local guess) and cheap on CPU:
no backward pass, and for a fine-tuned classifier the tweet's key/value cache is reused, so that the
tweet without word i recomputes only the tokens after word i (about half the tokens of n + 1 full
rows), all n variants in one batch. Other models (few-shot) classify the n + 1 texts in one call.
All labels' scores come from the same forward, so explaining another label costs nothing extra.

The span is the run of consecutive words whose scores, less `SPAN_THRESHOLD` × the top score, add up
to the most; for a neutral label it is the whole tweet (people mark the whole tweet for neutral ones).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import torch

from finetune.config import LABELS

from .classifier import CHARS_PER_TOKEN_CAP, Classifier, SentimentModel, check_text

SPAN_THRESHOLD = 0.2  # chosen on 500 training rows (python -m inference.explain_eval RUN --tune 500), see README
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
    """Classify each text and each text without one of its words."""
    texts = [check_text(t) for t in texts]
    if isinstance(model, Classifier) and hasattr(model.model, "score") and model.tokenizer.is_fast:
        with model._lock:  # the classifier's own lock: fast tokenizers are not thread-safe
            return [_occlude_cached(model, t) for t in texts]
    return _occlude_texts(model, texts)


def _occlude_texts(model: SentimentModel, texts: list[str]) -> list[Occlusion]:
    """Any model: the texts and their variants in one `classify` call (rows of similar length share a batch)."""
    rows, owners = [], []
    spans = [[m.span() for m in _WORD.finditer(t)] for t in texts]
    for n, (text, words) in enumerate(zip(texts, spans)):
        rows.append(text)
        owners.append((n, -1))
        for w, (s, e) in enumerate(words):
            rest = _without(text, s, e)
            if rest.strip():  # a one-word tweet without its word is nothing: scored against no evidence (uniform)
                rows.append(rest)
                owners.append((n, w))
    probs = [np.array([p.scores[l] for l in LABELS]) for p in model.classify(rows)]
    out = [Occlusion(t, s, None, np.full((len(s), len(LABELS)), 1 / len(LABELS))) for t, s in zip(texts, spans)]
    for (n, w), p in zip(owners, probs):
        if w < 0:
            out[n].full = p
        else:
            out[n].without[w] = p
    return out


@torch.inference_mode()
def _occlude_cached(clf: Classifier, text: str) -> Occlusion:
    """A sequence classifier reading the last token: one forward of the tweet with its key/value cache,
    then one batch in which row i continues the cache of the tokens before word i with the tokens after
    it (positions shifted to close the gap), so the tokens before word i are never recomputed."""
    model, tok = clf.model, clf.tokenizer
    spans = [m.span() for m in _WORD.finditer(text)]
    enc = tok(text[:clf.max_length * CHARS_PER_TOKEN_CAP], truncation=True, max_length=clf.max_length,
              return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    out = model.base_model(input_ids=torch.tensor([ids]), use_cache=True)
    logits = model.score(out.last_hidden_state[0]).float()      # what each prefix of the tweet would get
    full = torch.softmax(logits[-1], -1)
    probs = [full] * len(spans)                                  # a word cut off by truncation changes nothing
    texts, rows = [], []                                         # (word, text) to classify; (word, a, b)
    for w, (s, e) in enumerate(spans):
        inside = [k for k, (ts, te) in enumerate(offsets) if ts < e and te > s]
        if not inside:
            continue
        a, b = inside[0], inside[-1] + 1
        if a == 0:                                               # no prefix to reuse: the text without it
            if _without(text, s, e).strip():
                texts.append((w, _without(text, s, e)))
            else:
                probs[w] = torch.full_like(full, 1 / len(LABELS))  # nothing left: no evidence (uniform)
        elif b == len(ids):                                      # the last word: the prefix's own last token
            probs[w] = torch.softmax(logits[a - 1], -1)
        else:
            rows.append((w, a, b))
    if rows:
        n, L, S = len(rows), len(ids), max(len(ids) - b for _, _, b in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        suffix = torch.full((n, S), pad)
        positions = torch.zeros((n, S), dtype=torch.long)
        allowed = torch.zeros((n, 1, S, L + S), dtype=torch.bool)
        causal = torch.ones((S, S), dtype=torch.bool).tril()
        for i, (_, a, b) in enumerate(rows):
            k = L - b
            suffix[i, :k] = torch.tensor(ids[b:])
            positions[i] = a + torch.arange(S)
            allowed[i, 0, :, :a] = True                          # the tokens before the removed word
            allowed[i, 0, :, L:L + k] = causal[:, :k]            # and the suffix, causally
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        dtype = next(model.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        hidden = model.base_model(input_ids=suffix, position_ids=positions, attention_mask=mask,
                                  past_key_values=cache, use_cache=True).last_hidden_state
        last = torch.tensor([len(ids) - b - 1 for _, _, b in rows])
        row_probs = torch.softmax(model.score(hidden[torch.arange(n), last]).float(), -1)
        for (w, _, _), p in zip(rows, row_probs):
            probs[w] = p
    if texts:
        for (w, _), p in zip(texts, clf.predict_proba([t for _, t in texts])):
            probs[w] = torch.from_numpy(p)
    return Occlusion(text, spans, full.numpy(), torch.stack(probs).numpy() if spans else np.zeros((0, len(LABELS))))


def explain(model: SentimentModel, text: str, label: str | None = None,
            threshold: float = SPAN_THRESHOLD) -> Explanation:
    """Explain one tweet's label (the model's, or `label`): per-word scores and a span."""
    return occlude(model, [text])[0].explain(label, threshold)


def explain_many(model: SentimentModel, texts: list[str], threshold: float = SPAN_THRESHOLD) -> list[Explanation]:
    return [o.explain(None, threshold) for o in occlude(model, texts)]
