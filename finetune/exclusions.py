"""Rows a person took out of the training data (from the label review): <runs_dir>/exclusions.jsonl.
The next retrain's data leaves them out, and its data report counts them."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .data import fold

EXCLUSIONS = "exclusions.jsonl"


def exclude(runs_dir: str | Path, text: str, reason: str = "") -> int:
    """Add `text` to the exclusion list; → how many texts it now holds."""
    path = Path(runs_dir) / EXCLUSIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"text": text, "reason": reason, "time": round(time.time(), 3)}) + "\n")
    return len(excluded(runs_dir))


def excluded(runs_dir: str | Path) -> set[str]:
    """The excluded texts, folded as the data's dedupe folds them."""
    path = Path(runs_dir) / EXCLUSIONS
    if not path.exists():
        return set()
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line after a crash: the others still count
    return {fold(r["text"]) for r in rows if isinstance(r, dict) and isinstance(r.get("text"), str)}
