"""Data: a Hub id or local file → cleaned, de-duplicated, leak-free, split, tokenised datasets, and
the report that counts every row dropped on the way.

    load_splits → clean → dedupe train → drop train rows leaking into test → subsets → validation
    → tokenize (no padding; batches are padded per batch by the collator)
"""
from __future__ import annotations

import copy
import dataclasses
import random
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import codecs

import charset_normalizer
from datasets import Dataset, DatasetDict, load_dataset
from sklearn.model_selection import train_test_split

from core.errors import UserError, first_line, is_offline_error, looks_like_path, offline_hint
from core.labels import LABELS, label_id, label_mapper

from .config import TrainConfig
from . import neardup
from .events import data_report_text

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
TEST_SHARE_OF_SINGLE_FILE = 0.2
MIN_ROWS_SINGLE_FILE = 10  # fewer: no test and validation tweets can be held out of one file
MAX_FILE_MB = 200          # a dataset file larger than this is refused (the Train tab says so)
ENCODINGS = ["utf_8", "utf_16", "utf_32", "cp1252", "latin_1"]  # what charset-normalizer may guess
BOMS = [(codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]  # UTF-32 LE's starts like UTF-16 LE's
TEXT_NAMES = ("text", "tweet", "content", "message", "sentence", "review", "body", "post", "comment")
LABEL_NAMES = ("label", "sentiment", "labels", "class", "polarity", "target", "category", "emotion")


def fold(text: str) -> str:
    """The form in which two texts count as the same: lower-cased, whitespace folded."""
    return " ".join(text.lower().split())


# --- loading --------------------------------------------------------------------------------------
def text_encoding(path: Path) -> str:
    """The encoding of a text file: UTF-8 (with or without BOM), UTF-16/32 or Windows-1252/Latin-1
    (charset-normalizer's guess among those); a binary file, or text in none of them, is refused."""
    raw = path.read_bytes()
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            return encoding
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(raw, cp_isolation=ENCODINGS).best()
    if best is None or (b"\x00" in raw[:4096] and not best.encoding.startswith(("utf_16", "utf_32"))):
        raise UserError(f"{path.name} is not a text file in UTF-8, UTF-16 or Windows-1252/Latin-1 (a binary "
                        f"file?): save it as CSV, TSV or JSONL text, or as Parquet")
    return best.encoding


def _load_file(path: Path, split: str, workdir: Path) -> Dataset:
    """One file as a Dataset; a text file that is not plain UTF-8 is read through a UTF-8 copy."""
    suffix = path.suffix.lower()
    if path.stat().st_size > MAX_FILE_MB * 2**20:
        raise UserError(f"{path.name} is larger than {MAX_FILE_MB} MB: use a smaller sample of it")
    if FILE_FORMATS[suffix] != "parquet":
        encoding = text_encoding(path)
        if encoding != "utf-8":
            copy = workdir / f"{split}{suffix}"
            copy.write_text(path.read_text(encoding=encoding), encoding="utf-8")
            path = copy
    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    return load_dataset(FILE_FORMATS[suffix], data_files={split: str(path)}, **kwargs)[split]


def _load_files(path: Path) -> DatasetDict:
    if path.is_file():
        if path.suffix.lower() not in FILE_FORMATS:
            raise UserError(f"dataset file {path} has an unknown type: use .csv, .tsv, .jsonl, .json or .parquet")
        with tempfile.TemporaryDirectory() as workdir:
            return DatasetDict(train=_load_file(path, "train", Path(workdir)))
    splits = {}
    for split in ("train", "test"):
        found = sorted(p for p in path.iterdir() if p.stem == split and p.suffix.lower() in FILE_FORMATS)
        if found:
            splits[split] = found[0]
    if "train" not in splits:
        return load_dataset(str(path))  # let datasets find its own layout (e.g. data/train-*.parquet)
    with tempfile.TemporaryDirectory() as workdir:
        return DatasetDict({split: _load_file(p, split, Path(workdir)) for split, p in splits.items()})


def load_raw(dataset: str) -> DatasetDict:
    """The dataset's splits as its files have them (a single file: `train` only), from a local folder
    or file, or the Hub; every failure a UserError in words."""
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
    return raw


def hub_head(dataset: str, rows: int) -> DatasetDict:
    """The first `rows` rows of a public Hub dataset's train and test splits, streamed without any token
    (nothing else is downloaded): what someone who may not use the server's token can see of it. A
    private, gated or missing dataset gets one refusal: from here they look the same."""
    try:
        streamed = load_dataset(dataset, streaming=True, token=False)
        return DatasetDict({name: Dataset.from_list(list(islice(streamed[name], rows)))
                            for name in ("train", "test") if name in streamed})
    except ConnectionError as exc:  # datasets' word for an unreachable Hub (offline mode included)
        if is_offline_error(exc):
            raise UserError(offline_hint("dataset", dataset)) from None
        raise
    except Exception:  # DatasetNotFoundError (private, gated, missing), a format it cannot stream, ...
        raise UserError(f"dataset {dataset!r} cannot be previewed: only a public Hub dataset can be, read "
                        f"without the server's token (an admin may preview any)") from None


def load_splits(dataset: str, seed: int = 42, label_column: str = "label",
                raw: DatasetDict | None = None) -> DatasetDict:
    """A DatasetDict with `train` and `test`, from a local folder or file, or the Hub (or `raw`, what
    `load_raw(dataset)` gave). A single file's test split is held out of it, seeded and stratified by its
    label column (`label_column` or guessed)."""
    raw = raw if raw is not None else load_raw(dataset)
    if "test" not in raw:  # a single file: carve a test split out of it, reproducibly
        train, test = _hold_out(raw["train"], dataset, seed, label_column)
        raw = DatasetDict(train=train, test=test)
    return DatasetDict(train=raw["train"], test=raw["test"])


def _hold_out(ds: Dataset, dataset: str, seed: int, label_column: str) -> tuple[Dataset, Dataset]:
    """TEST_SHARE_OF_SINGLE_FILE of a single file's rows as its test split, stratified by label."""
    if len(ds) < MIN_ROWS_SINGLE_FILE:
        raise UserError(f"{Path(dataset).name} has {len(ds)} row(s): one file needs at least "
                        f"{MIN_ROWS_SINGLE_FILE} to hold test and validation tweets out of it (hundreds to "
                        f"learn anything); add rows, or give a folder with train and test files")
    column = label_column if label_column in ds.column_names else guess_column(ds.column_names, LABEL_NAMES)
    labels = [str(v) for v in ds[column][:]] if column else None
    train_idx, test_idx = _split_indices(len(ds), TEST_SHARE_OF_SINGLE_FILE, seed, labels)
    return ds.select(train_idx), ds.select(test_idx)


def _split_indices(n: int, share: float, seed: int, strata: list | None) -> tuple[list[int], list[int]]:
    """(rest, held out) row indices, shuffled by `seed`; stratified by `strata` where every stratum
    has two rows or more and the held-out part can hold one of each, else a plain shuffle."""
    held = max(1, round(share * n))
    counts = Counter(strata or [])
    if not strata or min(counts.values()) < 2 or held < len(counts) or n - held < len(counts):
        strata = None
    rest, out = train_test_split(list(range(n)), test_size=held, random_state=seed, stratify=strata)
    return rest, out


def guess_column(columns: list[str], names: tuple[str, ...]) -> str | None:
    """The first of `names` among `columns` (any case), else None."""
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[name] for name in names if name in lower), None)


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
    relabelled_by_corrections: int = 0  # rows whose label a person corrected (in Classify or the label review)
    corrections_left_out: int = 0       # accepted corrections over the run's corrections_share (the oldest)
    corrections_pending: int = 0        # people's corrections waiting for an admin: not trained on
    corrections_accepted: int = 0
    corrections_rejected: int = 0
    excluded_by_review: int = 0         # rows a person excluded in the label review (finetune/exclusions.py)
    suspected_label_errors: int = 0     # training rows the label review flagged that nobody decided on yet
    near_test_copies: int = 0           # train rows that nearly copy a test tweet (finetune/neardup.py)
    near_duplicates_removed: int = 0    # near-copies within train, all but one of each group
    near_duplicate_conflicts: int = 0   # near-duplicate groups whose rows came with different labels
    label_counts: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    train_window: dict = field(default_factory=dict)   # where the training tweets lie in the pool (lineage)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return data_report_text(self.to_dict())


