"""The Train tab's data views: a dataset's preview before training, and the label review (likely label
errors, each kept, relabelled or excluded by a person). Plain values in and out, as in `views`; the
work itself is `finetune.data.preview`, `finetune.review` and `finetune.exclusions`."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.errors import UserError
from core.labels import LABELS
from finetune import corrections, data, exclusions, review
from finetune.config import TrainConfig
from finetune.events import counts

from .backend import Backend
from .limits import HUB_PREVIEW_ROWS, MAX_TRAIN_UPLOAD_BYTES, PREVIEW_MAX_ROWS, REVIEW_MAX_ROWS
from .roles import Caller
from .views import as_text

SUSPECTS_SHOWN = 20
SUSPECT_COLUMNS = ["#", "tweet", "given", "suggested", "score"]
LIMITS = (f"CSV, TSV, JSONL or Parquet, up to {MAX_TRAIN_UPLOAD_BYTES // 1024**2} MB; UTF-8, UTF-16 or "
          f"Windows-1252/Latin-1 text. Labels: 0/1/2, negative/neutral/positive in any case, neg/neu/pos or "
          f"-1/0/1. A single file needs at least {data.MIN_ROWS_SINGLE_FILE} rows (hundreds to learn anything): "
          f"{data.TEST_SHARE_OF_SINGLE_FILE:.0%} of it is held out for the test, seeded and stratified by label.")


# --- the preview ------------------------------------------------------------------------------------
def preview(backend: Backend, caller: Caller, dataset: str, text_column: str = "", label_column: str = "") -> dict:
    """`finetune.data.preview` of a dataset the web may name, as the next retrain would read it (people's
    exclusions left out; the first PREVIEW_MAX_ROWS rows of each split); a UserError says what is wrong
    with it. Someone who is not an admin never borrows the server's token: a Hub dataset is streamed
    without it (its first HUB_PREVIEW_ROWS rows), and a local file is the app's own dataset or nothing."""
    dataset = backend.web_settings({"dataset": dataset}).get("dataset") or backend.defaults.dataset
    raw = None
    if not caller.admin and Path(dataset).expanduser().exists():
        if dataset != backend.defaults.dataset:
            raise UserError(backend.paths.refusal("dataset"))
    elif not caller.admin:
        raw = data.hub_head(dataset, HUB_PREVIEW_ROWS)
    p = data.preview(dataset, text_column or TrainConfig.text_column, label_column or TrainConfig.label_column,
                     seed=backend.defaults.seed, drop_near_duplicates=backend.defaults.drop_near_duplicates,
                     excluded=exclusions.excluded(backend.runs_dir), raw=raw, max_rows=PREVIEW_MAX_ROWS)
    return {**p, "streamed": raw is not None}


def preview_md(p: dict) -> str:
    name = Path(p["dataset"]).name if Path(p["dataset"]).exists() else p["dataset"]
    encoding = f", {p['encoding']}" if p.get("encoding") else ""
    part = f" (of the first {p['read']:,} rows read)" if p["read"] < p["rows"] else ""
    rows = (f"its first {p['rows']:,} rows, streamed from the Hub" if p.get("streamed") else f"{p['rows']:,} rows")
    return (f"**{as_text(name)}**{encoding}: {rows} ({as_text(counts(p['splits']))}); reading "
            f"text from `{as_text(p['text_column'])}` and labels from `{as_text(p['label_column'])}`.  \n"
            f"**Class balance**{part}: {as_text(counts(p['label_counts']))}.  \n"
            f"**Data report**{part}: {as_text(p['summary'], 3000)}")


def preview_table(p: dict) -> pd.DataFrame:
    return pd.DataFrame(p["head"], columns=p["columns"])


# --- the label review -------------------------------------------------------------------------------
def review_config(backend: Backend, settings: dict) -> TrainConfig:
    """The settings of the next retrain (the form's values over the defaults), whose rows are reviewed."""
    cfg = backend.config({**settings, "include_corrections": False})
    if not cfg.train_size or cfg.train_size > REVIEW_MAX_ROWS:
        cfg.train_size = REVIEW_MAX_ROWS
    return cfg.validate()


