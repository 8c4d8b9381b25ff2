"""Likely label errors among the training rows, ranked by confident learning (cleanlab).

    python -m finetune.review --dataset ../shared/data/tweet_sentiment_extraction \
        --base-model ~/.cache/offline-models/smollm2-135m [--embedder RUN_DIR] [--train-size 1400]

Out-of-sample probabilities, cheaply on 2 CPU cores: sentence embeddings (the mean of the last hidden
states) from one forward pass of a model — the base model, or a fine-tuned run's backbone, whose
representations already separate the sentiments — then a cross-validated logistic regression, so
that each row's probabilities come from a fold that never saw it. With a run, only rows it never
trained on are reviewed, and its own probabilities are averaged in (RESULTS.md: the best ranking). Embeddings are cached per model and
texts. `cleanlab.filter.find_label_issues` flags the rows whose given label the model doubts, ranked
by self-confidence. A person then keeps, relabels (a correction, see `corrections`) or excludes each
(`exclude`: <runs_dir>/exclusions.jsonl, which the next retrain's data honours).

`--flip 0.05` is the controlled check: flip 5 % of the rows' labels (seeded), review, and print the
precision and recall of finding the flipped rows.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers.utils import logging as hf_logging

from core.errors import UserError
from core.labels import LABELS
from core.model import load_classifier, load_tokenizer, predict_proba, set_threads
from core.runs import Run, read_json, write_json

from . import data, exclusions
from .config import TrainConfig

FOLDS = 5
REVIEW_ROWS = 1400      # rows reviewed unless --train-size says (the one-click size before the time budget)
EMBED_MAX_TOKENS = 64   # a tweet's sentiment is in its first 64 tokens; longer rows cost more for nothing


@dataclass
class Suspect:
    row: int                # index into the reviewed rows
    text: str
    given: str              # the label the data gives
    suggested: str          # the label the out-of-sample model finds likeliest
    score: float            # cleanlab's label quality (self-confidence): low = likely wrong

    def to_dict(self) -> dict:
        return asdict(self)


# --- out-of-sample probabilities --------------------------------------------------------------------
@torch.inference_mode()
def embed(model_source: str, texts: list[str], cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features, probabilities) of `model_source` (a base model or a run folder) for the texts, from one
    forward pass: (n, hidden) mean-pooled last hidden states, and (n, 3) its own label probabilities
    (which mean something for a fine-tuned run only); cached in `cache_dir` by model and texts."""
    key = hashlib.sha256(json.dumps([str(model_source), texts]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"embeddings-{key}.npz" if cache_dir else None
    if cache and cache.exists():
        with np.load(cache) as saved:
            return saved["features"], saved["probs"]
    set_threads()
    tokenizer = load_tokenizer(str(model_source))
    model = load_classifier(str(model_source), tokenizer).eval()
    probs, features = predict_proba(model, tokenizer, texts, EMBED_MAX_TOKENS, pooled=True)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, features=features, probs=probs)
    return features, probs


def out_of_sample_probs(features: np.ndarray, labels: list[int], seed: int = 42) -> np.ndarray:
    """(n, 3) probabilities, each row's from a logistic regression fitted on the other folds."""
    folds = min(FOLDS, min(np.bincount(labels, minlength=len(LABELS))))
    if folds < 2:
        raise UserError("too few rows of some label to review: each label needs at least 2 rows")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.05))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, features, labels, cv=cv, method="predict_proba")


def suspects(texts: list[str], labels: list[int], probs: np.ndarray) -> list[Suspect]:
    """The rows confident learning flags, most doubtful first."""
    labels = np.asarray(labels)
    flagged = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    scores = get_label_quality_scores(labels, probs, method="self_confidence")
    return [Suspect(int(i), texts[i], LABELS[labels[i]], LABELS[int(probs[i].argmax())], round(float(scores[i]), 4))
            for i in flagged]


# --- the review and the controlled check --------------------------------------------------------------
def review(texts: list[str], labels: list[int], embedder: str, cache_dir: Path | None = None,
           seed: int = 42) -> tuple[list[Suspect], dict]:
    """(suspects, summary) for the rows; the summary has the out-of-fold accuracy and timings."""
    started = time.perf_counter()
    features, own = embed(embedder, texts, cache_dir)
    embedded = time.perf_counter()
    probs = out_of_sample_probs(features, labels, seed)
    if Run(Path(embedder)).is_complete:  # a run's own answers on rows it never saw are out-of-sample too
        probs = (probs + own) / 2
    found = suspects(texts, labels, probs)
    summary = {"rows": len(texts), "flagged": len(found), "embedder": Path(embedder).name,
               "out_of_fold_accuracy": round(float((probs.argmax(1) == np.asarray(labels)).mean()), 4),
               "embed_seconds": round(embedded - started, 1), "seconds": round(time.perf_counter() - started, 1)}
    return found, summary


