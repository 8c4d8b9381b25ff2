"""Training: config → data → model → Trainer (+ progress, stop, early stopping) → a finished run folder.

    result = fine_tune(TrainConfig(...), on_event=print, stop=threading.Event())
    result = resume("runs/<id>.partial", on_event=print)     # an interrupted or stopped run, continued

`fine_tune` is a pipeline of named steps: prepare (settings, tokenizer, corrections, data, and with a
time budget the train size that fills it: `fill_budget`, finetune/budget.py), then, with a
`RunLog` that writes the run folder and passes events on, train, test, quality (fit diagnosis,
forgetting), baseline, save. `on_event` receives plain dicts (see `Progress`); `stop.set()` ends training
cleanly at the next step, writes a resumable checkpoint and leaves the run marked "stopped" — the last
complete run keeps serving. `resume` continues an interrupted or stopped run in its own folder, from its
newest resumable checkpoint (finetune/checkpoints.py), with its saved settings and data. The same function runs unchanged under `torchrun` / `accelerate launch` (the Trainer then trains
data-parallel; only the main process writes the run folder).
"""
from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from datasets import Dataset, DatasetDict
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback, Trainer,
                          TrainerCallback, TrainingArguments, set_seed)
from transformers.pytorch_utils import Conv1D

from core.errors import UserError, first_line
from core.labels import LABELS
from core.model import load_classifier, load_tokenizer, resolve_precision, set_threads
from core.runs import (CHECKPOINTS, PARTIAL, RESUMABLE_STATES, TRAIN_CONFIG, TRAINER_STATE, Run, RunState,
                       RunWriter, check_writable, drop_incomplete_checkpoints, mark_interrupted, read_dict)

from . import baseline, budget, checkpoints, corrections, data, diagnosis, exclusions, forgetting, lineage, promotion
from .card import model_card
from .config import HALF, TrainConfig
from .metrics import classification_metrics, trainer_metrics

# peft asks a transformers 5 model a deprecated question on every LoRA run; users can do nothing about it
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

Listener = Callable[[dict], None]
EVAL_BATCH = 64        # tweets per forward pass when evaluating (no backward: larger batches run faster)
STATUS_EVERY_S = 2.0   # status.json gets the progress this often (other processes and browsers read it)
PROGRESS_KEYS = ("step", "total_steps", "epoch", "eta_s", "budget_s")  # what status.json holds of an event


@dataclass
class RunResult:
    state: str                      # done | stopped | failed
    run_dir: Path | None = None
    run_id: str = ""
    metrics: dict = field(default_factory=dict)
    message: str = ""


class Progress(TrainerCallback):
    """Turns the Trainer's callbacks into events, and a stop flag into a clean stop at the next step.

    Events (dicts): {"event": "progress", step, total_steps, epoch, eta_s, elapsed_s[, budget_s]}
                    {"event": "log", step, epoch, loss, learning_rate, ...}
                    {"event": "eval", step, epoch, eval_loss, eval_accuracy, eval_f1_macro, ...}
    With a time budget's `plan`, events carry budget_s and the ETA is what the plan has left, or what the
    steps done say when that is sooner (and once the run is past its plan).
    """

    def __init__(self, emit: Listener, stop: threading.Event | None = None, plan: budget.Plan | None = None):
        self.emit, self.stop, self.plan = emit, stop, plan
        self.started, self.first_step = None, 0

    def _base(self, state) -> dict:
        elapsed = time.monotonic() - self.started if self.started else 0.0
        step, total = state.global_step, state.max_steps
        done = step - self.first_step  # a resumed run: the steps of this process
        eta = elapsed / done * (total - step) if done > 0 else None
        if self.plan is not None and elapsed < self.plan.planned_s:  # what the plan has left, at most
            eta = self.plan.planned_s - elapsed if eta is None else min(eta, self.plan.planned_s - elapsed)
        base = {"step": step, "total_steps": total, "epoch": round(state.epoch or 0.0, 4),
                "elapsed_s": round(elapsed, 2), "eta_s": None if eta is None else round(eta, 1)}
        return {**base, "budget_s": self.plan.time_budget_s} if self.plan is not None else base

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.monotonic(), state.global_step
        self.emit({"event": "progress", **self._base(state)})

    def on_step_end(self, args, state, control, **kwargs):
        self.emit({"event": "progress", **self._base(state)})
        if self.stop is not None and self.stop.is_set():
            control.should_training_stop = True
            control.should_evaluate = False  # `checkpoints.Checkpoints` saves a resumable checkpoint
        elif self._out_of_time(state) and state.global_step < state.max_steps:
            control.should_training_stop = control.should_evaluate = True  # the best checkpoint still counts
            self.emit({"event": "budget", "message": f"stopped at step {state.global_step} of {state.max_steps}: "
                       f"the machine ran slower than measured, and training keeps to its budget"})

    def _out_of_time(self, state) -> bool:
        """Whether the next step (counted twice: steps vary) and the last validation would take training past
        its budget (aimed at the budget itself, so that estimates that run short still keep within 105% of it)."""
        if self.plan is None or self.started is None or state.global_step <= self.first_step:
            return False
        elapsed = time.monotonic() - self.started
        step_s = elapsed / (state.global_step - self.first_step)
        return elapsed + 2 * step_s + self.plan.tail_s > self.plan.time_budget_s

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        kind = "eval" if any(k.startswith("eval_") for k in logs) else "log"
        if kind == "log" and "loss" not in logs:
            return  # the end-of-training summary: the run's metrics carry it
        self.emit({"event": kind, **self._base(state), **{k: _num(v) for k, v in logs.items()}})


