"""python -m bench.http [--model PATH] [--requests 200] [--json FILE]

One tweet at a time, one client, loopback: p50 latency of the model alone (inference.Classifier in this
process), of the JSON API (`POST /api/classify`) and of the chat path (`/classify` through gradio_client),
the last two against `python app.py` serving the same model in a fresh runs folder: --run (a run folder,
copied there), by default a fine-tuned run of the stand-in (bench.finetuned_run: its gate's checks depend on
real label margins), else a short run of --model (64 tweets) as `python -m finetune` writes one. Printed
side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import ROOT, default_dataset, default_model, finetuned_run
from inference import Classifier
from scripts.load_test import TWEETS, client


def p50_ms(call, n: int, warmup: int = 10) -> float:
    for i in range(warmup):
        call(TWEETS[i % len(TWEETS)])
    times = []
    for i in range(n):
        started = time.perf_counter()
        call(TWEETS[i % len(TWEETS)])
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def seed_run(model: str, dataset: str, runs_dir: str) -> str:
    """A complete run of `model` in `runs_dir` (64 tweets, 1 epoch): what the app serves."""
    subprocess.run([sys.executable, "-m", "finetune", "--base-model", model, "--dataset", dataset,
                    "--train-size", "64", "--test-size", "64", "--few-shot-k", "0", "--no-measure-forgetting",
                    "--runs-dir", runs_dir, "--quiet"], cwd=ROOT, check=True, capture_output=True)
    return next(str(p) for p in Path(runs_dir).iterdir() if (p / "metrics.json").exists())


def start_app(model: str, runs_dir: str, dataset: str = "", cwd: Path = ROOT) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RUNS_DIR": runs_dir, "HUB_MODEL_ID": "", "BASE_MODEL": model, "DATASET": dataset,
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "health", timeout=2).json()["model_prepared"]:  # int8 first, where auto has it
                return app, url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.3)
    app.kill()
    raise SystemExit("the app did not come up with a prepared model in 180 s")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model())
    p.add_argument("--dataset", default=default_dataset())
    p.add_argument("--run", default=None, help="a run folder to serve (default: bench.finetuned_run, else a short "
                   "run of --model)")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    runs_dir = tempfile.mkdtemp(prefix="bench-http-")
    run = args.run or finetuned_run()
    if run:
        shutil.copytree(run, Path(runs_dir) / Path(run).name, ignore=shutil.ignore_patterns("serving"))
        args.model = str(Path(runs_dir) / Path(run).name)
    model = Classifier.load(str(Path(runs_dir) / Path(run).name) if run else seed_run(args.model, args.dataset, runs_dir))
    model.ready.wait()  # as the app serves it once prepared (the exports are then cached for the app)
    alone = p50_ms(model.classify, args.requests)
    del model
    app, url = start_app(args.model, runs_dir)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            def post(text):
                assert http.post("api/classify", json={"text": text}).json()["label"]
            api = p50_ms(post, args.requests)
        chat = client(url)
        gradio = p50_ms(lambda t: chat.predict(t, api_name="/classify"), args.requests)
        chat.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    result = {"model": args.model, "requests": args.requests, "model_p50_ms": alone, "api_classify_p50_ms": api,
              "api_overhead_ms": round(api - alone, 1), "gradio_classify_p50_ms": gradio}
    print(f"{'one tweet, p50 (ms)':<34}{'model alone':>12}{'POST /api/classify':>20}{'gradio /classify':>18}")
    print(f"{os.path.basename(args.model):<34}{alone:>12}{api:>20}{gradio:>18}")
    print(f"JSON API overhead over the model: {api - alone:+.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
