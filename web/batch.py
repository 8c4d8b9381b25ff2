"""A file of tweets in, a CSV of predictions out (the Classify tab's "Classify a file of tweets")."""
from __future__ import annotations

import io
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from core.errors import UserError, first_line
from core.labels import LABELS

from .limits import MAX_BATCH_ROWS, MAX_TWEET_CHARS, MAX_UPLOAD_BYTES

TEXT_COLUMNS = ("text", "tweet", "tweets", "content", "message")  # a CSV's tweets column, by header
OUTPUTS = Path(tempfile.gettempdir()) / "tweet-sentiment-predictions"  # Gradio serves a copy from its cache
OUTPUTS_KEPT_S = 3600  # older outputs go at the next file classified


def read_tweets(path: Path) -> list[str]:
    """Tweets from a CSV (its `text` column; a one-column CSV may have no header) or a text file
    (one per line), UTF-8."""
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise UserError(f"the file is over {MAX_UPLOAD_BYTES // 1024**2} MB: split it")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError("the file is not UTF-8 text: save it as UTF-8 (CSV or plain text)") from None
    texts = _csv_texts(content) if path.suffix.lower() == ".csv" else [l for l in content.splitlines() if l.strip()]
    if not texts:
        raise UserError("the file holds no tweets: give one tweet per line (or per CSV row)")
    if len(texts) > MAX_BATCH_ROWS:
        raise UserError(f"the file has {len(texts):,} tweets; the limit is {MAX_BATCH_ROWS:,}: split it")
    return texts


def _csv_texts(content: str) -> list[str]:
    try:
        table = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot read the CSV ({first_line(exc)}): give one tweet per row") from None
    columns = {c.strip().lower(): c for c in table.columns}
    name = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
    if name is not None:
        return table[name].tolist()
    if len(table.columns) == 1:  # one column without a header: its first line is a tweet too
        return [table.columns[0], *table[table.columns[0]].tolist()]
    raise UserError(f"the CSV has no text column (it has: {', '.join(map(str, table.columns))}): "
                    f"name the tweets' column 'text'")


def classify_rows(model, texts: list[str]) -> pd.DataFrame:
    """One row per tweet: label, the three probabilities, and why a row was skipped; one model call."""
    ok = [i for i, t in enumerate(texts) if t.strip() and len(t) <= MAX_TWEET_CHARS]
    predictions = dict(zip(ok, model.classify([texts[i] for i in ok])))
    rows = []
    for i, text in enumerate(texts):
        p = predictions.get(i)
        error = "" if p else ("empty" if not text.strip() else f"over {MAX_TWEET_CHARS} characters")
        rows.append({"text": text, "label": p.label if p else "", **{l: p.scores[l] if p else None for l in LABELS},
                     "model": model.name, "error": error})
    return pd.DataFrame(rows)


def classify_file(model, path: Path) -> tuple[Path, str]:
    """(the predictions CSV, a note saying how many were classified and skipped)."""
    result = classify_rows(model, read_tweets(path))
    out = _output_folder() / f"{path.stem[:60]}-sentiment.csv"
    result.to_csv(out, index=False)
    skipped = int((result["error"] != "").sum())
    return out, f"Classified {len(result) - skipped:,} tweets" + (f", skipped {skipped}" * bool(skipped))


def _output_folder() -> Path:
    """A new folder for one file of predictions; the folders of OUTPUTS_KEPT_S ago and older go."""
    OUTPUTS.mkdir(exist_ok=True)
    for old in OUTPUTS.iterdir():
        if time.time() - old.stat().st_mtime > OUTPUTS_KEPT_S:
            shutil.rmtree(old, ignore_errors=True)
    folder = OUTPUTS / secrets.token_hex(8)
    folder.mkdir()
    return folder
