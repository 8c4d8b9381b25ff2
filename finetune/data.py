"""Data: a Hub id or local file → cleaned, de-duplicated, leak-free, split, tokenised datasets, and
the report that counts every row dropped on the way.

    load_splits → clean → dedupe train → drop train rows leaking into test → subsets → validation
    → tokenize (no padding; batches are padded per batch by the collator)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from .config import TrainConfig

from core.labels import LABELS, label_id

from .events import data_report_text
from core.errors import UserError, first_line, is_offline_error, looks_like_path, offline_hint

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
TEST_SHARE_OF_SINGLE_FILE = 0.2


def fold(text: str) -> str:
    """The form in which two texts count as the same: lower-cased, whitespace folded."""
    return " ".join(text.lower().split())


# --- loading --------------------------------------------------------------------------------------
def _load_files(path: Path) -> DatasetDict:
    if path.is_file():
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise UserError(f"dataset file {path} has an unknown type: use .csv, .jsonl, .json or .parquet")
        kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        return load_dataset(fmt, data_files={"train": str(path)}, **kwargs)
    splits = {}
    for split in ("train", "test"):
        found = sorted(p for p in path.iterdir() if p.stem == split and p.suffix.lower() in FILE_FORMATS)
        if found:
            splits[split] = found[0]
    if "train" not in splits:
        return load_dataset(str(path))  # let datasets find its own layout (e.g. data/train-*.parquet)
    formats = {FILE_FORMATS[p.suffix.lower()] for p in splits.values()}
    if len(formats) > 1:
        raise UserError(f"dataset folder {path} mixes file types: give train and test the same type")
    return load_dataset(formats.pop(), data_files={k: str(v) for k, v in splits.items()})


def load_splits(dataset: str, seed: int = 42) -> DatasetDict:
    """A DatasetDict with `train` and `test`, from a local folder or file, or the Hub."""
    path = Path(dataset).expanduser()
    try:
        if path.exists():
            raw = _load_files(path)
        else:
            if looks_like_path(dataset):
                raise UserError(f"dataset {dataset!r} does not exist: check the path")
            raw = load_dataset(dataset)
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types for a missing Hub or a bad file
        if not path.exists() and is_offline_error(exc):
            raise UserError(offline_hint("dataset", dataset)) from None
        raise UserError(f"cannot load dataset {dataset!r}: {first_line(exc)}") from None
    if "train" not in raw:
        raise UserError(f"dataset {dataset!r} has no 'train' split (it has: {', '.join(raw)})")
    if "test" not in raw:  # a single file: carve a test split out of it, reproducibly
        parts = raw["train"].train_test_split(test_size=TEST_SHARE_OF_SINGLE_FILE, seed=seed)
        raw = DatasetDict(train=parts["train"], test=parts["test"])
    return DatasetDict(train=raw["train"], test=raw["test"])


# --- cleaning -------------------------------------------------------------------------------------
@dataclass
class DataReport:
    """Every row dropped and why, and what is left per split; written as the run's data_report.json."""
    dataset: str = ""
    rows_in: dict = field(default_factory=dict)
    dropped_empty: int = 0
    dropped_unknown_label: int = 0
    duplicates_removed: int = 0
    conflicting_labels: int = 0
    train_test_overlap: int = 0
    corrections_added: int = 0
    label_counts: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return data_report_text(self.to_dict())


def _rows(ds: Dataset, text_column: str, label_column: str) -> tuple[list, list]:
    missing = [c for c in (text_column, label_column) if c not in ds.column_names]
    if missing:
        raise UserError(f"the dataset has no column {', '.join(map(repr, missing))} (it has: "
                        f"{', '.join(ds.column_names)}); set --text-column / --label-column")
    return ds[text_column], ds[label_column]


def clean_split(texts, labels, report: DataReport, examples: list) -> list[tuple[str, int]]:
    """Drop empty texts and unknown labels; returns (text, label id) pairs in the original order."""
    rows = []
    for text, label in zip(texts, labels):
        if not isinstance(text, str) or not text.strip():
            report.dropped_empty += 1
            continue
        lid = label_id(label)
        if lid is None:
            report.dropped_unknown_label += 1
            if len(examples) < 5:
                examples.append(repr(label))
            continue
        rows.append((text, lid))
    return rows


