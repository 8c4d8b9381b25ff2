"""What a person decided in the label review, and what is still open.

    <runs_dir>/label_review.json   the ranked suspects of the last review (`finetune.review` writes it)
    <runs_dir>/exclusions.jsonl    one line per decision: "exclude" or "keep" (the latest one on a text wins)

A relabel is a correction (`finetune.corrections`): the next retrain trains the row with the person's
label. The next retrain leaves excluded rows out; its data report counts them, and the suspects nobody
has decided on yet.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from core.runs import read_dict

from . import corrections
from .data import fold

EXCLUSIONS = "exclusions.jsonl"
REVIEW_FILE = "label_review.json"
EXCLUDE, KEEP = "exclude", "keep"


def decide(runs_dir: str | Path, text: str, decision: str, reason: str = "") -> None:
    """Record that a person keeps (KEEP) or excludes (EXCLUDE) the training row `text`."""
    if decision not in (EXCLUDE, KEEP):
        raise ValueError(f"decision must be {EXCLUDE!r} or {KEEP!r}, not {decision!r}")
    path = Path(runs_dir) / EXCLUSIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"text": text, "decision": decision, "reason": reason,
                            "time": round(time.time(), 3)}, ensure_ascii=False) + "\n")


def exclude(runs_dir: str | Path, text: str, reason: str = "") -> int:
    """Exclude `text` from training; → how many texts are excluded now."""
    decide(runs_dir, text, EXCLUDE, reason)
    return len(excluded(runs_dir))


def decisions(runs_dir: str | Path) -> dict[str, str]:
    """{folded text: its latest decision}; a torn last line (a crash mid-write) is skipped."""
    path = Path(runs_dir) / EXCLUSIONS
    if not path.exists():
        return {}
    latest = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("text"), str):
            latest[fold(row["text"])] = row.get("decision", EXCLUDE)  # lines before decisions were exclusions
    return latest


def excluded(runs_dir: str | Path) -> set[str]:
    """The excluded texts, folded as the data's dedupe folds them."""
    return {text for text, decision in decisions(runs_dir).items() if decision == EXCLUDE}


def open_suspects(runs_dir: str | Path) -> list[dict]:
    """The last review's suspects (most doubtful first) that nobody has kept, excluded or relabelled yet."""
    decided = set(decisions(runs_dir)) | {fold(t) for t, _ in corrections.training_rows(runs_dir)}
    suspects = read_dict(Path(runs_dir) / REVIEW_FILE).get("suspects") or []
    return [s for s in suspects if isinstance(s, dict) and isinstance(s.get("text"), str)
            and fold(s["text"]) not in decided]
