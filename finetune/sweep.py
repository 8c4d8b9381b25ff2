"""Hyperparameter search: a small grid, chosen on the validation split only.

    python -m finetune --sweep "learning_rate=2e-5,5e-5,1e-4 epochs=1,2 batch_size=8,16" [other options]
    python -m finetune --sweep --sweep-train-best ...      # the default grid, then train the best once

Each setting of the grid trains the model on the run's training tweets (with a time budget and no
train size: as many as the budget fits at the base setting, measured once) and scores its best checkpoint on
the validation tweets (carved out of the train split, never trained on). The test split is dropped right
after the data are prepared: it is never read to choose. The table goes to stdout and to
`<runs_dir>/_sweeps/sweep-<time>.json`; `--sweep-train-best` then trains the best setting as an ordinary
run, which is evaluated once on the test split.

A plain grid loop rather than `Trainer.hyperparameter_search`: that needs optuna or ray, and scores a trial
by its last evaluation, not by the best checkpoint that the run would keep.
"""
from __future__ import annotations

import itertools
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from accelerate import PartialState
from datasets import DatasetDict

from core.errors import UserError
from core.model import load_tokenizer, resolve_precision, set_threads
from core.runs import write_json

from . import data
from .config import ConfigError, TrainConfig
from .train import Progress, build_trainer, clean_data, fill_budget, model_to_train

DEFAULT_GRID = "learning_rate=2e-5,5e-5,1e-4 epochs=1,2 batch_size=8,16"
SEARCHABLE = ("learning_rate", "epochs", "batch_size", "grad_accum", "max_length", "early_stopping_patience",
              "lora", "lora_r", "lora_alpha", "lora_dropout")
MAX_TRIALS = 64


def parse_grid(text: str) -> dict[str, list[str]]:
    """"learning_rate=2e-5,5e-5 epochs=1,2" (spaces or ';' between settings) → {name: [values]}."""
    grid = {}
    for part in text.replace(";", " ").split():
        name, sep, values = part.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or not values.strip(","):
            raise ConfigError(f"sweep setting {part!r} must look like name=value1,value2")
        if name not in SEARCHABLE:
            raise ConfigError(f"cannot sweep {name!r}: choose from {', '.join(SEARCHABLE)}")
        grid[name] = [v for v in values.split(",") if v]
    if not grid:
        raise ConfigError(f"the sweep grid is empty: give e.g. {DEFAULT_GRID!r}")
    return grid


def trial_configs(cfg: TrainConfig, grid: dict[str, list]) -> list[TrainConfig]:
    """One validated config per point of the grid (the base config with that point's values)."""
    names = list(grid)
    combos = list(itertools.product(*grid.values()))
    if len(combos) > MAX_TRIALS:
        raise ConfigError(f"the grid has {len(combos)} settings; at most {MAX_TRIALS}: give fewer values")
    return [TrainConfig.from_dict({**cfg.to_dict(), **dict(zip(names, combo))}).validate() for combo in combos]


@dataclass
class SweepResult:
    names: list[str]
    rows: list[dict] = field(default_factory=list)    # one per trial: its values + validation metrics
    configs: list[TrainConfig] = field(default_factory=list)
    best_index: int = 0

    @property
    def best(self) -> dict:
        return self.rows[self.best_index]

    @property
    def best_config(self) -> TrainConfig:
        return self.configs[self.best_index]

    def table(self) -> str:
        """A markdown table, best row marked."""
        cols = self.names + ["val_accuracy", "val_f1_macro", "val_loss", "train_seconds"]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for i, row in enumerate(self.rows):
            cells = [_cell(row[c]) for c in cols]
            if i == self.best_index:
                cells = [f"**{c}**" for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"names": self.names, "rows": self.rows, "best": self.best,
                "best_config": self.best_config.to_dict(), "chosen_on": "validation"}


def search(cfg: TrainConfig, grid: dict[str, list], on_event: Callable[[dict], None] | None = None,
           stop: threading.Event | None = None) -> SweepResult:
    """Train and validate every point of `grid`; the test split is never used."""
    configs = trial_configs(cfg.validate(), grid)
    if cfg.validation_share <= 0:
        raise UserError("a sweep chooses on the validation split: set validation_share above 0")
    emit = on_event or (lambda event: None)
    set_threads(cfg.threads)
    tokenizer = load_tokenizer(cfg.base_model)
    cleaned = clean_data(cfg)
    cfg, plan = fill_budget(cfg, tokenizer, cleaned, resolve_precision(cfg.precision),
                            PartialState(cpu=not torch.cuda.is_available()), emit)
    if plan is not None:  # every trial trains on the size the budget chose for the base setting
        emit({"event": "budget", "message": plan.summary()})
        configs = trial_configs(cfg, grid)
    splits, _ = data.split(cfg, cleaned)
    splits = DatasetDict(train=splits["train"], validation=splits["validation"])  # test: never used to choose
    if len(splits["validation"]) == 0:
        raise UserError("the validation split is empty: use more training tweets or a larger validation_share")

    result = SweepResult(names=list(grid))
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        for i, trial in enumerate(configs):
            values = {name: getattr(trial, name) for name in result.names}
            emit({"event": "trial", "message": f"trial {i + 1}/{len(configs)}: {values}"})
            model = model_to_train(trial, tokenizer)
            trainer = build_trainer(trial, model, tokenizer, data.tokenize(splits, tokenizer, trial.max_length),
                                    Path(tmp) / f"trial-{i}", [Progress(emit, stop)])
            started = time.monotonic()
            trainer.train()
            seconds = time.monotonic() - started
            if stop is not None and stop.is_set():
                raise UserError("sweep stopped by request")
            scores = trainer.evaluate()  # the best checkpoint, on validation
            result.rows.append({**values, "val_accuracy": round(scores["eval_accuracy"], 4),
                                "val_f1_macro": round(scores["eval_f1_macro"], 4),
                                "val_loss": round(scores["eval_loss"], 4), "train_seconds": round(seconds, 1)})
            result.configs.append(trial)
            emit({"event": "trial_done", "message": f"trial {i + 1}: validation accuracy "
                  f"{scores['eval_accuracy']:.3f}, macro-F1 {scores['eval_f1_macro']:.3f}"})
            del trainer, model
    result.best_index = max(range(len(result.rows)), key=lambda i: (
        result.rows[i]["val_f1_macro"], result.rows[i]["val_accuracy"], -result.rows[i]["train_seconds"]))
    return result


def save(result: SweepResult, runs_dir: str | Path) -> Path:
    path = Path(runs_dir) / "_sweeps" / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result.to_dict())
    return path


def _cell(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