def run_review(backend: Backend, settings: dict) -> str:
    """Review the training rows of the next retrain with the base model (`finetune.review`); the ranked
    list goes to the runs folder, where the data report and this tab read it. → a summary line."""
    cfg = review_config(backend, settings)
    texts, labels = review.training_rows(cfg)
    found, summary = review.review(texts, labels, cfg.base_model, backend.runs_dir / "_cache", cfg.seed)
    review.save(found, {**summary, "dataset": cfg.dataset}, backend.runs_dir / exclusions.REVIEW_FILE)
    return (f"{summary['flagged']} of {summary['rows']:,} training tweets look mislabelled (out-of-fold accuracy "
            f"{summary['out_of_fold_accuracy']:.0%} with {as_text(summary['embedder'])}'s embeddings, "
            f"{summary['seconds']:.0f} s).")


def suspects_table(runs_dir: Path) -> pd.DataFrame:
    rows = exclusions.open_suspects(runs_dir)[:SUSPECTS_SHOWN]
    return pd.DataFrame([[i + 1, s["text"], s.get("given"), s.get("suggested"), s.get("score")]
                         for i, s in enumerate(rows)], columns=SUSPECT_COLUMNS)


def suspect_choices(runs_dir: Path) -> list[tuple[str, str]]:
    """(what the dropdown shows, the tweet) per open suspect, in the table's order."""
    return [(f"{i + 1}. {s.get('given')} → {s.get('suggested')}?  {' '.join(s['text'].split())[:70]}", s["text"])
            for i, s in enumerate(exclusions.open_suspects(runs_dir)[:SUSPECTS_SHOWN])]


def open_suspect(runs_dir: Path, text: str) -> dict | None:
    """The open suspect whose tweet is `text`, or None (never listed, or decided meanwhile)."""
    return next((s for s in exclusions.open_suspects(runs_dir) if s["text"] == text), None)


def suggested(runs_dir: Path, text: str) -> str | None:
    return (open_suspect(runs_dir, text) or {}).get("suggested")


def decide(backend: Backend, text: str, action: str, label: str | None = None) -> str:
    """A person's decision on one suspect: "keep" its label, "relabel" it as `label` (a correction: the next
    retrain trains it so) or "exclude" it from training. → what happens next, in words."""
    suspect = open_suspect(backend.runs_dir, text)
    if suspect is None:
        raise UserError("pick a tweet from the list first (it may have been decided already)")
    if action == "relabel":
        if label not in LABELS:
            raise UserError("pick the right label first")
        if label == suspect["given"]:
            raise UserError(f"{label} is its label already: press Keep instead, or pick another label")
        corrections.add(backend.runs_dir, text, suspect["given"], label, "label review")
        return f"relabelled as {label}: the next retrain trains this tweet so"
    if action not in (exclusions.KEEP, exclusions.EXCLUDE):
        raise UserError(f"unknown action {action!r}")
    exclusions.decide(backend.runs_dir, text, action, "label review")
    return ("excluded: the next retrain leaves this tweet out" if action == exclusions.EXCLUDE
            else f"kept as {suspect['given']}")


# --- people's corrections, for an admin to accept or reject -------------------------------------------
PENDING_SHOWN = 200
PENDING_COLUMNS = ["made", "tweet", "model said", "person says", "by"]


def pending_table(runs_dir: Path) -> pd.DataFrame:
    """The corrections waiting for a decision, oldest first (at most PENDING_SHOWN)."""
    return pd.DataFrame([[c.time[:16].replace("T", " "), c.text, c.model_label, c.corrected_label, c.by or "anonymous"]
                         for c in corrections.pending(runs_dir)[:PENDING_SHOWN]], columns=PENDING_COLUMNS)


def pending_choices(runs_dir: Path) -> list[tuple[str, str]]:
    """(what the picker shows, the correction's id) per pending correction, in the table's order."""
    return [(f"{c.model_label} → {c.corrected_label}:  {' '.join(c.text.split())[:70]}", c.id)
            for c in corrections.pending(runs_dir)[:PENDING_SHOWN]]


def decide_corrections(backend: Backend, caller: Caller, ids: list[str], decision: str) -> str:
    """Accept or reject the picked corrections (an admin's decision, in one line of the file)."""
    if not ids:
        raise UserError("pick one or more corrections first (or press Pick all)")
    n = corrections.decide(backend.runs_dir, list(ids), decision, by=caller.user)
    if decision == corrections.ACCEPTED:
        return f"accepted {n}: the next retrain learns from them"
    return f"rejected {n}: no retrain uses them"