def _num(v):
    return round(v, 6) if isinstance(v, float) else v


def training_arguments(cfg: TrainConfig, output_dir: Path, n_train: int, has_validation: bool,
                       world_size: int = 1, precision: str | None = None,
                       resumable: bool = False) -> TrainingArguments:
    """The Trainer's arguments, all derived from the config: one place for each knob. `precision` is
    cfg.precision resolved (None: resolved here). `resumable`: checkpoints carry the optimizer, scheduler
    and RNG states too (a run's; a sweep trial's need not); the Trainer keeps the newest and the best."""
    precision = precision or resolve_precision(cfg.precision)
    steps_per_epoch, total_steps = budget.schedule_steps(cfg, n_train, world_size)
    eval_steps = max(1, steps_per_epoch // cfg.evals_per_epoch)
    strategy = "steps" if has_validation else "no"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, EVAL_BATCH),
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=int(0.06 * total_steps),
        weight_decay=0.01,
        seed=cfg.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy=strategy,
        eval_steps=eval_steps,
        save_strategy=strategy,
        save_steps=eval_steps,
        save_total_limit=2,  # the newest checkpoint and the best one (with 1 the Trainer drops the newest at the end)
        save_only_model=not resumable,
        load_best_model_at_end=has_validation,
        metric_for_best_model="f1_macro",
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=max(1, total_steps // 100),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )


def model_to_train(cfg: TrainConfig, tokenizer, parent: lineage.Parent | None = None):
    """The classifier to train: every weight, or (cfg.lora) LoRA adapters plus the classification head;
    from the base model, or (`parent`) from the run it continues. Seeded first, so that the new head starts
    the same in a run and in the sweep trial it repeats."""
    set_seed(cfg.seed)
    model = load_classifier(parent.source if parent else cfg.base_model, tokenizer,
                            revision=parent.revision if parent else None,
                            bf16=resolve_precision(cfg.precision) == "bf16")
    set_dropout(model, cfg.dropout)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if cfg.freeze_layers and not cfg.lora:  # LoRA keeps every base weight fixed anyway
        freeze_lowest(model, cfg.freeze_layers)
    if not cfg.lora:
        return model
    targets = [m.strip() for m in cfg.lora_target_modules.split(",") if m.strip()]
    lora = LoraConfig(task_type=TaskType.SEQ_CLS,  # SEQ_CLS: the head ("score") is trained in full too
                      r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),  # gpt2 stores W transposed
                      target_modules=(targets[0] if targets == ["all-linear"] else targets) or None)
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise UserError(f"LoRA cannot wrap {cfg.base_model}: {str(exc).splitlines()[0]}; set "
                        f"--lora-target-modules to names of its linear layers (or 'all-linear')") from None


