"""A lossy format checked by the exact one: its answer stands where its two best labels lie far apart.

A lossy format (int8, bf16) moves each label's log-probability a little. Where its two best labels lie
closer than twice the largest move measured on the bundled calibration tweets (`gate_of`), its answer is
not trusted and the tweet runs again through the exact format (`Checked`), so the labels stay the exact
format's (README "Serving"); `inference.policy` counts what the checks cost when it chooses a format.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


Probabilities = Callable[[list[str]], np.ndarray]  # texts → (n, 3) label probabilities


def log_odds(probs: np.ndarray) -> np.ndarray:
    """Each label's log-probability less the row's mean: what int8 moves, whatever the softmax's shift."""
    logs = np.log(np.clip(probs, 1e-12, None))
    return logs - logs.mean(axis=1, keepdims=True)


def gate_of(fast: np.ndarray, exact: np.ndarray) -> float:
    """Twice the largest move of one label's log-odds, int8 against exact, over calibration texts: a
    label flips only where its two best labels lie closer than the sum of their moves."""
    return 2.0 * float(np.abs(log_odds(fast) - log_odds(exact)).max())


def unsure(probs: np.ndarray, gate: float) -> np.ndarray:
    """Rows whose best two labels' log-probabilities lie within `gate` of each other."""
    logs = np.sort(log_odds(probs), axis=1)  # the row's mean cancels in the difference
    return logs[:, -1] - logs[:, -2] < gate


@dataclass
class Checked:
    fast: Probabilities     # int8
    gate: float             # log-probability gap under which int8's label is checked
    answered: int = 0       # texts answered, and how many of them the exact format answered again
    rechecked: int = 0

    def __call__(self, texts: list[str], exact: Probabilities) -> np.ndarray:
        probs = self.fast(texts)
        check = unsure(probs, self.gate)
        if check.any():
            probs[check] = exact([t for t, c in zip(texts, check) if c])
        self.answered, self.rechecked = self.answered + len(texts), self.rechecked + int(check.sum())
        return probs
