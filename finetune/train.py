"""Training: config → data → model → Trainer (+ progress, stop, early stopping) → a finished run folder.

    result = run(TrainConfig(...), on_event=print, stop=threading.Event())

`on_event` receives plain dicts (see `Progress`); `stop.set()` ends training cleanly at the next step
and leaves the run marked "stopped" — the last complete run keeps serving. The same function runs
unchanged under `torchrun` / `accelerate launch` (the Trainer then trains data-parallel; only the main
process writes the run folder).
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback, Trainer,
                          TrainerCallback, TrainingArguments)

from . import baseline, corrections, data, diagnosis, forgetting
from .card import model_card
from .config import TrainConfig
from core.labels import LABELS
from core.errors import UserError, first_line
from .metrics import classification_metrics, trainer_metrics
from core.model import load_classifier, load_tokenizer, resolve_precision, set_threads
from core.runs import PARTIAL, TRAIN_CONFIG, Run, RunWriter, check_writable

# peft asks a transformers 5 model a deprecated question on every LoRA run; users can do nothing about it
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

Listener = Callable[[dict], None]


@dataclass
class RunResult:
    state: str                      # done | stopped | failed
    run_dir: Path | None = None
    run_id: str = ""
    metrics: dict = field(default_factory=dict)
    message: str = ""


class Progress(TrainerCallback):
    """Turns the Trainer's callbacks into events, and a stop flag into a clean stop at the next step.

    Events (dicts): {"event": "progress", step, total_steps, epoch, eta_s, elapsed_s}
                    {"event": "log", step, epoch, loss, learning_rate, ...}
                    {"event": "eval", step, epoch, eval_loss, eval_accuracy, eval_f1_macro, ...}
    """

    def __init__(self, emit: Listener, stop: threading.Event | None = None):
        self.emit, self.stop = emit, stop
        self.started = None

    def _base(self, state) -> dict:
        elapsed = time.monotonic() - self.started if self.started else 0.0
        step, total = state.global_step, state.max_steps
        eta = elapsed / step * (total - step) if step else None
        return {"step": step, "total_steps": total, "epoch": round(state.epoch or 0.0, 4),
                "elapsed_s": round(elapsed, 2), "eta_s": None if eta is None else round(eta, 1)}

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()
        self.emit({"event": "progress", **self._base(state)})

    def on_step_end(self, args, state, control, **kwargs):
        self.emit({"event": "progress", **self._base(state)})
        if self.stop is not None and self.stop.is_set():
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        kind = "eval" if any(k.startswith("eval_") for k in logs) else "log"
        if kind == "log" and "loss" not in logs:
            return  # the end-of-training summary: the run's metrics carry it
        self.emit({"event": kind, **self._base(state), **{k: _num(v) for k, v in logs.items()}})


def _num(v):
    return round(v, 6) if isinstance(v, float) else v


def training_arguments(cfg: TrainConfig, output_dir: Path, n_train: int, has_validation: bool,
                       world_size: int = 1) -> TrainingArguments:
    """The Trainer's arguments, all derived from the config: one place for each knob."""
    precision = resolve_precision(cfg.precision)
    steps_per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * cfg.grad_accum * world_size)))
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    eval_steps = max(1, steps_per_epoch // cfg.evals_per_epoch)
    strategy = "steps" if has_validation else "no"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 32),
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
        save_total_limit=1,
        save_only_model=True,
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


def load_model(cfg: TrainConfig, tokenizer):
    """The classifier to train: every weight, or (cfg.lora) LoRA adapters plus the classification head.
    Seeded first, so that the new head starts the same in a run and in the sweep trial it repeats."""
    from transformers import set_seed

    set_seed(cfg.seed)
    model = load_classifier(cfg.base_model, tokenizer)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if not cfg.lora:
        return model
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers.pytorch_utils import Conv1D

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