def set_dropout(model, p: float) -> None:
    """Every dropout of the model at rate p: torch's Dropout layers and the rates that attention modules
    keep as numbers (llama's `attention_dropout`). The saved config keeps the base model's rates."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p


def transformer_blocks(model) -> torch.nn.ModuleList:
    """The model's stack of transformer blocks (gpt2's `h`, llama's `layers`, …): the ModuleList in its
    body as long as its config's layer count."""
    count = model.config.num_hidden_layers
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise UserError(f"freeze_layers: cannot find the {count} transformer blocks of {type(model).__name__}; "
                    f"set freeze_layers to 0")


def freeze_lowest(model, n: int) -> None:
    """Fix the embeddings (token and position) and the lowest `n` blocks (HALF: the lower half): autograd
    then records nothing below block n, so they cost one forward pass per step."""
    blocks = transformer_blocks(model)
    n = len(blocks) // 2 if n == HALF else n
    if n >= len(blocks):
        raise UserError(f"freeze_layers must be below the model's {len(blocks)} blocks, got {n}")
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.Embedding):
            module.requires_grad_(False)
    for block in blocks[:n]:
        block.requires_grad_(False)


def merge_lora(trainer: Trainer) -> None:
    """Fold trained LoRA adapters into the weights, so that the run folder is a plain checkpoint."""
    if hasattr(trainer.model, "merge_and_unload"):
        trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()


