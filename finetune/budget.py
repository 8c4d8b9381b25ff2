"""A time budget instead of a fixed size: how many tweets fit in `time_budget_s` of training here.

    cfg, planned = plan(cfg, speed_of, cleaned.max_train(cfg))  # speed_of(cfg): kept (`last`), else `measure`d
    # cfg now has the recipe (batch size, learning rate) and the train size, saved in train_config.json

The budget applies when `train_size` is 0 and `time_budget_s` above 0 (`applies`); an explicit
`train_size` wins. The plan's train size is written into the run's train_config.json, so a run
resumed from it repeats the same plan (same size, same steps, same schedule) instead of measuring
again. The budget covers training with its validation passes (what metrics.json's `train_seconds`
counts); the test, the baseline and the save come after it. It never adds epochs: when every tweet
fits with time to spare, the run trains on all of them and finishes early.

The last measurement per base model, precision, device and speed knobs (`setting`) is kept in
`<runs_dir>/_cache/throughput.json`. The Train tab says from it before the click roughly how many tweets
fit (`hint`), and a later run with the same knobs plans from it instead of measuring again (about 25 s
on 2 cores). Each budgeted run then corrects it by its own training time (`observed`), so a measurement
that was off does not stay off.
"""
from __future__ import annotations

import dataclasses
import gc
import itertools
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch
from datasets import Dataset, DatasetDict
from transformers import Trainer, TrainerCallback

import core.model
from core.runs import read_dict, write_json

from . import data
from .config import HALF, TrainConfig
from .events import duration

# the recipe (`recipe`): the batch size that leaves a plan at least MIN_STEPS optimizer steps, and its
# learning rate (measured on smollm2-135m: README "One click")
BATCH_SIZES = (8, 16, 32, 64)
MIN_STEPS = 80
LEARNING_RATES = {8: 5e-4, 16: 5e-4, 32: 5e-4, 64: 3e-4}
CONTINUED_LR = 0.5
PROBE_BATCH = 16      # the batch size the speed is measured at first, when the recipe is left to the plan
WARMUP_STEPS = 2      # not timed: the first steps allocate the optimizer state and compile kernels
TIMED_STEPS = 4       # timed; with length grouping they hold shorter tweets than average (see StepTimer)
MEAN_TOKENS_SAMPLE = 2000  # tweets whose mean token count converts tokens/s into tweets/s
EVAL_SPEEDUP = 3.0    # a validation tweet costs about a third of a training tweet (forward only)
SAVE_S = 2.0          # per validation pass: its checkpoint saved (and the best one loaded at the end)
CACHE = Path("_cache") / "throughput.json"


