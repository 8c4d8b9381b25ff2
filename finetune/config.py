"""The one place for every knob of a fine-tuning run.

`TrainConfig` is what the command line, the app and the tests all build; its defaults are the
one-click retrain. Each field carries its help text (shown by `python -m finetune --help`, whose options
`ConfigParser`, an `HfArgumentParser`, makes from the fields), and
`validate()` refuses bad settings before any work starts.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from transformers import HfArgumentParser

from core.errors import UserError


DEFAULT_BASE_MODEL = "gpt2"
DEFAULT_DATASET = "mteb/tweet_sentiment_extraction"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
MAX_EPOCHS = 100  # more is a typo, not a plan; early stopping ends most runs far sooner
HALF = -1  # freeze_layers: the lower half of the model's transformer blocks
MIN_BUDGET_S, MAX_BUDGET_S = 10.0, 7 * 24 * 3600.0  # under 10 s the speed measurement is most of it


class ConfigError(UserError, ValueError):
    """A setting that cannot work; the message says what to change."""


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


def parse_size(value) -> int:
    """A subset size: a whole number of rows, where 0 or "all" means the whole split."""
    if isinstance(value, str):
        value = value.strip().lower()
        if value in ("all", ""):
            return 0
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(f"size {value!r} is not a whole number or 'all'") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"size {value!r} must be a whole number >= 0 (0 or 'all' = the whole split)")
    return value


@dataclass
class TrainConfig:
    # --- what to train --------------------------------------------------------------------------
    base_model: str = field(default=DEFAULT_BASE_MODEL, metadata=_help(
        "Hub id or local folder of a causal LM that the Auto classes can load as a sequence classifier."))
    dataset: str = field(default=DEFAULT_DATASET, metadata=_help(
        "Hub dataset id, or a local folder (train/test files) or a single CSV / JSONL / Parquet file."))
    text_column: str = field(default="text", metadata=_help("Column holding the tweet text."))
    label_column: str = field(default="label", metadata=_help(
        "Column holding the label: 0/1/2 or the strings negative/neutral/positive."))
    # the one-click defaults: 2 minutes of training, whose recipe (train size, batch size, learning rate)
    # finetune/budget.py plans from this machine's measured speed (README, One click)
    train_size: int = field(default=0, metadata=_help(
        "Tweets to train on, drawn from the cleaned train split (0 or 'all' = as many as fit in "
        "time_budget_s, or every one when the budget is 0). A number wins over the budget.", parse=parse_size))
    time_budget_s: float = field(default=120.0, metadata=_help(
        "Seconds of training (validation included) to fill when train_size is 0: the run times a few steps "
        "on this machine first and trains on as many tweets as fit, at most every one "
        "(0 = no budget).", aliases=["--time-budget"]))
    test_size: int = field(default=1000, metadata=_help(
        "Tweets of the test split to evaluate on (0 or 'all' = every one).", parse=parse_size))
    validation_share: float = field(default=0.1, metadata=_help(
        "Validation rows held out of the train split, as a share of train_size (never trained on)."))
    # --- how to train ---------------------------------------------------------------------------
    epochs: float = field(default=1.0, metadata=_help("Passes over the training tweets."))
    learning_rate: float = field(default=0.0, metadata=_help(
        "Peak learning rate of AdamW (linear decay); 0 = the rate the recipe gives the batch size "
        "(finetune/budget.py LEARNING_RATES)."))
    batch_size: int = field(default=0, metadata=_help(
        "Tweets per device per step; 0 = the recipe picks it for the number of tweets the time budget affords: "
        "the largest batch that still gives the run MIN_STEPS optimizer steps (finetune/budget.py)."))
    grad_accum: int = field(default=1, metadata=_help("Steps whose gradients are summed before an update."))
    max_length: int = field(default=128, metadata=_help("Tokens kept per tweet; longer ones are truncated."))
    seed: int = field(default=42, metadata=_help("Seed for subsets, splits, shuffling and initialisation."))
    early_stopping_patience: int = field(default=2, metadata=_help(
        "Evaluations without a better validation macro-F1 before training stops (0 = never stop early)."))
    evals_per_epoch: int = field(default=1, metadata=_help(
        "Validation evaluations per epoch (more gives finer curves and best-checkpoint choice)."))
    few_shot_k: int = field(default=0, metadata=_help(
        "Labelled examples in the base model's few-shot prompt, the before-training baseline (0 = zero-shot, "
        "which scored best of k = 0, 4, 8 on smollm2-135m and costs the least: README \"Results\")."))
    # --- quality: LoRA and the forgetting meter -------------------------------------------------
    lora: bool = field(default=False, metadata=_help(
        "Train LoRA adapters (peft) and the classification head instead of every weight; the adapters are "
        "merged into the saved checkpoint, so the run folder loads like any other."))
    lora_r: int = field(default=8, metadata=_help("LoRA rank: the width of each adapter (with --lora)."))
    lora_alpha: int = field(default=16, metadata=_help("LoRA scaling: the adapters' update is scaled by alpha/r."))
    lora_dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA adapters' input."))
    lora_target_modules: str = field(default="", metadata=_help(
        "Comma-separated module names that get adapters, or 'all-linear'; empty = peft's default for the "
        "architecture (the attention projections)."))
    measure_forgetting: bool = field(default=True, metadata=_help(
        "After training, compare the language-model perplexity of the base model and of the fine-tuned "
        "backbone on a short general-English text (metrics.json 'forgetting'; a few seconds)."))
    # --- speed ----------------------------------------------------------------------------------
    precision: str = field(default="auto", metadata=_help(
        "Number format for training: auto (bf16 autocast on a CPU whose bf16 matrix products measure at least "
        "1.5x fp32's, as with AMX or AVX-512-BF16; else fp32, which also beat bf16 on tweet-sized batches on "
        "an H200), bf16, fp16 (CUDA) or fp32.", choices=PRECISIONS))
    group_by_length: bool = field(default=True, metadata=_help(
        "Batch tweets of similar length together, so that little of each batch is padding."))
    threads: int = field(default=0, metadata=_help(
        "CPU threads for training (0 = the cores granted to this process: CPU_CORES, else affinity)."))
    freeze_embeddings: bool = field(default=True, metadata=_help(
        "Keep the token embedding matrix fixed (gpt2: 38M of 124M weights, smollm2-135m: 28M of 135M): no "
        "dense gradient to zero and less optimizer work per step, 1.06-1.12x the tweets per second in bf16 "
        "(RESULTS.md \"Dropout, the embeddings and GELU in bf16\")."))
    dropout: float = field(default=0.0, metadata=_help(
        "Dropout rate of every dropout in the model while training (gpt2's own is 0.1; its random masks "
        "take a seventh of a bf16 step on CPU, and one short epoch has little to overfit; 0 = none)."))
    freeze_layers: int = field(default=HALF, metadata=_help(
        "Keep the embeddings and the lowest N transformer blocks fixed: they run forward only (no backward, "
        "no optimizer state), so a step costs less and a time budget sees more tweets. -1 = the lower half of "
        "the model's blocks (the default: on 2 CPU cores without AMX, twice the tweets a second of full "
        "fine-tuning and more accurate in 2 minutes, README \"One click\"); 0 = every block trains."))
    checkpoint_every_minutes: float = field(default=5.0, metadata=_help(
        "Minutes of training between resumable checkpoints (weights, optimizer, scheduler, RNG and data "
        "position; also written at Stop and at each validation); a killed or stopped run resumes from the last "
        "one (python -m finetune --resume RUN_DIR). 0 = only at Stop and validations."))
    # --- clicks that build on the last ----------------------------------------------------------
    from_run: str = field(default="", metadata=_help(
        "A finished run to continue from (a run folder, a run id in runs_dir, or a Hub repo it was pushed to): "
        "its weights train on the tweets its chain has not trained on yet, plus corrections made since; "
        "empty = start from base_model (finetune/lineage.py)."))
    train_offset: int = field(default=0, metadata=_help(
        "Tweets of the shuffled train pool its chain drew before this run (set by from_run): this run's "
        "tweets start there, wrapping round to a new pass once every tweet has been drawn."))
    validation_size: int = field(default=0, metadata=_help(
        "Validation tweets held out of the pool (set by from_run: the chain keeps its first run's); 0 = "
        "validation_share of the train size."))
    # --- where it goes --------------------------------------------------------------------------
    runs_dir: str = field(default="runs", metadata=_help("Folder that holds one sub-folder per run."))
    hub_model_id: str = field(default="", metadata=_help(
        "Hub repo to push the finished run to (needs HF_TOKEN with write access); empty = no push."))
    hub_private: bool = field(default=False, metadata=_help("Create the Hub repo as private."))
    include_corrections: bool = field(default=True, metadata=_help(
        "Add people's corrections from the chat (<runs_dir>/corrections.jsonl) to the training rows, "
        "de-duplicated against them and never in validation or test. Only those an admin accepted (or made)."))
    corrections_share: float = field(default=0.1, metadata=_help(
        "At most this share of a run's training rows are people's corrections (added or relabelled): the "
        "latest ones, so that a flood of corrections cannot outweigh the data (0 = none, 1 = no limit)."))
    drop_near_duplicates: bool = field(default=True, metadata=_help(
        "Also drop near-copies (a link, a mention, case, punctuation or a few letters apart): train rows that "
        "nearly copy a test tweet, and within train all but one of each group (finetune/neardup.py; seconds)."))

    def __post_init__(self):
        self.train_size = parse_size(self.train_size)
        self.test_size = parse_size(self.test_size)

    def validate(self) -> "TrainConfig":
        """Refuse settings that cannot work, with a message that says what to change."""
        problems = []
        for name in ("base_model", "dataset", "text_column", "label_column", "runs_dir"):
            if not str(getattr(self, name)).strip():
                problems.append(f"{name} must not be empty")
        if not 0 <= self.corrections_share <= 1:
            problems.append(f"corrections_share must be in [0, 1], got {self.corrections_share}")
        if not 0 <= self.validation_share < 1:
            problems.append(f"validation_share must be in [0, 1), got {self.validation_share}")
        if not 0 < self.epochs <= MAX_EPOCHS:
            problems.append(f"epochs must be > 0 and <= {MAX_EPOCHS}, got {self.epochs}")
        if not (self.time_budget_s == 0 or MIN_BUDGET_S <= self.time_budget_s <= MAX_BUDGET_S):
            problems.append(f"time_budget_s must be 0 (no budget) or between {MIN_BUDGET_S:g} and "
                            f"{MAX_BUDGET_S:g} seconds, got {self.time_budget_s}")
        if not 0 <= self.learning_rate < 1:
            problems.append(f"learning_rate must be in [0, 1) (0 = the recipe's), got {self.learning_rate}")
        if self.batch_size < 0:
            problems.append(f"batch_size must be >= 0 (0 = the recipe's), got {self.batch_size}")
        for name in ("grad_accum", "evals_per_epoch"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 8 <= self.max_length <= 4096:
            problems.append(f"max_length must be in [8, 4096], got {self.max_length}")
        for name in ("early_stopping_patience", "few_shot_k", "threads", "checkpoint_every_minutes", "train_offset",
                     "validation_size"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.few_shot_k > 32:
            problems.append(f"few_shot_k must be <= 32 (the prompt must fit), got {self.few_shot_k}")
        if self.lora_r < 1 or self.lora_alpha < 1:
            problems.append(f"lora_r and lora_alpha must be >= 1, got {self.lora_r} and {self.lora_alpha}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.freeze_layers < HALF:
            problems.append(f"freeze_layers must be >= 0, or -1 for the lower half, got {self.freeze_layers}")
        if self.freeze_layers > 0 and self.lora:
            problems.append("freeze_layers is for full fine-tuning: LoRA already keeps the base weights fixed")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.hub_model_id and self.hub_model_id.count("/") != 1:
            problems.append(f"hub_model_id must look like 'user/name', got {self.hub_model_id!r}")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    # --- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict, e.g. the app's form or a saved run; unknown keys are an error."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**{k: _coerce(names[k], v) for k, v in values.items() if v is not None})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def field_type(f: dataclasses.Field) -> type:
    """A config field's Python type (annotations are strings under `from __future__ import annotations`)."""
    return f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool}[f.type]