def merge_lora(trainer: Trainer) -> None:
    """Fold trained LoRA adapters into the weights, so that the run folder is a plain checkpoint."""
    if hasattr(trainer.model, "merge_and_unload"):
        trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()


def build_trainer(cfg: TrainConfig, model, tokenizer, tokenized, output_dir: Path, callbacks: list,
                  num_processes: int = 1) -> Trainer:
    """The Trainer of a run or of a sweep trial: validation every eval, early stopping, best checkpoint."""
    has_val = len(tokenized["validation"]) > 0
    args = training_arguments(cfg, output_dir, len(tokenized["train"]), has_val, num_processes)
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


def run(cfg: TrainConfig, on_event: Listener | None = None, stop: threading.Event | None = None,
        extra_train: list[tuple[str, int]] | None = None) -> RunResult:
    """Train one run per `cfg`; see the module docstring. Bad settings raise `UserError` before any work."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    cfg.validate()
    listeners = [on_event] if on_event else []
    state = PartialState(cpu=not torch.cuda.is_available())
    main = state.is_main_process
    if main:
        check_writable(cfg.runs_dir)
    if not torch.cuda.is_available():
        set_threads(cfg.threads)

    # fail on bad models or data before creating anything
    tokenizer = load_tokenizer(cfg.base_model)
    recent = corrections.since_last_run(cfg.runs_dir)  # the new model is judged on these at the end
    if cfg.include_corrections and extra_train is None:
        extra_train = corrections.training_rows(cfg.runs_dir)
    splits, report = data.prepare(cfg, extra_train=extra_train)

    writer = RunWriter(cfg.runs_dir) if main else None
    run_id = [writer.id if writer else None]
    if state.num_processes > 1:
        broadcast_object_list(run_id)
    output = writer.path if writer else Path(cfg.runs_dir) / f"{run_id[0]}{PARTIAL}"
    last_status = [0.0]

    def emit(event: dict) -> None:
        if writer is not None:
            if event["event"] != "progress":
                writer.log_event(event)
            now = time.monotonic()
            if "step" in event and (event["event"] != "progress" or now - last_status[0] > 2):
                last_status[0] = now  # progress for other processes and browsers, every few seconds
                writer.set_status("running", **{k: event[k] for k in ("step", "total_steps", "epoch", "eta_s")})
        if main:
            for listener in listeners:
                listener({"run_id": run_id[0], **event})

    try:
        if writer:
            cfg.save(writer.path / TRAIN_CONFIG)
            writer.write_json("data_report.json", report.to_dict())
            emit({"event": "data", "message": report.summary(), "sizes": report.sizes})

        model = load_model(cfg, tokenizer)
        tokenized = data.tokenize(splits, tokenizer, cfg.max_length)
        trainer = build_trainer(cfg, model, tokenizer, tokenized, output / "_checkpoints",
                                [Progress(emit, stop)], state.num_processes)
        emit({"event": "start", "message": f"training {cfg.base_model} on {len(tokenized['train'])} tweets, "
              f"{cfg.epochs:g} epoch(s), precision {resolve_precision(cfg.precision)}"})
        started = time.monotonic()
        train_output = trainer.train()
        train_seconds = time.monotonic() - started

        if stop is not None and stop.is_set():
            state.wait_for_everyone()
            if writer:
                writer.abandon("stopped", "stopped by request")
            emit({"event": "stopped", "message": "stopped by request; the previous model keeps serving"})
            return RunResult("stopped", output, run_id[0], message="stopped by request")

        merge_lora(trainer)  # a LoRA run is saved, tested and served as a plain checkpoint
        prediction = trainer.predict(tokenized["test"], metric_key_prefix="test")
        test = classification_metrics(prediction.label_ids, prediction.predictions.argmax(axis=-1))
        metrics = {
            "run_id": run_id[0],
            "test": test,
            "train_seconds": round(train_seconds, 1),
            "train_tweets_per_second": round(len(tokenized["train"]) * cfg.epochs / max(train_seconds, 1e-9), 2),
            "train_loss": train_output.training_loss,
            "best_checkpoint_step": _best_step(trainer),
            "stopped_early": trainer.state.global_step < trainer.state.max_steps,
            "precision": resolve_precision(cfg.precision),
        }
        if recent:  # how often the new model agrees with people on the corrections since the previous run
            metrics["corrections"] = _judge_corrections(trainer, tokenizer, cfg, recent)
            metrics.setdefault("card_sections", []).append(
                corrections.card_section(metrics["corrections"], report.corrections_added))
        if main:
            _quality(cfg, trainer.model, tokenizer, metrics, Run(writer.path).history(), emit, stop)
            emit({"event": "test", "message": f"test accuracy {test['accuracy']:.3f}, macro-F1 {test['f1_macro']:.3f}"})
            if stop is None or not stop.is_set():
                emit({"event": "baseline", "message": f"evaluating the base model {cfg.few_shot_k}-shot"})
                metrics["baseline"] = baseline.evaluate(
                    cfg.base_model, list(zip(splits["train"]["text"], splits["train"]["label"])),
                    list(zip(splits["test"]["text"], splits["test"]["label"])), cfg.few_shot_k, cfg.seed,
                    cache_dir=Path(cfg.runs_dir) / "_cache")
            trainer.save_model(str(writer.path))  # safetensors weights, config with labels, tokenizer
            (writer.path / "training_args.bin").unlink(missing_ok=True)  # a pickle: not in our run folders
            writer.write_json("metrics.json", metrics)
            (writer.path / "README.md").write_text(
                model_card(cfg, metrics, report.to_dict(), Run(writer.path).history()))
            final = writer.finish(test_accuracy=test["accuracy"])
            emit({"event": "done", "message": f"run {run_id[0]} finished", "run_dir": str(final)})
        state.wait_for_everyone()
        return RunResult("done", writer.path if writer else output, run_id[0], metrics)
    except BaseException as exc:
        if writer and writer.path.name.endswith(PARTIAL):
            writer.abandon("failed", first_line(exc))
        raise


def _quality(cfg: TrainConfig, model, tokenizer, metrics: dict, history: list[dict], emit: Listener,
             stop: threading.Event | None) -> None:
    """metrics["fit_diagnosis"] (over/underfitting, from the history) and metrics["forgetting"] (the
    perplexity meter), each with its model-card section."""
    metrics["fit_diagnosis"] = diagnosis.diagnose(history)
    sections = metrics.setdefault("card_sections", [])
    sections.append(diagnosis.card_section(metrics["fit_diagnosis"]))
    emit({"event": "diagnosis", "message": metrics["fit_diagnosis"]["summary"]})
    if cfg.measure_forgetting and (stop is None or not stop.is_set()):
        try:
            metrics["forgetting"] = forgetting.measure(cfg.base_model, model, tokenizer)
        except Exception as exc:  # e.g. a base model without a causal-LM head: the run itself is fine
            metrics["forgetting"] = {"error": f"not measured: {first_line(exc)}"}
            emit({"event": "forgetting", "message": metrics["forgetting"]["error"]})
            return
        sections.append(forgetting.card_section(metrics["forgetting"]))
        emit({"event": "forgetting", "message": metrics["forgetting"]["summary"]})


def _best_step(trainer: Trainer) -> int | None:
    best = trainer.state.best_model_checkpoint
    return int(best.rsplit("-", 1)[-1]) if best else None


def _judge_corrections(trainer: Trainer, tokenizer, cfg: TrainConfig, recent: list) -> dict:
    from datasets import Dataset, DatasetDict

    rows = DatasetDict(corrections=Dataset.from_dict({"text": [c.text for c in recent],
                                                      "label": [c.label for c in recent]}))
    out = trainer.predict(data.tokenize(rows, tokenizer, cfg.max_length)["corrections"],
                          metric_key_prefix="corrections")
    return corrections.agreement(recent, [LABELS[i] for i in out.predictions.argmax(axis=-1)])
