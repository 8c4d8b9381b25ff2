"""Quality over clicks: what pressing Retrain again and again buys, against one run on the same tweets.

    python -m bench.clicks [--base-model M] [--dataset D] [--clicks 3] [--runs-dir DIR] [--one-go] [--json F]
                           [-- finetune options for every click, e.g. --learning-rate 7e-4]

Click 1 is `python -m finetune` with the defaults (a fresh run); each later click is `--from-run` the last
(what the app's Retrain does: the run that serves continues on tweets it has not seen). With --one-go, one
more run trains on as many tweets as the whole chain saw, from the base model, in one go. Each line: test
accuracy, the chain's tweets and training seconds so far, the command's wall time. Reuse --runs-dir to keep
the base model's "before" and the speed measurement cached (what a second use of the app sees).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.runs import latest, read_dict

from . import ROOT, STAND_IN, default_dataset


def click(base_model: str, dataset: str, runs_dir: Path, *extra: str) -> dict:
    """One `python -m finetune` command: its run's figures and its wall time."""
    command = [sys.executable, "-m", "finetune", "--base-model", base_model, "--dataset", dataset,
               "--runs-dir", str(runs_dir), "--hub-model-id", "", *extra]
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    run = latest(runs_dir)
    metrics, config = run.metrics, read_dict(run.path / "train_config.json")
    chain = metrics.get("lineage") or {}
    return {"run": run.id, "accuracy": metrics["test"]["accuracy"], "f1_macro": metrics["test"]["f1_macro"],
            "train_seconds": metrics["train_seconds"], "wall_s": round(wall, 1), "train_size": config["train_size"],
            "batch_size": config["batch_size"], "learning_rate": config["learning_rate"],
            "tweets_seen": chain.get("tweets_seen", config["train_size"]),
            "chain_train_seconds": chain.get("train_seconds", metrics["train_seconds"]),
            "parent": chain.get("parent"), "served": (metrics.get("promotion") or {}).get("promoted")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.clicks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-model", default=str(STAND_IN))
    p.add_argument("--dataset", default=default_dataset())
    p.add_argument("--clicks", type=int, default=3)
    p.add_argument("--runs-dir", type=Path, default=None, help="default: a new temporary folder")
    p.add_argument("--one-go", action="store_true", help="then one run on as many tweets, from the base model")
    p.add_argument("--json", metavar="FILE")
    args, extra = p.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="clicks-"))
    rows, parent = [], []
    for n in range(1, args.clicks + 1):
        row = {"click": n, **click(args.base_model, args.dataset, runs_dir, *extra, *parent)}
        rows.append(row)
        parent = ["--from-run", str(runs_dir / row["run"])]
        print(f"click {n}: accuracy {row['accuracy']:.3f}, {row['tweets_seen']:,} tweets and "
              f"{row['chain_train_seconds']:.0f} s of training so far (this click {row['train_seconds']:.0f} s, "
              f"batch {row['batch_size']}, lr {row['learning_rate']:g}), command {row['wall_s']:.0f} s", flush=True)
    if args.one_go:
        seen = rows[-1]["tweets_seen"]
        row = {"click": "one go", **click(args.base_model, args.dataset, runs_dir, *extra, "--train-size", str(seen),
                                          "--time-budget-s", "0")}
        rows.append(row)
        print(f"one go on {seen:,} tweets: accuracy {row['accuracy']:.3f} in {row['train_seconds']:.0f} s of "
              f"training (batch {row['batch_size']}, lr {row['learning_rate']:g}), command {row['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