def resolve_columns(columns: list[str], text_column: str, label_column: str) -> tuple[str, str]:
    """The text and label columns to read: the configured ones; where one left at its default is
    missing, the file's column with a usual name (tweet, content, ...; sentiment, class, ...)."""
    chosen = []
    for configured, default, names in ((text_column, TrainConfig.text_column, TEXT_NAMES),
                                       (label_column, TrainConfig.label_column, LABEL_NAMES)):
        guess = guess_column(columns, names) if configured == default else None
        chosen.append(configured if configured in columns else guess or configured)
    missing = [c for c in chosen if c not in columns]
    if missing:
        raise UserError(f"the dataset has no column {', '.join(map(repr, missing))} (it has: "
                        f"{', '.join(columns)}); set --text-column / --label-column")
    return chosen[0], chosen[1]


def _rows(ds: Dataset, text_column: str, label_column: str) -> tuple[list, list]:
    text_column, label_column = resolve_columns(ds.column_names, text_column, label_column)
    return ds[text_column][:], ds[label_column][:]  # lists in one read (a Column iterated reads row by row)


def clean_split(texts, labels, report: DataReport, examples: list, to_id=label_id) -> list[tuple[str, int]]:
    """Drop empty texts and unknown labels; returns (text, label id) pairs in the original order."""
    rows = []
    for text, label in zip(texts, labels):
        if not isinstance(text, str) or not text.strip():
            report.dropped_empty += 1
            continue
        lid = to_id(label)
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


