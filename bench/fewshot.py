"""The few-shot baseline's speed: prompts packed so that the shared examples are computed once per pack
(ours) against one padded prompt per tweet (the reference), same model, tweets and examples, in one run.

    python -m bench.fewshot [--model M] [--dataset D] [--k 4 16] [--tweets 200]

Prints one JSON line per k: seconds each way, the speed-up, the largest difference in probability and
the share of equal labels (both must be the same maths).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from finetune import data
from core.fewshot import FewShotClassifier, pick_examples
from finetune.config import TrainConfig

from . import OFFLINE_MODELS, default_dataset


def measure(model: str, dataset: str, k: int, n: int) -> dict:
    cfg = TrainConfig(dataset=dataset, train_size=2000, test_size=n, validation_share=0.0)
    splits, _ = data.prepare(cfg)
    clf = FewShotClassifier.load(model, pick_examples(data.split_rows(splits["train"]), k))
    tweets = list(splits["test"]["text"])
    clf.predict_proba(tweets[:8]), clf.predict_proba(tweets[:8], pack=False)  # warm-up
    started = time.perf_counter()
    padded = clf.predict_proba(tweets, pack=False)
    padded_s = time.perf_counter() - started
    started = time.perf_counter()
    packed = clf.predict_proba(tweets)
    packed_s = time.perf_counter() - started
    return {"k": k, "tweets": len(tweets), "padded_s": round(padded_s, 4), "packed_s": round(packed_s, 4),
            "speedup": round(padded_s / packed_s, 2), "max_abs_diff": float(np.abs(packed - padded).max()),
            "same_label": float((packed.argmax(1) == padded.argmax(1)).mean())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fewshot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(OFFLINE_MODELS / "smollm2-135m"), help="a causal LM (default: %(default)s)")
    p.add_argument("--dataset", default=default_dataset())
    p.add_argument("--k", type=int, nargs="+", default=[4, 16], help="examples per prompt (default: 4 16)")
    p.add_argument("--tweets", type=int, default=200, help="test tweets to classify each way (default: 200)")
    args = p.parse_args(argv)
    for k in args.k:
        print(json.dumps(measure(args.model, args.dataset, k, args.tweets)), flush=True)


if __name__ == "__main__":
    main()
