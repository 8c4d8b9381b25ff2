"""Classification speed and memory: ours (`inference.Classifier`) against `transformers.pipeline`.

    python -m bench.serving ours|pipeline [--model M] [--precision P] [--latency-tweets N] [--batch-tweets N]

ours      Classifier.load(model) with its defaults (or --precision): length-sorted batches padded per
          batch, no autograd, the serving default (`auto`: bf16 on AMX, ONNX Runtime fp32 without) or any of
          inference.policy.PRECISIONS; then agreement of its predictions with eager fp32's on test tweets
          (--agreement-model: a fine-tuned run to check it on instead)
pipeline  transformers.pipeline("text-classification") on the same fp32 model, its defaults (batch 1)

Latency: the median over single tweets, one call each. Throughput: one call with the whole batch.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from finetune import data
from finetune.config import TrainConfig
from core.model import load_classifier, load_tokenizer, torch_dtype
from inference.classifier import Classifier
from inference.policy import PRECISIONS

from . import current_rss_mb, default_dataset, default_serving_model, emit, peak_rss_mb

WARMUP = 5


def test_tweets(dataset: str, n: int) -> list[str]:
    """Real, cleaned test tweets (the same ones every run)."""
    cfg = TrainConfig(dataset=dataset, train_size=10, test_size=n, validation_share=0.0)
    splits, _ = data.prepare(cfg)
    return list(splits["test"]["text"])


def timed(fn, tweets: list[str], latency_tweets: int, batch_tweets: int) -> dict:
    """Median seconds for one tweet per call, and tweets per second for one call with a batch."""
    for text in tweets[:WARMUP]:
        fn(text)
    times = []
    for text in tweets[WARMUP:WARMUP + latency_tweets]:
        start = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - start)
    batch = tweets[:batch_tweets]
    start = time.perf_counter()
    fn(batch)
    seconds = time.perf_counter() - start
    return {"latency_ms": round(1000 * statistics.median(times), 2), "latency_tweets": len(times),
            "batch_tweets": len(batch), "batch_seconds": round(seconds, 3),
            "batch_tweets_per_s": round(len(batch) / seconds, 1)}


def load_ours(source: str, precision: str | None, device: str) -> Classifier:
    """The app's classifier (precision None: its default); on a GPU, bf16 unless told otherwise
    (int8 dynamic quantisation is CPU-only)."""
    if device == "cuda":  # loaded in fp32 and then cast, so that a new head starts as in the reference
        clf = Classifier.load(source, precision="fp32")
        clf.precision = precision or "bf16"
        clf.model.to("cuda", dtype=torch_dtype(clf.precision))
        return clf
    return Classifier.load(source) if precision is None else Classifier.load(source, precision=precision)


def labels_of(clf: Classifier, tweets: list[str], one_by_one: bool = False) -> np.ndarray:
    """Labels of one call with every tweet, or of one call per tweet (a path of its own under
    onnx-int8-checked)."""
    if one_by_one:
        return np.array([clf.predict_proba([t])[0].argmax() for t in tweets])
    return clf.predict_proba(tweets).argmax(axis=-1)


def measure(case: str, model_path: str, dataset: str, device: str, precision: str | None, latency_tweets: int,
            batch_tweets: int, agreement_tweets: int, agreement_model: str | None) -> dict:
    tweets = test_tweets(dataset, max(batch_tweets, agreement_tweets, WARMUP + latency_tweets))
    rss_before = current_rss_mb()  # the interpreter with torch and transformers imported
    torch.manual_seed(0)           # the same new head (if the model has none yet) in every load
    if case == "ours":
        start = time.perf_counter()
        clf = load_ours(model_path, precision, device)
        clf.classify(tweets[0])
        first_answer_s = time.perf_counter() - start
        clf.ready.wait()  # auto: timed as it serves once its formats are measured and chosen (exports, gates)
        result = {"case": case, "precision": clf.precision, "serving": clf.serving(),
                  "first_answer_s": round(first_answer_s, 2), "ready_s": round(time.perf_counter() - start, 2),
                  "threads": torch.get_num_threads(), **timed(clf.classify, tweets, latency_tweets, batch_tweets)}
    elif case == "pipeline":
        from transformers import pipeline
        tokenizer = load_tokenizer(model_path)
        model = load_classifier(model_path, tokenizer, fast_kernels=False)  # transformers' own kernels
        pipe = pipeline("text-classification", model=model, tokenizer=tokenizer,
                        device=0 if device == "cuda" else -1)
        result = {"case": case, "precision": "fp32", "threads": torch.get_num_threads(),
                  **timed(pipe, tweets, latency_tweets, batch_tweets)}
    else:
        raise SystemExit(f"unknown case {case!r}: ours or pipeline")
    result.update(rss_before_load_mb=rss_before, peak_rss_mb=peak_rss_mb(),
                  serve_extra_mb=round(peak_rss_mb() - rss_before, 1),
                  export_child_peak_mb=peak_rss_mb(children=True))  # an ONNX export runs in a child process
    if case == "ours" and agreement_tweets:  # after the memory figures: the fp32 reference must not count as serving memory
        source = agreement_model or model_path
        sample = tweets[:agreement_tweets]
        torch.manual_seed(0)
        ours = clf if source == model_path else load_ours(source, precision, device)
        ours.ready.wait()
        torch.manual_seed(0)
        reference = load_ours(source, "fp32", device)
        fp32 = labels_of(reference, sample)
        batch, single = (labels_of(ours, sample, one_by_one) == fp32 for one_by_one in (False, True))
        # the worse of the two paths a tweet can take: in one call with others, or alone
        for path, check in (ours.route.checks if ours.route else {}).items():  # the lossy formats' checks
            result[f"rechecked_share_{path}"] = round(check.rechecked / max(check.answered, 1), 4)
        result.update(agreement=round(float(min(batch.mean(), single.mean())), 4),
                      agreement_batch=round(float(batch.mean()), 4), agreement_one_by_one=round(float(single.mean()), 4),
                      agreement_tweets=len(sample), agreement_model=source)
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=["ours", "pipeline"])
    p.add_argument("--model", default=None, help="a model or run folder (default: a fine-tuned run of the "
                   "stand-in, trained once and cached, see bench.finetuned_run; else gpt2-random)")
    p.add_argument("--dataset", default=default_dataset())
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="ours: the number format and runtime (default: Classifier.load's, auto; bf16 on a GPU)")
    p.add_argument("--latency-tweets", type=int, default=50)
    p.add_argument("--batch-tweets", type=int, default=1000)
    p.add_argument("--agreement-tweets", type=int, default=1000)
    p.add_argument("--agreement-model", default=None, help="a fine-tuned run folder to check agreement on")
    args = p.parse_args(argv)
    emit(measure(args.case, args.model or default_serving_model(), args.dataset, args.device, args.precision, args.latency_tweets,
                 args.batch_tweets, args.agreement_tweets, args.agreement_model))


if __name__ == "__main__":
    main()