def _coerce(f: dataclasses.Field, value):
    """Turn a command-line or form value into the field's type."""
    parse = f.metadata.get("parse")
    if parse:
        return parse(value)
    kind = field_type(f)
    if kind is bool:
        if isinstance(value, str):
            if value.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if value.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ConfigError(f"{f.name}: {value!r} is not true/false")
        return bool(value)
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{f.name}: {value!r} is not a valid {kind.__name__}") from None


class ConfigParser(HfArgumentParser):
    """`transformers.HfArgumentParser` over `TrainConfig`: one `--option` (and its `--under_score` twin) per
    field with the field's help text and default, `--no-X` for the booleans that default to true. A field's
    own `parse` (sizes: a number or 'all') is the option's type, and a bad value is a `ConfigError` (one
    line for the user), not argparse's usage text and exit."""

    def __init__(self, **kwargs):
        super().__init__(TrainConfig, **kwargs)

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, f: dataclasses.Field):
        parse = f.metadata.get("parse")
        if parse:  # not an add_argument keyword: HfArgumentParser would pass it on
            f = copy.copy(f)
            f.metadata = MappingProxyType({k: v for k, v in f.metadata.items() if k != "parse"})
        HfArgumentParser._parse_dataclass_field(parser, f)
        if parse:
            parser._actions[-1].type = _option_type(parse)

    def error(self, message: str):
        raise ConfigError(message)

    def parse(self, argv=None) -> tuple[TrainConfig, argparse.Namespace]:
        """The validated config and the options that are not config fields."""
        cfg, *rest = self.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
        unknown = rest.pop()
        if unknown:
            raise ConfigError(f"unknown option(s) {' '.join(unknown)}: see --help")
        return cfg.validate(), rest[0] if rest else argparse.Namespace()


def _option_type(parse):
    def option(text):
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    option.__name__ = parse.__name__
    return option
