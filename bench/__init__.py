"""`python -m bench`: how fast training and classification run on this machine, against baselines
measured in the same run (see `python -m bench --help` and the README's "Speed" section).

Each measurement runs in its own subprocess (`python -m bench.training ...`, `python -m bench.serving
...`), so that peak memory is that measurement's alone and no case warms the caches of another.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "tweet_sentiment_extraction"
OFFLINE_MODELS = Path(os.environ.get("OFFLINE_MODELS", "~/.cache/offline-models")).expanduser()


def default_model() -> str:
    """gpt2-random (gpt2's exact architecture, random weights) when built, else the Hub's gpt2."""
    local = OFFLINE_MODELS / "gpt2-random"
    return str(local) if (local / "config.json").exists() else "gpt2"


STAND_IN = OFFLINE_MODELS / "smollm2-135m"  # a real pretrained LM: the stand-in for gpt2 where labels matter
BENCH_RUNS = Path("~/.cache/tweet-sentiment/bench-runs").expanduser()


def finetuned_run() -> str | None:
    """A run of the stand-in fine-tuned with the one-click defaults on ../shared's tweets: what users serve,
    trained once (about four minutes on 2 cores) and kept in BENCH_RUNS. None without the stand-in or data."""
    from core.runs import latest

    if not (STAND_IN / "config.json").exists() or not (SHARED_DATA / "train.jsonl").exists():
        return None
    if (run := latest(BENCH_RUNS)) is None:
        print(f"training the stand-in once for the serving bench, into {BENCH_RUNS}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "finetune", "--base-model", str(STAND_IN), "--dataset",
                        str(SHARED_DATA), "--runs-dir", str(BENCH_RUNS), "--hub-model-id", ""], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        run = latest(BENCH_RUNS)
    return str(run.path) if run else None


def default_serving_model() -> str:
    """What the serving benches measure: a fine-tuned run where one can be made, else `default_model()`."""
    return finetuned_run() or default_model()


def default_dataset() -> str:
    return str(SHARED_DATA) if (SHARED_DATA / "train.jsonl").exists() else "mteb/tweet_sentiment_extraction"


def peak_rss_mb(children: bool = False) -> float:
    """This process's peak resident memory so far, or (children) its largest finished child's (Linux reports
    KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def current_rss_mb() -> float:
    import psutil
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def emit(result: dict) -> None:
    """A worker's answer: one JSON line on stdout, last."""
    print("BENCH-RESULT " + json.dumps(result), flush=True)


def run_worker(module: str, args: list[str], timeout: float = 1800) -> dict:
    """Run `python -m bench.<module> args...` in a fresh process and return its result dict."""
    cmd = [sys.executable, "-m", f"bench.{module}", *map(str, args)]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line.removeprefix("BENCH-RESULT "))
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    raise RuntimeError(f"{' '.join(cmd[1:])} failed (exit {proc.returncode}):\n{tail}")
