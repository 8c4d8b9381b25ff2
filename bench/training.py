"""Training throughput: tweets per second through forward, backward and optimizer step.

    python -m bench.training ours|plain|recipe [--model M] [--device cpu|cuda] [--steps N] [--set knob=value]

ours   the engine's own path (`python -m finetune`'s): TrainConfig defaults → finetune.train.model_to_train,
       training_arguments, length-grouped batches padded per batch (`--set` changes a knob, to weigh a lever)
plain  a plain `Trainer`: fp32, dynamic padding, batch 16, random batches, every other argument default
recipe the tutorial: every tweet padded to 1024 tokens, batch 1, fp32

All three train on the same real tweets; the first `--warmup` steps are not timed (their seconds are
reported as `warmup_s`, and every step's as `step_seconds`: the warm-up is over when they level off;
`finetune.budget.StepTimer`, which also sizes a time-budgeted run). Tweets per second
are real (unpadded) tokens per second over the data's mean tokens per tweet, so that a few timed steps
of long or short tweets count like an epoch's (the recipe's: tweets per second as they come, since it
pads every tweet to the same length). FLOPs count 6 × (non-embedding parameters) per real
token, the usual estimate for a forward+backward pass.
"""
from __future__ import annotations

import argparse
import tempfile

import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator

from finetune import budget, data, train
from finetune.budget import StepTimer
from finetune.config import TrainConfig
from core.model import load_classifier, load_tokenizer, resolve_precision, set_threads

from . import default_dataset, default_model, emit, peak_rss_mb

RECIPE_LENGTH = 1024
PLAIN_BATCH = 16
TRAIN_TWEETS = 4000  # about what a 2-minute budget trains on with AMX; every case draws its batches from them
# (length grouping needs a pool: the Trainer sorts within "megabatches" of pool // 4, so 1,000 tweets padded 28%)


def flops_per_token(model) -> float:
    """Multiply-adds × 2 per token, outside embedding tables (a lookup costs none): 6 × a trained parameter
    (forward, and the gradients of its input and of itself), 2 × a frozen one (forward only: the frozen
    blocks lie below every trained one, so no gradient flows through them)."""
    embedding = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum((6.0 if p.requires_grad else 2.0) * p.numel() for p in model.parameters() if id(p) not in embedding)


def measure(case: str, model_path: str, dataset: str, device: str, steps: int, warmup: int,
            overrides: dict | None = None) -> dict:
    cfg = TrainConfig.from_dict({"base_model": model_path, "dataset": dataset, "train_size": TRAIN_TWEETS,
                                 "test_size": 10, "validation_share": 0.0, **(overrides or {})}).validate()
    # batch and learning rate left to the planner (0): the batch it measures first, which leaves a one-click
    # run on a CPU like this one its MIN_STEPS steps, and that batch's rate
    cfg = budget.recipe(cfg, budget.PROBE_BATCH * budget.MIN_STEPS)
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    tokenizer = load_tokenizer(cfg.base_model)
    splits, _ = data.prepare(cfg)
    out = tempfile.mkdtemp(prefix="bench-train-")
    common = dict(max_steps=warmup + steps, save_strategy="no", eval_strategy="no", logging_strategy="no",
                  report_to="none", disable_tqdm=True, use_cpu=not cuda, seed=cfg.seed)
    if case == "ours":
        set_threads(cfg.threads)
        model = train.model_to_train(cfg, tokenizer)
        tokenized = data.tokenize(splits, tokenizer, cfg.max_length)["train"]
        args = train.training_arguments(cfg, out, len(tokenized), has_validation=False)
        args.max_steps, args.logging_strategy = warmup + steps, "no"
        collator, precision, batch = DataCollatorWithPadding(tokenizer), resolve_precision(cfg.precision), cfg.batch_size
    else:
        torch.manual_seed(cfg.seed)
        model = load_classifier(cfg.base_model, tokenizer, fast_kernels=False)  # transformers' own kernels
        if case == "plain":
            tokenized = splits["train"].map(lambda b: tokenizer(b["text"], truncation=True), batched=True,
                                            remove_columns=["text"])
            batch, collator = PLAIN_BATCH, DataCollatorWithPadding(tokenizer)
        elif case == "recipe":  # 1024, or the model's own limit if shorter
            length = min(RECIPE_LENGTH, getattr(model.config, "max_position_embeddings", None) or RECIPE_LENGTH)
            tokenized = splits["train"].map(
                lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=length),
                batched=True, remove_columns=["text"])
            batch, collator = 1, default_data_collator
        else:
            raise SystemExit(f"unknown case {case!r}: ours, plain or recipe")
        args = TrainingArguments(out, per_device_train_batch_size=batch, learning_rate=cfg.learning_rate, **common)
        precision = "fp32"
    lengths = tokenizer(list(splits["train"]["text"]), truncation=True, max_length=cfg.max_length)["input_ids"]
    mean_tokens = sum(map(len, lengths)) / len(lengths)
    timer = StepTimer(model, warmup, device)
    trainer = Trainer(model=model, args=args, train_dataset=tokenized, data_collator=collator, callbacks=[timer])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    result = {"case": case, "precision": precision, "batch_size": batch, "steps": steps,
              "threads": torch.get_num_threads(), "optimizer": getattr(args.optim, "value", str(args.optim)), "device": device,
              "gflop_per_token": round(flops_per_token(model) / 1e9, 4), **timer.figures(mean_tokens)}
    if case == "recipe":  # every tweet is padded to the same length: its own length costs nothing, and
        result["tweets_per_s"] = result["raw_tweets_per_s"]  # two timed tweets' token counts are noise
    result["gflops"] = round(result["tokens_per_s"] * result["gflop_per_token"], 1)
    result["peak_rss_mb"] = peak_rss_mb()
    if cuda:
        result["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=["ours", "plain", "recipe"])
    p.add_argument("--model", default=default_model())
    p.add_argument("--dataset", default=default_dataset())
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="a TrainConfig knob for `ours` (e.g. batch_size=32, precision=bf16, lora=true)")
    args = p.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    emit(measure(args.case, args.model, args.dataset, args.device, args.steps, args.warmup, overrides))


if __name__ == "__main__":
    main()