def build_trainer(cfg: TrainConfig, model, tokenizer, tokenized, output_dir: Path, callbacks: list,
                  num_processes: int = 1, precision: str | None = None, resumable: bool = False) -> Trainer:
    """The Trainer of a run (`resumable`) or of a sweep trial: validation every eval, early stopping, best
    checkpoint."""
    has_val = len(tokenized["validation"]) > 0
    args = training_arguments(cfg, output_dir, len(tokenized["train"]), has_val, num_processes, precision,
                              resumable)
    callbacks = list(callbacks)
    if has_val and cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = Trainer(
        model=model, args=args, train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"] if has_val else None,
        processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=trainer_metrics, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # our Progress callback reports instead
    return trainer


# --- the run, step by step ---------------------------------------------------------------------------
@dataclass
class Prepared:
    """What a run needs before anything is written; any bad setting, model or dataset failed before."""
    cfg: TrainConfig        # the config as run: a time budget's train size filled in
    tokenizer: object
    splits: DatasetDict
    report: data.DataReport
    recent: list            # corrections since the newest complete run: the new model is judged on them
    precision: str          # cfg.precision resolved, once
    plan: budget.Plan | None = None  # what the time budget chose, when it chose the train size
    prompt_rows: list | None = None  # the baseline's examples and calibration come from (None: train split)
    parent: lineage.Parent | None = None  # the run this one continues (cfg.from_run)


@dataclass
class Trained:
    trainer: Trainer
    tokenized: DatasetDict
    loss: float
    seconds: float

    @property
    def stopped_early(self) -> bool:
        return self.trainer.state.global_step < self.trainer.state.max_steps


def clean_data(cfg: TrainConfig, extra_train: list[tuple[str, int]] | None = None,
               parent: lineage.Parent | None = None) -> data.Cleaned:
    """A run's data before the split: the dataset loaded and cleaned, with people's corrections to apply
    (unless cfg.include_corrections is off, or `extra_train` is given instead; a run that continues
    `parent` takes those accepted since the parent started, which learned the others), the rows excluded
    in the label review to leave out and its open suspects to count, and how many corrections are
    accepted, pending an admin or rejected (the accepted ones train: `corrections.training_rows`)."""
    if cfg.include_corrections and extra_train is None:
        extra_train = corrections.training_rows(cfg.runs_dir, since=parent.started if parent else None)
    suspected = {data.fold(s["text"]) for s in exclusions.open_suspects(cfg.runs_dir)}
    cleaned = data.clean(cfg, extra_train=extra_train, excluded=exclusions.excluded(cfg.runs_dir), suspected=suspected)
    for state, n in corrections.status_counts(cfg.runs_dir).items():
        setattr(cleaned.report, f"corrections_{state}", n)
    return cleaned


def prepare_data(cfg: TrainConfig, extra_train: list[tuple[str, int]] | None = None):
    """(splits, data report) of a run with cfg's train size (`clean_data`, split)."""
    return data.split(cfg, clean_data(cfg, extra_train))


def prepare(cfg: TrainConfig, state: PartialState, extra_train=None, prepared_data=None,
            emit: Listener | None = None) -> Prepared:
    """Check the settings, load the tokenizer and the data (or take `prepared_data`: what `clean_data`
    returned, e.g. when the app's settings check loaded them a moment ago, or a resumed run's saved
    (splits, report)), let a time budget choose the train size, split."""
    cfg.validate()
    if state.is_main_process:
        check_writable(cfg.runs_dir)
    if not torch.cuda.is_available():
        set_threads(cfg.threads)
    resumed = isinstance(prepared_data, tuple)  # a resumed run's saved (splits, report): its plan was made
    parent = lineage.find_parent(cfg.from_run, cfg.runs_dir) if cfg.from_run and not resumed else None
    if parent is not None:
        cfg = lineage.continued(cfg, parent)
    tokenizer = load_tokenizer(parent.source if parent else cfg.base_model,
                               revision=parent.revision if parent else None)
    tokenizer.model_max_length = cfg.max_length  # saved with the weights: wherever the run serves, it truncates here
    recent = corrections.since_last_run(cfg.runs_dir)
    precision = resolve_precision(cfg.precision)
    if resumed:
        return Prepared(cfg, tokenizer, *prepared_data, recent, precision)
    cleaned = prepared_data or clean_data(cfg, extra_train, parent)
    cfg, plan = fill_budget(cfg, tokenizer, cleaned, precision, state, emit, parent)
    splits, report = data.split(cfg, cleaned)
    return Prepared(cfg, tokenizer, splits, report, recent, precision, plan, cleaned.prompt_rows(), parent)


def fill_budget(cfg: TrainConfig, tokenizer, cleaned: data.Cleaned, precision: str, state: PartialState,
                emit: Listener | None = None,
                parent: lineage.Parent | None = None) -> tuple[TrainConfig, budget.Plan | None]:
    """(cfg with its recipe and the train size that fills cfg.time_budget_s, the plan), or (cfg with its
    recipe, None) when the budget does not apply. The batch size left to the plan (0) is chosen from the
    speed at PROBE_BATCH (`budget.choose_batch`), then that batch's own speed sizes the run. A speed is
    this machine's last for the same knobs (budget.last), else measured: every process measures (the steps
    train data-parallel), the main one's plan is used by all, and its measurement kept (budget.record)."""
    max_train, extra = cleaned.max_train(cfg), len(cleaned.extra_train)
    if not budget.applies(cfg) or not cleaned.pool:  # no rows: the split says so
        tweets = min(cfg.train_size or max_train, max_train) + extra
        return budget.recipe(cfg, tweets, parent is not None), None
    cfg, plan = budget.plan(cfg, lambda c: _speed(c, tokenizer, cleaned, precision, state, emit, parent),
                            max_train, extra, state.num_processes, parent is not None)
    plan = [plan]
    if state.num_processes > 1:
        broadcast_object_list(plan)
    return dataclasses.replace(cfg, train_size=plan[0].train_size), plan[0]


def _speed(cfg: TrainConfig, tokenizer, cleaned: data.Cleaned, precision: str, state: PartialState,
           emit: Listener | None, parent: lineage.Parent | None) -> budget.Throughput:
    """This machine's training speed for cfg's knobs: the last one kept, else measured now (and kept)."""
    speed = budget.last(cfg, precision, state.num_processes) if state.num_processes == 1 else None
    if speed is not None:
        return speed
    if emit and state.is_main_process:
        emit({"event": "budget", "message": f"measuring this machine's training speed at batch {cfg.batch_size} "
              f"on {budget.WARMUP_STEPS + budget.TIMED_STEPS} steps to fill the {cfg.time_budget_s:g}s budget"})
    def trainer_for(trial: TrainConfig, tokenized, out: Path) -> Trainer:  # a throwaway copy of the run's model
        return build_trainer(trial, model_to_train(trial, tokenizer, parent), tokenizer, tokenized, out, [],
                             state.num_processes, precision)
    speed = budget.measure(cfg, tokenizer, cleaned.pool, precision, trainer_for, state.num_processes)
    if state.is_main_process:
        budget.record(cfg.runs_dir, speed)
    return speed


class RunLog:
    """One run's folder and its events. The main process writes the folder (`writer`); every process
    knows the run id and where the folder is. Calling it with an event records it in history.jsonl (but
    for progress ticks), puts the progress in status.json every few seconds, and passes the event, with
    the run id, to the listener. `resume_dir`: the folder of a run to resume, reopened in place. With a Hub
    repo and a token, `hub` copies each resumable checkpoint to the repo in the background."""

    def __init__(self, cfg: TrainConfig, state: PartialState, listener: Listener | None = None,
                 resume_dir: Path | None = None, hub_api=None):
        self.main, self.listener = state.is_main_process, listener
        self.writer = None
        if self.main:
            self.writer = RunWriter.reopen(resume_dir) if resume_dir else RunWriter(cfg.runs_dir)
        run_id = [self.writer.id if self.writer else None]
        if state.num_processes > 1:
            broadcast_object_list(run_id)
        self.run_id = run_id[0]
        self.path = self.writer.path if self.writer else Path(cfg.runs_dir) / f"{self.run_id}{PARTIAL}"
        self._last_status = 0.0
        self.hub = self.writer and checkpoints.HubCheckpoints.maybe(
            self.path, cfg.hub_model_id, cfg.hub_private, hub_api,
            report=lambda r: self({"event": "hub-checkpoint", "state": r.state, "message": r.message}))

    def __call__(self, event: dict) -> None:
        if self.writer is not None:
            if event["event"] != "progress":
                self.writer.log_event(event)
            now = time.monotonic()
            if "step" in event and (event["event"] != "progress" or now - self._last_status > STATUS_EVERY_S):
                self._last_status = now
                self.writer.set_status(RunState.RUNNING, **{k: event[k] for k in PROGRESS_KEYS if k in event})
        if self.main and self.listener:
            self.listener({"run_id": self.run_id, **event})

    def begin(self, cfg: TrainConfig, prep: Prepared, checkpoint: Path | None = None) -> None:
        """A new run: its settings (with the train size a time budget chose: the same settings repeat the
        plan), data report, splits and the budget's plan. A resumed one (from `checkpoint`): the history
        trimmed to the checkpoint's step, and a "resumed" mark."""
        if not self.writer:
            return
        if checkpoint is None:
            cfg.save(self.writer.path / TRAIN_CONFIG)
            self.writer.write_json("data_report.json", prep.report.to_dict())
            checkpoints.save_splits(self.writer.checkpoints_dir, prep.splits)
            if prep.plan is not None:
                self({"event": "budget", "message": prep.plan.summary(), "plan": prep.plan.to_dict()})
            self({"event": "data", "message": prep.report.summary(), "sizes": prep.report.sizes})
            begun = lineage.start(cfg, prep.parent, prep.report.to_dict(), Run(self.path).status.get("started", ""))
            self({"event": "lineage", "message": lineage.summary(begun), "lineage": begun})
            return
        drop_incomplete_checkpoints(self.writer.checkpoints_dir)
        if not (self.writer.checkpoints_dir / checkpoints.SPLITS).is_dir():  # made again (see `resume`): kept now
            checkpoints.save_splits(self.writer.checkpoints_dir, prep.splits)
            self({"event": "data", "message": "its training rows made again from its dataset, train size and seed "
                                              "(the Hub copy it came back from holds none): " + prep.report.summary()})
        at = read_dict(checkpoint / TRAINER_STATE)
        step = at["global_step"]
        reached = checkpoints.trim_history(self.path, step)
        self({"event": "resumed", "step": step, "total_steps": at.get("max_steps"), "epoch": at.get("epoch"),
              "message": f"resumed at step {step} of {at.get('max_steps')}, from its last resumable checkpoint"
                         + (f" (steps {step + 1}-{reached} are done again)" if reached > step else "")})

    def checkpoint_saved(self, path: Path, seconds: float | None) -> None:
        """A checkpoint is on disk: say so (with its cost), and copy a resumable one to the Hub (the last
        step's holds the weights only: nothing is left to resume)."""
        size = checkpoints.size_mb(path)
        step = int(path.name.rsplit("-", 1)[-1])
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        resumable = any(path.glob("optimizer.*"))
        kind = "resumable checkpoint" if resumable else "checkpoint (weights only, the last step)"
        self({"event": "checkpoint", "step": step, "size_mb": size, "seconds": seconds, "resumable": resumable,
              "message": f"{kind} at step {step}: {size:.0f} MB{took}"})
        if self.hub and resumable:
            self.hub.offer(path)

    def history(self) -> list[dict]:
        return Run(self.path).history()

    def end(self, state: RunState, message: str) -> None:
        """A stopped, interrupted or failed run: marked so (a finished one is already renamed); a failed
        one loses its checkpoints, here and on the Hub."""
        if self.hub:
            self.hub.close(done=state == RunState.FAILED, timeout=0)
        if self.writer and self.writer.path.name.endswith(PARTIAL):
            self.writer.abandon(state, message)


def fine_tune(cfg: TrainConfig, on_event: Listener | None = None, stop: threading.Event | None = None,
              extra_train: list[tuple[str, int]] | None = None, prepared_data=None,
              resume_from: Path | None = None, hub_api=None) -> RunResult:
    """Train one run per `cfg`; see the module docstring. Bad settings raise `UserError` before any work.
    `resume_from`: a partial run's folder, continued from its newest resumable checkpoint (see `resume`)."""
    state = PartialState(cpu=not torch.cuda.is_available())
    prep = prepare(cfg, state, extra_train, prepared_data, on_event)
    cfg = prep.cfg
    checkpoint = Run(resume_from).checkpoint if resume_from else None
    log = RunLog(cfg, state, on_event, resume_from, hub_api)
    try:
        log.begin(cfg, prep, checkpoint)
        trained = train(cfg, prep, log, stop, state.num_processes, checkpoint)
        if _stopped(stop):
            state.wait_for_everyone()
            step = trained.trainer.state.global_step
            log.end(RunState.STOPPED, f"stopped by request at step {step}; it can resume")
            log({"event": "stopped", "message": f"stopped by request at step {step}; the previous model keeps "
                                                f"serving, and this run can resume"})
            return RunResult(RunState.STOPPED, log.path, log.run_id, message="stopped by request")
        if log.main and prep.plan and not prep.plan.every_tweet:
            steps = trained.trainer.state
            budget.record(cfg.runs_dir, budget.observed(prep.plan, trained.seconds, log.run_id,
                                                        steps.global_step / max(steps.max_steps, 1)))
        merge_lora(trained.trainer)  # a LoRA run is saved, tested and served as a plain checkpoint
        metrics = evaluate_test(cfg, prep, trained, log.run_id)
        if log.main:
            history = log.history()  # read once: the fit diagnosis, the card's curve, the lineage
            begun = next((e["lineage"] for e in reversed(history) if e.get("event") == "lineage"), None)
            if begun is not None:
                metrics["lineage"] = lineage.finish(begun, trained.seconds)
            quality(cfg, trained.trainer.model, prep.tokenizer, metrics, history, log, stop)
            log({"event": "test", "message": f"test accuracy {metrics['test']['accuracy']:.3f}, "
                                              f"macro-F1 {metrics['test']['f1_macro']:.3f}"})
            measure_baseline(cfg, prep, metrics, log, stop)
            metrics["promotion"] = promotion.judge(cfg, metrics, data.split_rows(prep.splits["test"]), prep.parent)
            log({"event": "promotion", "message": metrics["promotion"]["message"],
                 "promoted": metrics["promotion"]["promoted"]})
            save(cfg, trained.trainer, log, metrics, prep.report, history)
        state.wait_for_everyone()
        return RunResult(RunState.DONE, log.path, log.run_id, metrics)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)  # Ctrl-C: like a kill, the run can resume
        log.end(RunState.INTERRUPTED if interrupted else RunState.FAILED, first_line(exc) or "interrupted")
        raise


