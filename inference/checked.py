"""One tweet through int8 first, checked: `onnx-int8-checked`, what `auto` serves where ONNX Runtime is.

A single tweet runs through ONNX Runtime's int8 model (`onnx-int8`: gpt2-random 9.6 ms against 18 in
packed bf16 on AMX). Int8 moves each label's log-probability a little, so where its two best labels
lie closer than twice the largest move measured on the bundled calibration tweets (`gate`), int8's
answer is not trusted and the tweet runs again through the exact format (`checking_precision`: bf16 on
AMX, ONNX Runtime fp32 elsewhere). Calls of two tweets or more go straight to the exact format: int8's
time grows with the rows (on AMX, two tweets took 19.3 ms against bf16's 25.8, before any check; four,
the same). On 1,000 test tweets, one at a time, 13–17% were checked, and the labels were 99.6–100% of
fp32's, as the exact format's own (RESULTS.md "Int8 first, checked").

The int8 model is exported (once per weights, `inference.onnx_backend`) and calibrated in the background:
until it is ready the exact format answers everything, so a new run serves as soon as it is loaded.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.fewshot import builtin_calibration

log = logging.getLogger(__name__)

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


def calibrate(fast: Probabilities, exact: Probabilities, lock: threading.Lock) -> Checked:
    texts = builtin_calibration()
    with lock:  # the exact model serves requests meanwhile
        reference = exact(texts)
    one_by_one = np.concatenate([fast([t]) for t in texts])  # as it will serve: int8 scales its input per call
    return Checked(fast, gate_of(one_by_one, reference))


def prepare_soon(clf, make_fast: Callable[[], Probabilities], exact: Probabilities) -> None:
    """In a background thread: the int8 model, calibrated against `exact`, set as `clf.checked` (one
    reference assignment); `clf.checked_ready` is set when done, also when it failed (then the exact
    format keeps answering everything, and the log says why)."""
    def prepare():
        try:
            clf.checked = calibrate(make_fast(), exact, clf._lock)
            log.info("%s: int8 first for one tweet, checked by %s below a gap of %.3f",
                     clf.name, clf.checked_by, clf.checked.gate)
        except Exception as exc:  # noqa: BLE001 - the export or the runtime failed: the exact format serves
            log.warning("%s: serving every tweet in %s: no int8 first pass (%s: %s)", clf.name,
                        clf.checked_by, type(exc).__name__, (str(exc).splitlines() or [""])[0][:200])
        finally:
            clf.checked_ready.set()

    thread = threading.Thread(target=prepare, name="int8-prepare", daemon=True)
    _preparing.add(thread)
    thread.start()


_preparing: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _finish_preparing(timeout_s: float = 120.0) -> None:
    """An export cut off by the interpreter's exit aborts the process (ONNX Runtime's and torch's
    thread pools): let a preparation under way finish first."""
    for thread in list(_preparing):
        thread.join(timeout_s)
