"""Many callers, few model calls: requests that arrive while the model is busy share its next call.

    batched = Coalescer(model.predict_proba, lock)      # fn: list of texts → one row per text
    batched(["one tweet"])                               # from any number of threads at once

On 2 cores one batch of 16 tweets costs a fraction of 16 single calls (a forward pass reads every weight
once, whatever the batch), so under load the throughput grows with the number of waiting requests. No
timer and no extra thread: a request that finds the model idle runs at once, so a lone request waits for
nothing; one that finds it busy queues, and whoever runs next takes the whole queue (up to `max_rows`
texts) in one call. A failing call fails every request in it, with the same exception.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np


class _Request:
    def __init__(self, texts: list[str]):
        self.texts = texts
        self.rows: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False

    def result(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return self.rows


class Coalescer:
    """`fn` called on the concatenated texts of the requests waiting, one call at a time under `lock`
    (which other users of the model, e.g. explanations, take too)."""

    def __init__(self, fn: Callable[[list[str]], np.ndarray], lock: threading.Lock, max_rows: int = 256):
        self.fn, self.lock, self.max_rows = fn, lock, max_rows
        self._waiting: list[_Request] = []
        self._changed = threading.Condition()
        self._running = False
        self.calls = 0  # model calls made (the tests read it)

    def __call__(self, texts: list[str]) -> np.ndarray:
        request = _Request(texts)
        with self._changed:
            self._waiting.append(request)
            while self._running and not request.done:
                self._changed.wait()
            if request.done:  # another caller's batch answered it
                return request.result()
            self._running = True
        try:  # this caller runs batches, oldest requests first, until its own is answered
            while not request.done:
                with self._changed:
                    batch = self._take()
                self._run(batch)
        finally:
            with self._changed:
                self._running = False
                self._changed.notify_all()
        return request.result()

    def _take(self) -> list[_Request]:
        """The oldest waiting requests, up to max_rows texts (at least one request)."""
        batch, rows = [], 0
        while self._waiting and (not batch or rows + len(self._waiting[0].texts) <= self.max_rows):
            batch.append(self._waiting.pop(0))
            rows += len(batch[-1].texts)
        return batch

    def _run(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        try:
            with self.lock:
                self.calls += 1
                rows = self.fn(texts)
        except BaseException as exc:  # noqa: BLE001 - handed to each caller, who raises it
            rows, error = None, exc
        else:
            error = None
        start = 0
        with self._changed:
            for r in batch:
                if error is None:
                    r.rows = rows[start:start + len(r.texts)]
                    start += len(r.texts)
                r.error, r.done = error, True
            self._changed.notify_all()