def resume(run_dir: str | Path, on_event: Listener | None = None, stop: threading.Event | None = None,
           hub_api=None) -> RunResult:
    """Continue an interrupted or stopped run in its own folder: its saved settings and data splits, from
    its newest resumable checkpoint, to the same end as if it had never stopped. A run brought back from a
    public repo's resume branch has no saved splits (its rows never left the old disk): they are made
    again from its dataset, train size and seed."""
    run = resumable_run(run_dir)
    cfg = TrainConfig.from_dict({**run.config, "runs_dir": str(run.path.parent)})
    splits = checkpoints.load_splits(run.path / CHECKPOINTS)
    known = {f.name for f in dataclasses.fields(data.DataReport)}  # a report of an older version: its own fields
    report = data.DataReport(**{k: v for k, v in run.data_report.items() if k in known})
    prepared = (splits, report) if splits is not None else None
    return fine_tune(cfg, on_event, stop, prepared_data=prepared, resume_from=run.path, hub_api=hub_api)


def resumable_run(run_dir: str | Path) -> Run:
    """The run at `run_dir` if it can resume, else a UserError that says why not."""
    run = Run(Path(run_dir).expanduser().resolve())
    if not (run.path / "status.json").exists():
        raise UserError(f"{run_dir} is not a run folder: give a folder like runs/<run id>.partial")
    mark_interrupted(run.path.parent)  # a run whose process is gone (kill -9) says "running" until now
    if run.is_complete or not run.path.name.endswith(PARTIAL):
        raise UserError(f"run {run.id} has finished: there is nothing to resume")
    if run.state not in RESUMABLE_STATES:
        raise UserError(f"run {run.id} is {run.state}: only an interrupted or stopped run can resume")
    if run.checkpoint is None or not run.config:
        raise UserError(f"run {run.id} has no resumable checkpoint (it ended before its first one): "
                        f"start a new run instead")
    return run


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def train(cfg: TrainConfig, prep: Prepared, log: RunLog, stop: threading.Event | None,
          num_processes: int = 1, checkpoint: Path | None = None) -> Trained:
    """The model to train, tokenised data, the Trainer, and training itself (until done, early stop or
    stop), from `checkpoint` when resuming; resumable checkpoints on a timer and at stop."""
    model = model_to_train(cfg, prep.tokenizer, prep.parent)
    tokenized = data.tokenize(prep.splits, prep.tokenizer, cfg.max_length)
    saver = checkpoints.Checkpoints(cfg.checkpoint_every_minutes * 60, stop, log.checkpoint_saved)
    trainer = build_trainer(cfg, model, prep.tokenizer, tokenized, log.path / CHECKPOINTS,
                            [Progress(log, stop, prep.plan), saver, checkpoints.SeededOrder()], num_processes,
                            prep.precision, resumable=True)
    log({"event": "start", "message": f"training {cfg.base_model} on {len(tokenized['train'])} tweets, "
         f"{cfg.epochs:g} epoch(s), precision {prep.precision}"})
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return Trained(trainer, tokenized, output.training_loss, time.monotonic() - started)