def split_rows(split: Dataset) -> list[tuple[str, int]]:
    """A split's (text, label) pairs: `_to_dataset` the other way."""
    return list(zip(split["text"], split["label"]))


def clean_train(train_rows: list, test_rows: list, report: DataReport, near: bool = True) -> list[tuple[str, int]]:
    """The train rows a run may use: none also in the test split (all of it, not only our subset), no
    duplicates (so that validation, carved from what is left, shares no text with train either); with
    `near`, no near-copies of a test tweet and one row per near-duplicate group."""
    test_keys = {fold(t) for t, _ in test_rows}
    before = len(train_rows)
    train_rows = [r for r in train_rows if fold(r[0]) not in test_keys]
    report.train_test_overlap = before - len(train_rows)
    train_rows = dedupe(train_rows, report)
    return drop_near_copies(train_rows, test_rows, report) if near else train_rows


def drop_near_copies(train_rows: list, test_rows: list, report: DataReport) -> list[tuple[str, int]]:
    """Train rows that nearly copy a test tweet go; of each near-duplicate group within train one row
    stays (the majority label's; a group people disagree on goes whole). A few examples go in the report."""
    texts = [t for t, _ in train_rows]
    groups, copies = neardup.find(texts, [t for t, _ in test_rows])
    drop, conflicts = neardup.resolve(groups, [l for _, l in train_rows])
    report.near_test_copies, report.near_duplicates_removed = len(copies), len(drop - set(copies))
    report.near_duplicate_conflicts = conflicts
    report.examples["near_test_copies"] = [[texts[a], test_rows[b][0]] for a, b in list(copies.items())[:3]]
    report.examples["near_duplicates"] = [[texts[i] for i in g[:3]] for g in groups[:3]]
    return [r for i, r in enumerate(train_rows) if i not in drop and i not in copies]


def add_corrections(train: list, validation: list, extra_train: list, test_keys: set[str],
                    report: DataReport) -> tuple[list, list]:
    """People's labels win: a corrected text already among the train or validation rows takes the
    corrected label (`relabelled_by_corrections`); the others join the training rows (`corrections_added`),
    never validation or test. A text of the test split stays out: the test is the same for every run."""
    latest: dict[str, tuple[str, int]] = {}
    for text, label in extra_train:  # the first spelling of a text, its latest label
        latest[fold(text)] = (latest.get(fold(text), (text,))[0], label)
    relabelled = 0
    for rows in (train, validation):
        for i, (text, label) in enumerate(rows):
            if (corrected := latest.pop(fold(text), None)) is not None:
                relabelled += corrected[1] != label
                rows[i] = (text, corrected[1])
    added = [row for key, row in latest.items() if key not in test_keys]
    report.relabelled_by_corrections, report.corrections_added = relabelled, len(added)
    return train + added, validation


PROMPT_ROWS = 2000  # rows of the pool the base model's few-shot examples and calibration tweets come from