class StepTimer(TrainerCallback):
    """Times steps warmup+1 .. max_steps, counts the real tokens they saw (from a forward hook) and how
    long the warm-up steps took (from the start of training to the first timed step)."""

    def __init__(self, model, warmup: int, device: str = "cpu"):
        self.warmup, self.device = warmup, device
        self.batches: list[tuple[int, int, int]] = []  # (tweets, real tokens, padded tokens) per forward
        self.begun = self.start = self.end = None
        self.first = self.last = self.timed_steps = 0
        self.step_seconds: list[float] = []  # every step's, warm-up included
        self._step_began = None
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids")
        if mask is not None:
            self.batches.append((mask.shape[0], int(mask.sum()), mask.numel()))
        elif ids is not None:
            self.batches.append((ids.shape[0], ids.numel(), ids.numel()))

    def _now(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.begun = self._now()

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_began = self._now()
        if state.global_step == self.warmup:
            self.start, self.first = self._step_began, len(self.batches)

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds.append(round(self._now() - self._step_began, 4))
        self.timed_steps += self.start is not None
        if state.global_step == state.max_steps:
            self.end, self.last = self._now(), len(self.batches)

    def figures(self, mean_tokens: float) -> dict:
        """`tweets_per_s` counts tweets of the data's mean length: length-grouped steps come longest
        first, so the few timed steps hold other lengths than an epoch does (`raw_tweets_per_s`).
        `warmup_s`: the untimed first steps, from the start of training."""
        seen = self.batches[self.first:self.last]
        seconds = self.end - self.start
        tweets, real, padded = (sum(b[i] for b in seen) for i in range(3))
        warmup_s = self.start - self.begun
        return {"seconds": round(seconds, 3), "tweets": tweets, "real_tokens": real,
                "padding_share": round(1 - real / padded, 3), "tokens_per_s": round(real / seconds, 1),
                "tweets_per_s": round(real / seconds / mean_tokens, 3),
                "raw_tweets_per_s": round(tweets / seconds, 3), "mean_tokens_per_tweet": round(mean_tokens, 2),
                "timed_steps": self.timed_steps, "step_s": round(seconds / max(self.timed_steps, 1), 4),
                "warmup_steps": self.warmup, "warmup_s": round(warmup_s, 3), "step_seconds": self.step_seconds}


@dataclass
class Throughput:
    """One measurement of training speed on this machine."""
    tweets_per_s: float     # training tweets (of the data's mean length) per second, past the warm-up
    warmup_s: float         # the first WARMUP_STEPS steps
    step_s: float           # one timed step
    base_model: str
    precision: str
    device: str             # the CPU's name and threads, or the GPU's name
    amx: bool
    measured_at: float
    setting: str = ""       # the other knobs the rate depends on (`setting`)
    source: str = "measured"  # or "corrected by run <id>": a run's own time refined it (`observed`)

    @property
    def key(self) -> str:
        return cache_key(self.base_model, self.precision, self.device, self.setting)

    @property
    def first_steps_s(self) -> float:
        """What the first steps cost beyond their share of the rate: a run pays it again (fresh model
        and optimizer state). Measured, smollm2-135m bf16 on
        2 cores without AMX: 14.7 s, then 13 s more in the run's first step."""
        return max(0.0, self.warmup_s - WARMUP_STEPS * self.step_s)

    def machine(self) -> str:
        return f"{self.precision} on {self.device}" + (" with AMX" if self.amx else "")


@dataclass
class Plan:
    """What a budget resolved to; recorded in metrics.json ('budget') and the run's history."""
    time_budget_s: float
    train_size: int
    steps: int
    planned_s: float        # training and validation as planned: the budget, or less when every tweet fits
    every_tweet: bool       # the whole train split fits: the run finishes before the budget
    speed: Throughput
    fixed_s: float = 0.0    # of planned_s, what does not grow with the tweets: saves, the slow first steps
    batch_size: int = 0     # the recipe the plan chose for its steps (`recipe`)
    learning_rate: float = 0.0
    tail_s: float = 0.0     # of planned_s, the last validation pass and its save (the guard keeps time for it)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        fill = (f"every tweet ({self.train_size:,}) fits in {duration(self.planned_s)}" if self.every_tweet
                else f"{self.train_size:,} tweets fill it")
        when = datetime.fromtimestamp(self.speed.measured_at).strftime("%Y-%m-%d %H:%M")
        return (f"time budget {duration(self.time_budget_s)}: {self.speed.tweets_per_s:.1f} tweets/s "
                f"({self.speed.machine()}; {self.speed.source} {when}; the first steps "
                f"{self.speed.first_steps_s:.1f}s more), so {fill}: {self.steps} steps of "
                f"{self.batch_size} at learning rate {self.learning_rate:g}")


def choose_batch(tweets: int) -> int:
    """The largest of BATCH_SIZES that still gives `tweets` MIN_STEPS optimizer steps (the smallest when
    none does): a fast machine takes larger batches, which run more tweets a second; a slow one smaller
    ones, so that its few tweets still make enough steps to learn from."""
    fits = [b for b in BATCH_SIZES if tweets / b >= MIN_STEPS]
    return max(fits) if fits else min(BATCH_SIZES)


def recipe(cfg: TrainConfig, tweets: int, continued: bool = False) -> TrainConfig:
    """cfg with the batch size and learning rate that the rule gives `tweets` training tweets, where they
    are left to it (0); what is set stays. A continued run (finetune.lineage) starts from trained weights:
    CONTINUED_LR times the rate."""
    batch = cfg.batch_size or choose_batch(tweets)
    rate = cfg.learning_rate or LEARNING_RATES[batch] * (CONTINUED_LR if continued else 1.0)
    return dataclasses.replace(cfg, batch_size=batch, learning_rate=rate)


def plan(cfg: TrainConfig, speed_of: Callable[[TrainConfig], "Throughput | None"], max_train: int, extra: int = 0,
         world_size: int = 1, continued: bool = False) -> tuple[TrainConfig, "Plan | None"]:
    """(cfg with its recipe and train size, the plan) for cfg's budget. A batch size left to the plan (0)
    comes from the speed at PROBE_BATCH (`choose_batch`), then that batch's own speed sizes the run.
    `speed_of(cfg)`: this machine's speed for cfg's knobs (None: not known, and the plan is None)."""
    probe = cfg if cfg.batch_size else dataclasses.replace(cfg, batch_size=PROBE_BATCH)
    speed = speed_of(probe)
    if speed is not None and not cfg.batch_size:
        tweets = make_plan(probe, speed, max_train, extra, world_size).train_size + extra
        if choose_batch(tweets) != probe.batch_size:
            probe = dataclasses.replace(cfg, batch_size=choose_batch(tweets))
            speed = speed_of(probe)
    cfg = recipe(probe, 0, continued)
    if speed is None:
        return cfg, None
    planned = make_plan(cfg, speed, max_train, extra, world_size)
    return dataclasses.replace(cfg, train_size=planned.train_size), planned