def evaluate_test(cfg: TrainConfig, prep: Prepared, trained: Trained, run_id: str) -> dict:
    """metrics.json's core: the test metrics, training speed, the checkpoint kept, and (when people
    corrected the previous model since it was trained) how often the new one agrees with them."""
    trainer = trained.trainer
    labels, predicted = predict_by_length(trainer, trained.tokenized["test"])
    metrics = {
        "run_id": run_id,
        "test": classification_metrics(labels, predicted),
        "train_seconds": round(trained.seconds, 1),
        "train_tweets_per_second": round(len(trained.tokenized["train"]) * cfg.epochs / max(trained.seconds, 1e-9), 2),
        "train_loss": trained.loss,
        "best_checkpoint_step": _best_step(trainer),
        "stopped_early": trained.stopped_early,
        "precision": prep.precision,
        "test_rows": promotion.fingerprint(data.split_rows(prep.splits["test"])),
    }
    if prep.plan is not None:
        metrics["budget"] = prep.plan.to_dict()
    if prep.recent:
        metrics["corrections"] = _judge_corrections(trainer, prep.tokenizer, cfg, prep.recent)
    return metrics


def predict_by_length(trainer: Trainer, split: Dataset) -> tuple:
    """(labels, predicted labels) of a tokenised split, its rows batched by their length: each batch pads to
    its longest, and 1,000 test tweets (18,783 SmolLM2 tokens) in batches of 64 pad to 43,472 tokens in their
    own order, 20,696 sorted."""
    order = np.argsort(split["length"], kind="stable")
    prediction = trainer.predict(split.select(order), metric_key_prefix="test")
    back = np.argsort(order)
    return prediction.label_ids[back], prediction.predictions.argmax(axis=-1)[back]