def flip(labels: list[int], fraction: float, seed: int = 42) -> tuple[list[int], set[int]]:
    """The labels with `fraction` of them changed to another label at random (seeded); → (labels, rows flipped)."""
    rng = random.Random(seed)
    rows = set(rng.sample(range(len(labels)), round(fraction * len(labels))))
    return [rng.choice([x for x in range(len(LABELS)) if x != l]) if i in rows else l
            for i, l in enumerate(labels)], rows


def flip_scores(found: list[Suspect], flipped: set[int], n_rows: int) -> dict:
    """Precision and recall of the flagged rows against the flipped ones, and the precision of the top
    `len(flipped)` (5 % of the rows for a 5 % flip) of the ranking."""
    flagged = [s.row for s in found]
    hits = len(set(flagged) & flipped)
    top = flagged[:len(flipped)]
    return {"flipped": len(flipped), "flagged": len(flagged),
            "precision": round(hits / max(1, len(flagged)), 3), "recall": round(hits / max(1, len(flipped)), 3),
            "top_precision": round(len(set(top) & flipped) / max(1, len(top)), 3), "top_k": len(top),
            "rows": n_rows}


def training_rows(cfg: TrainConfig) -> tuple[list[str], list[int]]:
    """The training rows a run with `cfg` would use (cleaned, de-duplicated, without leakage)."""
    splits, _ = data.prepare(cfg)
    return list(splits["train"]["text"]), list(splits["train"]["label"])


def unseen_by(run_dir: Path, texts: list[str], labels: list[int]) -> tuple[list[str], list[int], int]:
    """The rows that the run in `run_dir` did not train on (its own settings say which it did), so that
    its backbone's embeddings of them stay out-of-sample; → (texts, labels, rows left out)."""
    run = Run(run_dir)
    if not run.is_complete:
        raise UserError(f"{run_dir} is not a finished run folder: pass one to --embedder, or a model")
    seen = {data.fold(t) for t in training_rows(TrainConfig.from_dict(run.config))[0]}
    kept = [(t, l) for t, l in zip(texts, labels) if data.fold(t) not in seen]
    return [t for t, _ in kept], [l for _, l in kept], len(texts) - len(kept)


def save(found: list[Suspect], summary: dict, path: Path) -> Path:
    write_json(path, {"summary": summary, "suspects": [s.to_dict() for s in found]})
    return path


def load_saved(path: Path) -> dict:
    return read_json(path, {"summary": {}, "suspects": []})


# --- the command line -------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m finetune.review", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=TrainConfig.dataset, help="as for python -m finetune")
    p.add_argument("--base-model", default=TrainConfig.base_model, help="as for python -m finetune")
    p.add_argument("--embedder", default="", help="a model or run folder to embed with (default: the base model); "
                   "a fine-tuned run's backbone finds more label errors (RESULTS.md)")
    p.add_argument("--train-size", default=str(REVIEW_ROWS), help="rows to review (0 or 'all' = every one)")
    p.add_argument("--runs-dir", default=TrainConfig.runs_dir, help="where the cache and the list go")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--flip", type=float, default=0.0, help="the controlled check: flip this share of labels first")
    p.add_argument("--top", type=int, default=20, help="suspects to print")
    p.add_argument("--out", default="", help="write the ranked list here (default: <runs-dir>/label_review.json)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    hf_logging.set_verbosity_error()  # a base model's new, unused classification head: no load report
    hf_logging.disable_progress_bar()
    try:
        cfg = TrainConfig(base_model=args.base_model, dataset=args.dataset, train_size=args.train_size,
                          runs_dir=args.runs_dir, seed=args.seed, include_corrections=False).validate()
        texts, labels = training_rows(cfg)
        left_out = 0
        if args.embedder and Run(Path(args.embedder)).status:  # a run: review only rows it never saw
            texts, labels, left_out = unseen_by(Path(args.embedder), texts, labels)
        labels, flipped = flip(labels, args.flip, args.seed) if args.flip else (labels, set())
        found, summary = review(texts, labels, args.embedder or cfg.base_model, Path(cfg.runs_dir) / "_cache",
                                args.seed)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary["left_out_seen_by_embedder"] = left_out
    if flipped:
        summary["flip_check"] = flip_scores(found, flipped, len(texts))
    out = save(found, summary, Path(args.out or Path(cfg.runs_dir) / exclusions.REVIEW_FILE))
    print(f"{summary['flagged']} of {summary['rows']} rows flagged as likely label errors "
          f"(out-of-fold accuracy {summary['out_of_fold_accuracy']:.3f}, {summary['seconds']:.0f} s); list: {out}")
    for s in found[:args.top]:
        print(f"  {s.score:.3f}  given {s.given:<8} suggested {s.suggested:<8} {' '.join(s.text.split())[:100]}")
    if flipped:
        print("flip check: " + json.dumps(summary["flip_check"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
