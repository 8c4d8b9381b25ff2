"""python -m bench.explain_eval RUN [--limit N] [--tune N] [--latency]

Scores the explanations against people: on the validation rows of RUN's own split (never trained
on), the span that word occlusion picks is compared with the span human annotators marked as
carrying the sentiment (Kaggle's `selected_text`, joined by `id`), with the competition's word-level
Jaccard, beside two baselines: the whole tweet, and the best Kaggle systems (trained for this task,
with the sentiment given).

    python -m bench.explain_eval runs/<run-id>                  # the table (README, Explanations)
    python -m bench.explain_eval runs/<run-id> --tune 500       # pick SPAN_THRESHOLD on training rows
    python -m bench.explain_eval runs/<run-id> --latency        # one tweet: explain vs classify
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from finetune import data
from finetune.config import TrainConfig
from core.labels import LABELS
from core.errors import UserError
from core.runs import Run

from inference.classifier import Classifier
from inference.explain import SPAN_THRESHOLD, jaccard, occlude

SELECTED_FILE = "train_selected_text.jsonl"
KAGGLE_BEST = 0.736  # 1st place, private leaderboard of Kaggle's Tweet Sentiment Extraction (2020)
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
LATENCY_TWEET = "my boss is bullying me again, worst monday ever... at least the coffee is good"


def _selected_by_text(dataset: str, selected: Path, seed: int) -> dict:
    """fold(text) → the people's span, joining the dataset's train rows to `selected` by id."""
    try:
        spans = {r["id"]: r["selected_text"] for r in map(json.loads, Path(selected).read_text().splitlines())}
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read the people's spans from {selected} ({exc}): pass --selected "
                        f"with a JSONL file of id and selected_text") from None
    train = data.load_splits(dataset, seed)["train"]
    if "id" not in train.column_names:
        raise UserError(f"dataset {dataset!r} has no id column to join with {selected}")
    return {data.fold(t): spans[i] for i, t in zip(train["id"], train["text"]) if i in spans and isinstance(t, str)}


def _rows(run: Run, split: str, dataset: str | None, selected: Path | None, limit: int):
    """The run's own `split` (prepare with its saved config and seed), with people's spans."""
    cfg = TrainConfig.from_dict(run.config)
    cfg.dataset = dataset or cfg.dataset
    selected = Path(selected) if selected else Path(cfg.dataset).expanduser() / SELECTED_FILE
    people = _selected_by_text(cfg.dataset, selected, cfg.seed)
    splits, _ = data.prepare(cfg)
    rows = [(t, l, people[data.fold(t)]) for t, l in zip(splits[split]["text"], splits[split]["label"])
            if data.fold(t) in people]
    return rows[:limit] if limit else rows


def _by_label(scores: list[float], labels: list[int]) -> dict:
    out = {name: float(np.mean([s for s, l in zip(scores, labels) if l == k])) if k in labels else None
           for k, name in enumerate(LABELS)}
    return {**out, "all": float(np.mean(scores))}


def evaluate(run_dir: str | Path, split: str = "validation", dataset: str | None = None,
             selected: str | Path | None = None, limit: int = 0, thresholds=(SPAN_THRESHOLD,),
             batch: int = 64, progress=None) -> dict:
    """Jaccard of the whole tweet and of occlusion spans (for the model's label and for the true one)."""
    run = Run(Path(run_dir))
    rows = _rows(run, split, dataset, selected, limit)
    if not rows:
        raise UserError(f"no {split} rows of run {run.id} have a people's span: check --selected and --dataset")
    model = Classifier.load(run.path)
    texts, labels, people = zip(*rows)
    started, occlusions = time.monotonic(), []
    for start in range(0, len(texts), batch):
        occlusions += occlude(model, list(texts[start:start + batch]))
        if progress:
            progress(len(occlusions), len(texts))
    seconds = time.monotonic() - started
    predicted = [LABELS[int(o.full.argmax())] for o in occlusions]
    table = {"whole tweet": _by_label([jaccard(t, p) for t, p in zip(texts, people)], labels)}
    for th in thresholds:
        suffix = "" if len(thresholds) == 1 else f" (threshold {th:g})"
        for name, which in (("model's label", predicted), ("true label", [LABELS[l] for l in labels])):
            spans = [o.explain(w, th).span for o, w in zip(occlusions, which)]
            table[f"occlusion span, {name}{suffix}"] = _by_label([jaccard(s, p) for s, p in zip(spans, people)],
                                                                 labels)
    return {"run": run.id, "split": split, "n": len(rows), "rows": table, "texts": list(texts),
            "selected": list(people), "accuracy": float(np.mean([p == LABELS[l] for p, l in zip(predicted, labels)])),
            "seconds_per_tweet": seconds / len(rows)}


def markdown(result: dict) -> str:
    head = (f"| Jaccard with people's spans ({result['split']} rows of run {result['run']}, n={result['n']}) "
            f"| negative | neutral | positive | all |\n|---|---|---|---|---|\n")
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    body = "".join(f"| {name} | " + " | ".join(fmt(v[k]) for k in (*LABELS, "all")) + " |\n"
                   for name, v in result["rows"].items())
    kaggle = f"| best Kaggle systems (trained for spans, sentiment given) | – | – | – | ≈ {KAGGLE_BEST:.2f} |\n"
    return (head + body + kaggle + f"\nModel accuracy on these rows: {result['accuracy']:.3f}; occlusion took "
            f"{result['seconds_per_tweet'] * 1000:.0f} ms per tweet.")


def latency(run_dir: str | Path, repeats: int = 20, text: str = LATENCY_TWEET) -> dict:
    """Median seconds for one tweet: to classify it, and to explain it (each word left out in turn)
    with the rows packed into one forward (ours) and as one padded row each (the reference)."""
    from inference.explain import explain

    model = Classifier.load(run_dir)

    def explain_padded():
        model.pack_variants = False
        try:
            return explain(model, text)
        finally:
            model.pack_variants = True

    timers = {"classify": lambda: model.classify(text), "explain_padded": explain_padded,
              "explain": lambda: explain(model, text)}
    for _ in range(3):  # warm-up
        for fn in timers.values():
            fn()
    samples = {name: [] for name in timers}
    for _ in range(repeats):  # interleaved, so that a noisy neighbour slows all three alike
        for name, fn in timers.items():
            t = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t)
    timed = {name: statistics.median(s) for name, s in samples.items()}
    return {**timed, "ratio": timed["explain"] / timed["classify"],
            "ratio_padded": timed["explain_padded"] / timed["classify"], "words": len(text.split())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.explain_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder (its own validation rows are scored)")
    p.add_argument("--dataset", help="the run's dataset, if its saved path no longer resolves")
    p.add_argument("--selected", help=f"JSONL of id and selected_text (default: <dataset>/{SELECTED_FILE})")
    p.add_argument("--limit", type=int, default=0, help="score only the first N rows (0 = all)")
    p.add_argument("--tune", type=int, default=0, metavar="N",
                   help="instead: Jaccard per span threshold on N of the run's training rows")
    p.add_argument("--latency", action="store_true", help="instead: one tweet's latency, explain vs classify")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    progress = lambda done, total: print(f"\r  {done}/{total} tweets", end="", file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.latency:
            result = latency(args.run)
            print(json.dumps(result) if args.json else
                  f"one tweet ({result['words']} words): classify {result['classify'] * 1000:.1f} ms; explain "
                  f"{result['explain'] * 1000:.1f} ms packed ({result['ratio']:.1f}×), "
                  f"{result['explain_padded'] * 1000:.1f} ms as padded rows ({result['ratio_padded']:.1f}×)")
            return 0
        if args.tune:
            result = evaluate(args.run, "train", args.dataset, args.selected, args.tune, THRESHOLDS, progress=progress)
        else:
            result = evaluate(args.run, "validation", args.dataset, args.selected, args.limit, progress=progress)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k not in ("texts", "selected")}, indent=2))
    else:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
