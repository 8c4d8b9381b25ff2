"""Few-shot prompting vs fine-tuning, on one and the same test subset.

    python -m finetune.compare --base-model ~/.cache/offline-models/smollm2-135m \
        --dataset ../shared/data/tweet_sentiment_extraction --test-size 1000 \
        --k 0 4 8 16 --runs /tmp/runs/<1000-tweet run> /tmp/runs/<full-data run>

Rows: the majority class of the cleaned train split; the base model prompted with k labelled examples
(k = 0 is zero-shot; the examples come from the train split), calibrated on 100 unlabelled training
tweets (its raw, uncalibrated accuracy beside it); and each given fine-tuned run folder,
re-evaluated here on the same test tweets (whatever subset the run itself was tested on). Prints a
markdown table; `--json FILE` also writes the rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from core.errors import UserError
from core.labels import LABELS
from core.model import load_classifier, load_tokenizer, predict_proba, trained_max_length
from core.runs import Run

from . import baseline, data
from .config import TrainConfig
from .metrics import classification_metrics


def majority(train_rows, test_rows) -> dict:
    label = Counter(l for _, l in train_rows).most_common(1)[0][0]
    return {"method": f"majority class ({LABELS[label]})",
            **classification_metrics([l for _, l in test_rows], [label] * len(test_rows))}


def fine_tuned(run_dir: str | Path, test_rows) -> dict:
    run = Run(Path(run_dir))
    tokenizer = load_tokenizer(str(run.path))
    model = load_classifier(str(run.path), tokenizer).eval()
    probs = predict_proba(model, tokenizer, [t for t, _ in test_rows], trained_max_length(tokenizer))
    size = run.data_report.get("sizes", {}).get("train", "?")
    epochs = run.config.get("epochs", "?")
    how = "LoRA" if run.config.get("lora") else "fine-tuned"
    return {"method": f"{how} on {size} tweets, {epochs:g} epoch(s) ({run.id})" if isinstance(epochs, (int, float))
            else f"{how} ({run.id})", **classification_metrics([l for _, l in test_rows], probs.argmax(axis=1))}


def compare(cfg: TrainConfig, ks: list[int], runs: list[str], on_row=None) -> list[dict]:
    """The rows of the table, each with accuracy, macro-F1 and the seconds it took."""
    for run in runs:
        if not Run(Path(run)).is_complete:
            raise UserError(f"{run} is not a complete run folder: pass finished runs to --runs")
    cleaned = data.clean(cfg)
    splits, _ = data.split(cfg, cleaned)
    train_rows, test_rows = data.split_rows(splits["train"]), data.split_rows(splits["test"])
    jobs = [lambda: majority(train_rows, test_rows)]
    jobs += [lambda k=k: baseline.evaluate(cfg.base_model, cleaned.prompt_rows(), test_rows, k, cfg.seed,
                                           cache_dir=Path(cfg.runs_dir) / "_cache") for k in ks]
    jobs += [lambda r=r: fine_tuned(r, test_rows) for r in runs]
    rows = []
    for job in jobs:
        started = time.monotonic()
        row = job()
        row["seconds"] = round(time.monotonic() - started, 1)
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def table(rows: list[dict]) -> str:
    n = rows[0]["n"] if rows else 0
    lines = [f"| method (test subset: {n} tweets) | accuracy | macro-F1 | uncalibrated accuracy / macro-F1 |",
             "|---|---|---|---|"]
    for r in rows:
        raw = r.get("uncalibrated")
        raw = f"{raw['accuracy']:.3f} / {raw['f1_macro']:.3f}" if raw else ""
        method = f"{r['method']} ({r['prompt']})" if r.get("prompt") else r["method"]
        lines.append(f"| {method} | {r['accuracy']:.3f} | {r['f1_macro']:.3f} | {raw} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default=TrainConfig.base_model, help="the model prompted few-shot")
    parser.add_argument("--dataset", default=TrainConfig.dataset)
    parser.add_argument("--test-size", default="1000", help="test tweets (0 or 'all' = the whole split)")
    parser.add_argument("--seed", type=int, default=42, help="the seed that picks the subset and the examples")
    parser.add_argument("--k", type=int, nargs="*", default=[0, 4, 8, 16], help="few-shot sizes (0 = zero-shot)")
    parser.add_argument("--runs", nargs="*", default=[], help="fine-tuned run folders to evaluate")
    parser.add_argument("--runs-dir", default="runs", help="where the few-shot results are cached (_cache)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    try:
        cfg = TrainConfig(base_model=args.base_model, dataset=args.dataset, test_size=args.test_size, train_size=0,
                          seed=args.seed, runs_dir=args.runs_dir).validate()
        rows = compare(cfg, args.k, args.runs, on_row=lambda r: print(
            f"[{r['seconds']:.0f}s] {r['method']}: accuracy {r['accuracy']:.3f}", file=sys.stderr, flush=True))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