@dataclass
class Cleaned:
    """The cleaned rows of a dataset before the split: the shuffled train pool, the test subset, people's
    corrections still to apply, the label review's decisions, and the report so far (`split` finishes it)."""
    pool: list
    test: list
    test_keys: set
    extra_train: list       # people's corrections (add_corrections)
    excluded: set           # folded texts excluded in the label review: left out of the rows picked
    suspected: set          # folded texts the label review flagged and nobody has decided on: counted
    report: DataReport

    def max_train(self, cfg: TrainConfig) -> int:
        """Training rows when every row trains: the pool less the validation held out of it."""
        return _sizes(dataclasses.replace(cfg, train_size=0), len(self.pool))[0]

    def prompt_rows(self, n: int = PROMPT_ROWS) -> list:
        """The rows the base model's prompts take their examples and calibration tweets from: the first
        `n` of the shuffled pool, less the excluded. They are the same whatever the train size, so the
        "before" of runs of different sizes is one measurement, cached (finetune.baseline)."""
        return [r for r in self.pool[:n] if fold(r[0]) not in self.excluded]


def clean(cfg: TrainConfig, extra_train: list[tuple[str, int]] | None = None, excluded: set[str] | None = None,
          suspected: set[str] | None = None, raw: DatasetDict | None = None) -> Cleaned:
    """Load (unless `raw`, the dataset's files as `load_raw` read them, is given) and clean per the
    config: every step of `prepare` but the split."""
    raw = load_splits(cfg.dataset, cfg.seed, cfg.label_column, raw)
    report = DataReport(dataset=cfg.dataset, rows_in={s: len(raw[s]) for s in ("train", "test")})
    bad_labels: list = []
    train_cols, test_cols = (_rows(raw[s], cfg.text_column, cfg.label_column) for s in ("train", "test"))
    label_column = resolve_columns(raw["train"].column_names, cfg.text_column, cfg.label_column)[1]
    to_id = label_mapper(list(train_cols[1]) + list(test_cols[1]), label_column)
    train_rows = clean_split(*train_cols, report, bad_labels, to_id)
    test_rows = clean_split(*test_cols, report, bad_labels, to_id)
    if bad_labels:
        report.examples["unknown_labels"] = bad_labels
    test_keys = {fold(t) for t, _ in test_rows}
    train_rows = clean_train(train_rows, test_rows, report, cfg.drop_near_duplicates)
    return Cleaned(_subset(train_rows, 0, cfg.seed), _subset(test_rows, cfg.test_size, cfg.seed), test_keys,
                   list(extra_train or []), set(excluded or ()), set(suspected or ()), report)


def _sizes(cfg: TrainConfig, pool: int) -> tuple[int, int]:
    """(training, validation) tweets of a run: train_size (0 = all) and its validation share, or the
    validation size its chain keeps (validation_size); validation is held out of the pool first."""
    n_train = min(cfg.train_size, pool) if cfg.train_size else pool
    n_val = cfg.validation_size or round(cfg.validation_share * n_train)
    if cfg.validation_size:
        n_val = min(n_val, pool - 1)
    elif cfg.train_size == 0 or n_train + n_val > pool:  # the whole split: hold validation out of it
        n_val = round(cfg.validation_share * pool)
    return min(n_train, pool - n_val), n_val


def window(rest: list[int], offset: int, n: int) -> tuple[list[int], dict]:
    """The n rows of `rest` after the first `offset` a chain drew before (round again from the start once
    every row has been drawn), and where they lie: offset, end, pool, pass (1 = the first pass)."""
    size = len(rest)
    if not size:
        return [], {"offset": offset, "end": offset, "pool": 0, "pass": 1, "wrapped": False}
    start = offset % size
    picked = [rest[(start + i) % size] for i in range(min(n, size))]
    return picked, {"offset": offset, "end": offset + len(picked), "pool": size, "pass": offset // size + 1,
                    "wrapped": start + len(picked) > size}