def quality(cfg: TrainConfig, model, tokenizer, metrics: dict, history: list[dict], emit: Listener,
            stop: threading.Event | None) -> None:
    """metrics["fit_diagnosis"] (over/underfitting, from the history) and metrics["forgetting"] (the
    perplexity meter)."""
    metrics["fit_diagnosis"] = diagnosis.diagnose(history)
    emit({"event": "diagnosis", "message": metrics["fit_diagnosis"]["summary"]})
    if not cfg.measure_forgetting or _stopped(stop):
        return
    try:
        metrics["forgetting"] = forgetting.measure(cfg.base_model, model, tokenizer)
    except Exception as exc:  # e.g. a base model without a causal-LM head: the run itself is fine
        metrics["forgetting"] = {"error": f"not measured: {first_line(exc)}"}
    emit({"event": "forgetting", "message": metrics["forgetting"].get("summary") or metrics["forgetting"]["error"]})


def measure_baseline(cfg: TrainConfig, prep: Prepared, metrics: dict, emit: Listener,
                     stop: threading.Event | None) -> None:
    """metrics["baseline"]: the base model prompted few-shot on the same test rows (the "before"), in the
    run's precision (bf16 with AMX: half the time of fp32, smollm2-135m zero-shot 0.544 against 0.550),
    its examples and calibration tweets from `prep.prompt_rows`: one measurement for runs of any size. A run
    that continues another tested on the same tweets takes its parent's (the chain's "before")."""
    if _stopped(stop):
        return
    theirs = prep.parent.metrics if prep.parent else {}
    if theirs.get("baseline") and theirs.get("test_rows") == metrics.get("test_rows"):
        metrics["baseline"] = theirs["baseline"]
        return
    emit({"event": "baseline", "message": f"evaluating the base model {cfg.few_shot_k}-shot"})
    precision = "bf16" if prep.precision == "bf16" else "fp32"  # the prompts run on the CPU: no fp16 there
    metrics["baseline"] = baseline.evaluate(cfg.base_model, prep.prompt_rows or data.split_rows(prep.splits["train"]),
                                            data.split_rows(prep.splits["test"]),
                                            cfg.few_shot_k, cfg.seed, cache_dir=Path(cfg.runs_dir) / "_cache",
                                            precision=precision)


