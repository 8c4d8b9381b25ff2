"""How faithful the Classify tab's highlights are: ERASER's comprehensiveness and sufficiency.

    python -m inference.faithfulness RUN_DIR --dataset ../shared/data/tweet_sentiment_extraction --n 500

For each test tweet, the rationale is what the tab highlights as carrying the label: the explanation's
span (for a neutral label, whose span is the whole tweet, the top fifth of the words by occlusion score).
- comprehensiveness = p(label | tweet) − p(label | tweet without the rationale): high = the rationale
  was needed;
- sufficiency = p(label | tweet) − p(label | the rationale alone): low = the rationale is enough.
Both are set against random rationales of the same number of words (seeded) on the same tweets, as
ERASER (DeYoung et al., 2020) does. A tweet left empty scores the uniform 1/3, as occlusion does.
"""
from __future__ import annotations

import argparse
import json
import random
import sys

import numpy as np

from core.errors import UserError
from core.labels import LABELS
from core.runs import Run

from .classifier import Classifier
from .explain import NEUTRAL, Explanation, explain_many

NEUTRAL_SHARE = 0.2   # a neutral tweet's rationale: this share of its words, the highest scored


def rationale(ex: Explanation) -> list[int]:
    """Indices of the words the tab highlights as carrying the label."""
    if ex.label != NEUTRAL:
        spans, pos = [], 0
        for i, (word, _) in enumerate(ex.words):
            start = ex.text.index(word, pos)
            pos = start + len(word)
            if ex.span_start <= start < ex.span_end:
                spans.append(i)
        return spans
    k = max(1, round(NEUTRAL_SHARE * len(ex.words)))
    return sorted(sorted(range(len(ex.words)), key=lambda i: -ex.words[i][1])[:k])


def _words(ex: Explanation, keep: set[int], inside: bool) -> str:
    return " ".join(w for i, (w, _) in enumerate(ex.words) if (i in keep) == inside)


def _probabilities(model: Classifier, texts: list[str]) -> np.ndarray:
    """The model's probabilities, uniform for an empty text."""
    out = np.full((len(texts), len(LABELS)), 1 / len(LABELS))
    rows = [i for i, t in enumerate(texts) if t.strip()]
    if rows:
        out[rows] = model.predict_proba([texts[i] for i in rows])
    return out


def scores(model: Classifier, texts: list[str], seed: int = 42) -> dict:
    """Mean comprehensiveness and sufficiency of the highlights and of random ones of the same size."""
    rng = random.Random(seed)
    explanations = explain_many(model, texts)
    chosen = [set(rationale(ex)) for ex in explanations]
    randoms = [set(rng.sample(range(len(ex.words)), len(c))) for ex, c in zip(explanations, chosen)]
    variants = [_words(ex, keep, inside) for keep_sets in (chosen, randoms) for inside in (False, True)
                for ex, keep in zip(explanations, keep_sets)]
    probs = _probabilities(model, variants).reshape(4, len(texts), len(LABELS))
    k = np.array([LABELS.index(ex.label) for ex in explanations])
    full = np.array([ex.scores[ex.label] for ex in explanations])
    at = lambda p: p[np.arange(len(texts)), k]  # noqa: E731  (each tweet's explained label)
    result = {"n": len(texts), "rationale_words": float(np.mean([len(c) for c in chosen])),
              "words": float(np.mean([len(ex.words) for ex in explanations]))}
    for name, (without, alone) in {"highlights": (probs[0], probs[1]), "random": (probs[2], probs[3])}.items():
        result[name] = {"comprehensiveness": round(float(np.mean(full - at(without))), 4),
                        "sufficiency": round(float(np.mean(full - at(alone))), 4)}
    return result


def markdown(result: dict, run_id: str) -> str:
    h, r = result["highlights"], result["random"]
    return (f"| rationale ({result['n']} test tweets, run {run_id}; {result['rationale_words']:.1f} of "
            f"{result['words']:.1f} words on average) | comprehensiveness ↑ | sufficiency ↓ |\n|---|---|---|\n"
            f"| the tab's highlights | {h['comprehensiveness']:.3f} | {h['sufficiency']:.3f} |\n"
            f"| random words, same number | {r['comprehensiveness']:.3f} | {r['sufficiency']:.3f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m inference.faithfulness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a finished run folder")
    p.add_argument("--dataset", help="a folder with test.jsonl (default: the run's dataset)")
    p.add_argument("--n", type=int, default=500, help="test tweets to score (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    try:
        run = Run(args.run)
        model = Classifier.load(run.path)
        texts = test_tweets(args.dataset or run.config.get("dataset", ""), args.n)
        result = scores(model, texts)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else markdown(result, run.id))
    return 0


def test_tweets(dataset: str, n: int) -> list[str]:
    """The first n non-empty tweets of the dataset folder's test.jsonl."""
    try:
        lines = open(f"{dataset}/test.jsonl", encoding="utf-8").read().splitlines()
    except OSError:
        raise UserError(f"no test.jsonl in {dataset!r}: pass --dataset, a folder with test.jsonl") from None
    texts = [t for t in (json.loads(line).get("text") or "" for line in lines) if t.strip()]
    return texts[:n]


if __name__ == "__main__":
    sys.exit(main())