def applies(cfg: TrainConfig) -> bool:
    """Does the budget choose the train size? Only when no size is set (an explicit train_size wins)."""
    return cfg.train_size == 0 and cfg.time_budget_s > 0


def schedule_steps(cfg: TrainConfig, n_train: int, world_size: int = 1) -> tuple[int, int]:
    """(steps per epoch, total optimizer steps) for `n_train` tweets: what the Trainer builds its
    learning-rate schedule for, and what a plan promises."""
    per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * cfg.grad_accum * world_size)))
    return per_epoch, max(1, math.ceil(per_epoch * cfg.epochs))


def validation_passes(cfg: TrainConfig) -> int:
    return max(1, math.ceil(cfg.evals_per_epoch * cfg.epochs)) if cfg.validation_share > 0 else 0


def make_plan(cfg: TrainConfig, speed: Throughput, max_train: int, extra: int = 0, world_size: int = 1) -> Plan:
    """The train size that fills cfg.time_budget_s at `speed`: every tweet costs its epochs of training
    and its share of the validation passes; each pass also saves a checkpoint, and the first steps cost
    what they cost in the measurement (`first_steps_s`). `extra` rows (people's corrections) join the
    training rows after the split, so they count against the budget too."""
    passes = validation_passes(cfg)
    per_tweet = (cfg.epochs + passes * cfg.validation_share / EVAL_SPEEDUP) / speed.tweets_per_s
    fixed = passes * SAVE_S + speed.first_steps_s
    fits = int((cfg.time_budget_s - fixed) / per_tweet) - extra
    train_size = max(cfg.batch_size * cfg.grad_accum * world_size, min(fits, max_train))
    steps = schedule_steps(cfg, train_size + extra, world_size)[1]
    planned = min(cfg.time_budget_s, (train_size + extra) * per_tweet + fixed)
    tail = (train_size * cfg.validation_share / EVAL_SPEEDUP / speed.tweets_per_s + SAVE_S) if passes else 0.0
    return Plan(cfg.time_budget_s, train_size, steps, round(planned, 1), fits >= max_train, speed, round(fixed, 1),
                cfg.batch_size, cfg.learning_rate, round(tail, 1))


def observed(plan: Plan, train_seconds: float, run_id: str, done: float = 1.0) -> Throughput:
    """The plan's speed as the run's own training time shows it: the rate that would have filled the
    plan's time exactly (within 4x of the plan's, whatever happened); `done`: the share of the planned
    steps it trained (a run the budget's guard stopped). The next plan on this machine starts from it,
    so a measurement taken on a busy moment does not stay."""
    rate = done * (plan.planned_s - plan.fixed_s) / max(train_seconds - plan.fixed_s, 1e-3)
    factor = min(4.0, max(0.25, rate))
    return dataclasses.replace(plan.speed, tweets_per_s=round(plan.speed.tweets_per_s * factor, 3),
                               measured_at=round(time.time(), 1), source=f"corrected by run {run_id}")