def save(cfg: TrainConfig, trainer: Trainer, log: RunLog, metrics: dict, report: data.DataReport,
         history: list[dict]) -> Path:
    """Weights, metrics.json and the model card into the run folder, then mark it done (renamed from
    `<id>.partial`: from now on it may serve)."""
    writer = log.writer
    trainer.save_model(str(writer.path))  # safetensors weights, config with labels, tokenizer
    (writer.path / "training_args.bin").unlink(missing_ok=True)  # a pickle: not in our run folders
    writer.write_json("metrics.json", metrics)
    (writer.path / "README.md").write_text(model_card(cfg, metrics, report.to_dict(), history))
    if log.hub:
        log.hub.close(done=True, timeout=30)  # the Hub's resume branch no longer offers this run
    final = writer.finish(test_accuracy=metrics["test"]["accuracy"])
    log.path = final
    log({"event": "done", "message": f"run {log.run_id} finished", "run_dir": str(final)})
    return final


def _best_step(trainer: Trainer) -> int | None:
    best = trainer.state.best_model_checkpoint
    return int(best.rsplit("-", 1)[-1]) if best else None


def _judge_corrections(trainer: Trainer, tokenizer, cfg: TrainConfig, recent: list) -> dict:
    rows = DatasetDict(corrections=Dataset.from_dict({"text": [c.text for c in recent],
                                                      "label": [c.label for c in recent]}))
    out = trainer.predict(data.tokenize(rows, tokenizer, cfg.max_length)["corrections"],
                          metric_key_prefix="corrections")
    return corrections.agreement(recent, [LABELS[i] for i in out.predictions.argmax(axis=-1)])
