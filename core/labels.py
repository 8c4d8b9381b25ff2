"""The three labels, in the order of the model's outputs, and how a dataset's label values map to them."""
from __future__ import annotations

LABELS = ("negative", "neutral", "positive")


def label_id(value) -> int | None:
    """0/1/2 or negative/neutral/positive (any case) → 0/1/2; anything else → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and float(value).is_integer() and 0 <= int(value) < len(LABELS):
        return int(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in LABELS:
            return LABELS.index(v)
        if v.isdigit() and int(v) < len(LABELS):
            return int(v)
    return None