def dedupe(rows: list[tuple[str, int]], report: DataReport) -> list[tuple[str, int]]:
    """Keep the first of texts that fold to the same form. `conflicting_labels` counts the texts that
    came with more than one label (the first one's label is kept)."""
    labels: dict[str, set] = {}
    kept = []
    for text, label in rows:
        key = fold(text)
        if key in labels:
            report.duplicates_removed += 1
            labels[key].add(label)
            continue
        labels[key] = {label}
        kept.append((text, label))
    report.conflicting_labels += sum(len(v) > 1 for v in labels.values())
    return kept


def _subset(rows: list, size: int, seed: int) -> list:
    """The recipe's `shuffle(seed).select(range(size))`, on plain lists; 0 = all rows (shuffled)."""
    import random
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if size:
        order = order[:size]
    return [rows[i] for i in order]


def _label_counts(rows) -> dict:
    counts = {name: 0 for name in LABELS}
    for _, label in rows:
        counts[LABELS[label]] += 1
    return counts


def _to_dataset(rows) -> Dataset:
    return Dataset.from_dict({"text": [t for t, _ in rows], "label": [l for _, l in rows]})


def prepare(cfg: TrainConfig, extra_train: list[tuple[str, int]] | None = None) -> tuple[DatasetDict, DataReport]:
    """Load, clean and split per the config: `train`, `validation`, `test` (text, label) + the report.

    `extra_train` (e.g. people's corrections) joins the training rows only: it is de-duplicated against
    them and never lands in validation or test.
    """
    raw = load_splits(cfg.dataset, cfg.seed)
    report = DataReport(dataset=cfg.dataset, rows_in={s: len(raw[s]) for s in ("train", "test")})
    bad_labels: list = []
    train_rows = clean_split(*_rows(raw["train"], cfg.text_column, cfg.label_column), report, bad_labels)
    test_rows = clean_split(*_rows(raw["test"], cfg.text_column, cfg.label_column), report, bad_labels)
    if bad_labels:
        report.examples["unknown_labels"] = bad_labels
    # leakage: nothing we train on may also be in the test split (all of it, not only our subset)
    test_keys = {fold(t) for t, _ in test_rows}
    before = len(train_rows)
    train_rows = [r for r in train_rows if fold(r[0]) not in test_keys]
    report.train_test_overlap = before - len(train_rows)
    # then duplicates, so that validation (carved from what is left) shares no text with train either
    train_rows = dedupe(train_rows, report)

    test = _subset(test_rows, cfg.test_size, cfg.seed)
    pool = _subset(train_rows, 0, cfg.seed)
    n_train = min(cfg.train_size, len(pool)) if cfg.train_size else len(pool)
    n_val = round(cfg.validation_share * n_train)
    if cfg.train_size == 0 or n_train + n_val > len(pool):  # the whole split: hold validation out of it
        n_val = round(cfg.validation_share * len(pool))
        n_train = min(n_train, len(pool) - n_val)
    validation, train = pool[:n_val], pool[n_val:n_val + n_train]

    if extra_train:
        seen = {fold(t) for t, _ in train} | {fold(t) for t, _ in validation} | test_keys
        added = []
        for text, label in extra_train:
            if fold(text) not in seen:
                seen.add(fold(text))
                added.append((text, label))
        report.corrections_added = len(added)
        train = train + added

    if not train:
        raise UserError(f"dataset {cfg.dataset!r} has no usable training rows after cleaning "
                        f"({report.summary()}): check the text and label columns")
    if not test:
        raise UserError(f"dataset {cfg.dataset!r} has no usable test rows after cleaning")
    splits = {"train": train, "validation": validation, "test": test}
    report.label_counts = {name: _label_counts(rows) for name, rows in splits.items()}
    report.sizes = {name: len(rows) for name, rows in splits.items()}
    return DatasetDict({name: _to_dataset(rows) for name, rows in splits.items()}), report


# --- tokenising ------------------------------------------------------------------------------------
def tokenize(splits: DatasetDict, tokenizer, max_length: int) -> DatasetDict:
    """Token ids without padding (the collator pads each batch), plus each row's length for grouping."""
    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return splits.map(encode, batched=True, remove_columns=["text"], desc="tokenising")
