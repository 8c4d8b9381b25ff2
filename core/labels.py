"""The three labels, in the order of the model's outputs, and how a dataset's label values map to them."""
from __future__ import annotations

from collections import Counter

from .errors import UserError

LABELS = ("negative", "neutral", "positive")
# names a dataset may use for each label (compared lower-cased, stripped)
NAMES = {"negative": 0, "neg": 0, "neutral": 1, "neu": 1, "neut": 1, "positive": 2, "pos": 2}
MAX_UNKNOWN_SHARE = 0.1  # more labels than this that map to nothing: the column is refused, not cleaned


def _number(value) -> int | None:
    """An integral number, or a string of one ("1", "-1", "2.0"); None otherwise (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    return None


def label_id(value, signed: bool = False) -> int | None:
    """0/1/2 (or -1/0/1 when `signed`) or a label's name or short name (any case) → 0/1/2; else None."""
    number = _number(value)
    if number is not None:
        number += 1 if signed else 0
        return number if 0 <= number < len(LABELS) else None
    if isinstance(value, str):
        return NAMES.get(value.strip().lower())
    return None


def label_mapper(values, column: str = "label"):
    """The mapping for one dataset's label column: -1/0/1 when its numbers include -1 and no 2, else
    0/1/2; names as `label_id`. Values that map to nothing are dropped (and counted) when few; when
    more than MAX_UNKNOWN_SHARE of the labels are such, a UserError names the values found."""
    counts = Counter(v for v in values if v is not None and v != "")
    numbers = {_number(v) for v in counts} - {None}
    signed = -1 in numbers and 2 not in numbers
    unknown = {v: n for v, n in counts.items() if label_id(v, signed) is None}
    if counts and sum(unknown.values()) > MAX_UNKNOWN_SHARE * sum(counts.values()):
        found = ", ".join(repr(v) for v, _ in Counter(counts).most_common(12))
        raise UserError(f"the label column {column!r} holds values that are not sentiments (found: {found}): "
                        f"use 0/1/2, -1/0/1 or negative/neutral/positive (neg/neu/pos, any case), "
                        f"or pick another label column")
    return lambda value: label_id(value, signed)