def measure(cfg: TrainConfig, tokenizer, rows: list[tuple[str, int]], precision: str,
            trainer_for: Callable[[TrainConfig, DatasetDict, Path], Trainer], num_processes: int = 1) -> Throughput:
    """Train a throwaway copy of the run's model a few steps on the run's own tweets, batch size and
    precision (`trainer_for(trial_cfg, tokenized, output_dir)`: the run's own Trainer, `finetune.train`'s);
    time the steps after the warm-up. Tokens per second over the data's mean tokens per tweet gives tweets
    per second (the timed batches are not of average length). The sample's batches are of one length each,
    as a run's length-grouped batches nearly are (a run's pool is large enough for its sampler to find
    tweets of one length; a few batches' worth is not)."""
    per_step = cfg.batch_size * cfg.grad_accum * num_processes
    sample = list(itertools.islice(itertools.cycle(rows), per_step * (WARMUP_STEPS + TIMED_STEPS)))  # few: again
    trial = dataclasses.replace(cfg, epochs=1.0, early_stopping_patience=0, learning_rate=cfg.learning_rate or 1e-4)
    tokenized = _tokenize(sample, tokenizer, cfg.max_length)
    by_length = sorted(range(len(sample)), key=tokenized["train"]["length"].__getitem__, reverse=True)
    tokenized["train"] = tokenized["train"].select(by_length)  # in order: batches of one length, longest first
    lengths = tokenizer([t for t, _ in rows[:MEAN_TOKENS_SAMPLE]], truncation=True,
                        max_length=cfg.max_length)["input_ids"]
    with tempfile.TemporaryDirectory(prefix="budget-") as out:
        trainer = trainer_for(trial, tokenized, Path(out))
        timer = StepTimer(trainer.model, WARMUP_STEPS, "cuda" if torch.cuda.is_available() else "cpu")
        trainer.add_callback(timer)
        trainer.args.train_sampling_strategy = "sequential"
        trainer.train()
    figures = timer.figures(sum(map(len, lengths)) / len(lengths))
    del trainer
    gc.collect()
    return Throughput(tweets_per_s=figures["tweets_per_s"] * num_processes, warmup_s=figures["warmup_s"],
                      step_s=figures["step_s"], base_model=cfg.base_model,
                      precision=precision, device=device_name(), amx=core.model.cpu_has_amx(),
                      measured_at=round(time.time(), 1), setting=setting(cfg, num_processes))


def _tokenize(rows, tokenizer, max_length: int) -> DatasetDict:
    splits = DatasetDict(train=Dataset.from_dict({"text": [t for t, _ in rows], "label": [l for _, l in rows]}),
                         validation=Dataset.from_dict({"text": [], "label": []}))
    return data.tokenize(splits, tokenizer, max_length)


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{core.model.cpu_name()}, {torch.get_num_threads()} threads"


def setting(cfg: TrainConfig, num_processes: int = 1) -> str:
    """The knobs besides the model, precision and device that a step's speed depends on."""
    return (f"batch {cfg.batch_size}x{cfg.grad_accum}x{num_processes}, max_length {cfg.max_length}, "
            f"frozen {'embeddings+' if cfg.freeze_embeddings else ''}"
            f"{'half the' if cfg.freeze_layers == HALF else cfg.freeze_layers} blocks, "
            f"lora {'r=%d' % cfg.lora_r if cfg.lora else 'off'}, group_by_length {cfg.group_by_length}")


def cache_key(base_model: str, precision: str, device: str, knobs: str = "") -> str:
    return f"{base_model} | {precision} | {device} | {knobs}"


def record(runs_dir: str | Path, speed: Throughput) -> None:
    """Keep `speed` as the last measurement for its model, precision and device."""
    path = Path(runs_dir) / CACHE
    known = read_dict(path)
    known[speed.key] = dataclasses.asdict(speed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, known)


def last(cfg: TrainConfig, precision: str, num_processes: int = 1) -> Throughput | None:
    """The last measurement (or a run's correction of it) for cfg's model, precision and speed knobs on
    this device, in cfg.runs_dir, or None."""
    key = cache_key(cfg.base_model, precision, device_name(), setting(cfg, num_processes))
    found = read_dict(Path(cfg.runs_dir) / CACHE).get(key)
    try:
        return Throughput(**found) if found else None
    except TypeError:  # written by another version: measured again on the next run
        return None


def hint(cfg: TrainConfig) -> str:
    """What the next run with `cfg` will train on, as the Train tab says it before the click."""
    if cfg.train_size:
        return f"Trains on {cfg.train_size:,} tweets (train size is set, so no time budget applies)."
    if not cfg.time_budget_s:
        return "Trains on every tweet of the train split (no time budget)."
    budget = duration(cfg.time_budget_s)
    precision = core.model.resolve_precision(cfg.precision)
    chosen, planned = plan(cfg, lambda c: last(c, precision), max_train=10**9)
    if planned is None:
        return (f"Time budget {budget}: the first run measures this machine's training speed on a few steps, "
                f"then trains on as many tweets as fit.")
    speed = planned.speed
    when = datetime.fromtimestamp(speed.measured_at).strftime("%Y-%m-%d %H:%M")
    return (f"≈ {planned.train_size:,} tweets in {budget} on this machine, batch {chosen.batch_size} at "
            f"learning rate {chosen.learning_rate:g} ({speed.tweets_per_s:.1f} tweets/s {speed.source} {when}, "
            f"{speed.machine()}); at most every tweet of the train split.")
