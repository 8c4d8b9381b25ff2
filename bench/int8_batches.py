"""python -m bench.int8_batches RUN [--tweets 1000] [--sizes 1 4 8 16 32 64]

ONNX Runtime's dynamic int8 scales each operator's activations per call: the more tweets share a call, the
coarser each one's scale. For each number of tweets per forward pass: the int8 model's tweets per second on
the test tweets in one call, and how many of its labels equal eager fp32's (and its largest log-odds move),
beside fp32 itself. What the serving policy's batch path is tuned by (`inference.policy`).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from core.model import load_classifier, load_tokenizer, predict_proba, set_threads, trained_max_length
from inference.checked import log_odds
from inference.onnx_backend import onnx_model

from . import default_dataset
from .serving import test_tweets


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.int8_batches", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--dataset", default=default_dataset())
    p.add_argument("--tweets", type=int, default=1000)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64])
    args = p.parse_args(argv)
    threads = set_threads(0)
    tweets = test_tweets(args.dataset, args.tweets)
    tokenizer = load_tokenizer(args.run)
    length = trained_max_length(tokenizer)
    fp32 = load_classifier(args.run, tokenizer).eval()
    int8 = onnx_model(args.run, "onnx-int8", threads=threads)

    def run(model, size):
        predict_proba(model, tokenizer, tweets[:64], length, size)  # warm-up
        start = time.perf_counter()
        probs = predict_proba(model, tokenizer, tweets, length, size)
        return probs, len(tweets) / (time.perf_counter() - start)

    import torch
    with torch.inference_mode():
        reference, rate = run(fp32, 64)
    print(f"{'tweets per call':>16} {'fp32 tweets/s':>14} {'int8 tweets/s':>14} {'labels = fp32':>14} {'max move':>9}")
    print(f"{'(fp32, 64)':>16} {rate:>14.1f}")
    for size in args.sizes:
        probs, rate = run(int8, size)
        same = (probs.argmax(1) == reference.argmax(1)).mean()
        move = np.abs(log_odds(probs) - log_odds(reference)).max()
        print(f"{size:>16} {'':>14} {rate:>14.1f} {same:>14.1%} {move:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