def split(cfg: TrainConfig, cleaned: Cleaned) -> tuple[DatasetDict, DataReport]:
    """`train`, `validation`, `test` (text, label) per cfg.train_size and validation_share, + the report.

    `extra_train` (people's corrections) relabels the rows it names and joins the training rows
    (`add_corrections`). `excluded` (folded texts a person took out in the label review) never trains;
    `suspected` (folded texts the label review flagged and nobody has decided on yet) is counted."""
    pool, test, report = cleaned.pool, cleaned.test, copy.deepcopy(cleaned.report)
    n_train, n_val = _sizes(cfg, len(pool))
    rest, held = _split_indices(len(pool), n_val / len(pool), cfg.seed, [l for _, l in pool]) if n_val else (
        list(range(len(pool))), [])
    picked, report.train_window = window(rest, cfg.train_offset, n_train)
    validation, train = [pool[i] for i in held], [pool[i] for i in picked]
    if cleaned.excluded:  # left out of the rows picked, so that the rest of the run's data stays the same
        kept = [[r for r in rows if fold(r[0]) not in cleaned.excluded] for rows in (train, validation)]
        report.excluded_by_review = len(train) + len(validation) - sum(map(len, kept))
        train, validation = kept

    if cleaned.extra_train:
        allowed = int(cfg.corrections_share * len(train))  # the latest ones, at most this many
        extra = cleaned.extra_train[-allowed:] if allowed else []
        report.corrections_left_out = len(cleaned.extra_train) - len(extra)
        train, validation = add_corrections(train, validation, extra, cleaned.test_keys, report)
    if cleaned.suspected:
        report.suspected_label_errors = sum(fold(t) in cleaned.suspected for t, _ in train)

    if not train:
        raise UserError(f"dataset {cfg.dataset!r} has no usable training rows after cleaning "
                        f"({report.summary()}): check the text and label columns")
    if not test:
        raise UserError(f"dataset {cfg.dataset!r} has no usable test rows after cleaning")
    splits = {"train": train, "validation": validation, "test": test}
    report.label_counts = {name: _label_counts(rows) for name, rows in splits.items()}
    report.sizes = {name: len(rows) for name, rows in splits.items()}
    return DatasetDict({name: _to_dataset(rows) for name, rows in splits.items()}), report


def prepare(cfg: TrainConfig, extra_train: list[tuple[str, int]] | None = None,
            excluded: set[str] | None = None, suspected: set[str] | None = None) -> tuple[DatasetDict, DataReport]:
    """Load, clean and split per the config: `train`, `validation`, `test` (text, label) + the report
    (`clean`, then `split`, which says what `extra_train`, `excluded` and `suspected` do)."""
    return split(cfg, clean(cfg, extra_train, excluded, suspected))


# --- preview --------------------------------------------------------------------------------------
def preview(dataset: str, text_column: str = TrainConfig.text_column, label_column: str = TrainConfig.label_column,
            rows: int = 5, seed: int = 42, drop_near_duplicates: bool = True, excluded: set[str] | None = None,
            raw: DatasetDict | None = None, max_rows: int | None = None) -> dict:
    """What the Train tab shows before training: the first rows, the row count, the columns, the text
    and label columns that will be read (guessed by name unless given), the class balance, its encoding,
    and the data report (empty rows, duplicates, conflicts, overlap with test). `raw`: the dataset as
    read already (e.g. `hub_head`); `max_rows`: the balance and the report are of the first rows of each
    split only (`read` says how many), so that a preview's work is bounded whatever the file."""
    raw = raw if raw is not None else load_raw(dataset)
    sizes = {name: len(split) for name, split in raw.items()}
    if max_rows is not None:
        raw = DatasetDict({name: split.select(range(min(max_rows, len(split)))) for name, split in raw.items()})
    first = raw["train"]
    text, label = resolve_columns(first.column_names, text_column, label_column)
    values = [v for split in raw.values() for v in split[label][:]]
    to_id = label_mapper(values, label)
    balance = Counter(LABELS[i] if (i := to_id(v)) is not None else "unknown" for v in values)
    cfg = TrainConfig(dataset=dataset, text_column=text, label_column=label, train_size=0, test_size=0, seed=seed,
                      drop_near_duplicates=drop_near_duplicates)
    _, report = split(cfg, clean(cfg, excluded=excluded, raw=raw))  # the files read once
    path = Path(dataset).expanduser()
    text_file = path.is_file() and FILE_FORMATS.get(path.suffix.lower()) not in (None, "parquet")
    head = first.select(range(min(rows, len(first)))).to_list()
    return {"dataset": dataset, "rows": sum(sizes.values()), "read": sum(len(s) for s in raw.values()),
            "splits": sizes, "columns": first.column_names,
            "text_column": text, "label_column": label, "encoding": text_encoding(path) if text_file else None,
            "head": [{k: str(v)[:200] for k, v in row.items()} for row in head],
            "label_counts": {name: balance[name] for name in (*LABELS, "unknown") if name in LABELS or balance[name]},
            "report": report.to_dict(), "summary": report.summary(),
            "limits": f"files up to {MAX_FILE_MB} MB; a single file needs {MIN_ROWS_SINGLE_FILE}+ rows"}


# --- tokenising ------------------------------------------------------------------------------------
def tokenize(splits: DatasetDict, tokenizer, max_length: int) -> DatasetDict:
    """Token ids without padding (the collator pads each batch), plus each row's length for grouping."""
    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return splits.map(encode, batched=True, remove_columns=["text"], desc="tokenising")
