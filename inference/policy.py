"""Which format serves what. `auto` (the default) chooses by measurement on this machine, never by the CPU's
name or flags; any other precision is served as named.

    route = measure_and_choose(clf)      # in the background, once the exact format serves (clf.ready then set)
    clf.predict_proba(["one tweet"])     # route.single; a call of several tweets: route.batch

The exact format is eager fp32 torch: it loads in seconds, answers everything until the others are ready,
explains (packed variants need torch) and checks the lossy formats. A lossy format (int8 through ONNX
Runtime, bf16 torch with packed weights) answers first and the exact format again wherever its two best
labels lie closer than its gate (`inference.checked`), so its labels stay fp32's; its cost counts the
checks its gate makes on the calibration tweets. For one tweet and for a batch each, the format with the
lowest cost serves. The choice and its figures are kept per machine and model shape (CHOICES), so a later
load prepares only the chosen formats.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import statistics
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.fewshot import builtin_calibration
from core.runs import read_dict, write_json

from .checked import Checked, Probabilities, gate_of, unsure

log = logging.getLogger(__name__)

EXACT = ("fp32", "onnx-fp32")                           # fp32's labels: each may serve alone
LOSSY = ("onnx-int8", "bf16", "int8", "onnx-int8-block")  # faster where the hardware has it, labels a little off
PRECISIONS = ("auto", *EXACT, *LOSSY)                   # SERVING_PRECISION / --precision
# what `auto` times against eager fp32: onnx-fp32 is left out, since it would hold a second fp32 copy of the
# weights beside torch's, which explanations need (serving memory stays within 1.5x the pipeline's)
CANDIDATES = ("onnx-int8", "bf16")
BATCH_ROWS = 4         # the calibration tweets, this many times over, make the timed batch (240 rows)
POLICY = 2             # bump when the candidates or the timing change: cached choices are measured again
CHOICES = Path.home() / ".cache" / "tweet-sentiment" / "serving-choice.json"


@dataclass
class Timing:
    """One format measured on the calibration tweets."""
    fmt: str
    single_ms: float        # median of one tweet per call
    batch_per_s: float      # one call with every calibration tweet, BATCH_ROWS times over
    gate: float = 0.0       # lossy: the log-odds gap under which the exact format answers a tweet alone again
    checked: float = 0.0    # lossy: the share of calibration tweets that gate sends to the exact format
    batch_gate: float = 0.0     # the same for tweets in a batch: dynamic int8 scales activations per call,
    batch_checked: float = 0.0  # so a tweet moves further among others than alone

    def single_cost(self, exact: "Timing") -> float:
        return self.single_ms + self.checked * exact.single_ms

    def batch_rate(self, exact: "Timing") -> float:
        return 1 / (1 / self.batch_per_s + self.batch_checked / exact.batch_per_s)


@dataclass
class Route:
    """What answers a call of one tweet and a call of several, and why."""
    single: Probabilities
    batch: Probabilities
    single_fmt: str = "fp32"
    batch_fmt: str = "fp32"
    timings: dict = field(default_factory=dict)   # fmt → Timing
    source: str = "measured"                      # or "chosen by a measurement of <date>" (a cached choice)
    checks: dict = field(default_factory=dict)    # "single" / "batch" → its Checked (a lossy format): how often

    def describe(self) -> dict:
        """For /health and the Classify tab: each path's format and the figures that chose it."""
        exact = self.timings.get("fp32")
        if exact is None:
            return {"one tweet": self.single_fmt, "batches": self.batch_fmt}
        say = lambda t, gate, share, what: (f"{t.fmt}" + (f" (checked by fp32 below a gap of {gate:.2f}: {share:.0%} "
                                                          f"of calibration tweets)" if gate else "") + what)
        others = lambda key: ", ".join(f"{t.fmt} {key(t)}" for t in self.timings.values())
        single, batch = self.timings[self.single_fmt], self.timings[self.batch_fmt]
        return {"one tweet": say(single, single.gate, single.checked, f": {single.single_cost(exact):.1f} ms a tweet; "
                                 f"measured {others(lambda t: f'{t.single_cost(exact):.1f} ms')}"),
                "batches": say(batch, batch.batch_gate, batch.batch_checked, f": {batch.batch_rate(exact):.0f} "
                               f"tweets/s; measured {others(lambda t: f'{t.batch_rate(exact):.0f}/s')}"),
                "source": self.source}


def measure(fmt: str, proba: Probabilities, texts: list[str], exact_single: np.ndarray | None
            ) -> tuple[Timing, np.ndarray]:
    """(`proba` timed one tweet per call and in one batch, its answers one per call); with `exact_single` (the
    exact format's answers to the same tweets, one per call), its gates and the shares of tweets they would
    check, alone and in a batch."""
    proba(texts[:3])  # warm-up: kernels chosen, memory touched
    times, rows = [], []
    for text in texts:
        start = time.perf_counter()
        rows.append(proba([text]))
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    batch = proba(texts * BATCH_ROWS)[:len(texts)]
    rate = len(texts) * BATCH_ROWS / (time.perf_counter() - start)
    single = np.concatenate(rows)
    timing = Timing(fmt, round(1000 * statistics.median(times), 2), round(rate, 1))
    if exact_single is not None:
        timing.gate = round(gate_of(single, exact_single), 4)
        timing.checked = round(float(unsure(single, timing.gate).mean()), 4)
        timing.batch_gate = round(gate_of(batch, exact_single), 4)
        timing.batch_checked = round(float(unsure(batch, timing.batch_gate).mean()), 4)
    return timing, single


def choose(timings: dict[str, Timing]) -> tuple[str, str]:
    """(the format for one tweet, the one for batches): the lowest cost, checks counted."""
    exact = timings["fp32"]
    single = min(timings.values(), key=lambda t: t.single_cost(exact)).fmt
    batch = max(timings.values(), key=lambda t: t.batch_rate(exact)).fmt
    return single, batch


def choice_key(clf) -> str:
    """This machine and the model's shape: what a format's speed depends on (not the weights' values)."""
    from core.model import cpu_name

    config = clf.model.config
    shape = "-".join(str(getattr(config, k, "")) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                                            "intermediate_size", "num_attention_heads", "vocab_size"))
    return f"{cpu_name()} | {clf.threads} threads | {shape} | max_length {clf.max_length} | policy {POLICY}"


def remembered(key: str) -> dict | None:
    return read_dict(CHOICES).get(key)


def remember(key: str, route: Route) -> None:
    known = read_dict(CHOICES)
    known[key] = {"single": route.single_fmt, "batch": route.batch_fmt, "measured_at": round(time.time()),
                  "timings": {k: dataclasses.asdict(t) for k, t in route.timings.items()}}
    CHOICES.parent.mkdir(parents=True, exist_ok=True)
    write_json(CHOICES, known)


def measure_and_choose(clf, builders: dict[str, Callable[[], Probabilities]]) -> Route:
    """The route for `clf`: its exact format and each candidate `builders` can make, timed on the
    calibration tweets (or, when this machine and model shape were measured before, the formats chosen
    then, built and gated afresh for these weights). A candidate that cannot be built is left out with
    a logged reason; one that is not chosen is dropped (its memory freed)."""
    texts, key = builtin_calibration(), choice_key(clf)

    def between_requests(proba: Probabilities) -> Probabilities:  # the exact format serves requests meanwhile:
        def call(batch):                                           # a request waits for one calibration call at most
            with clf._lock:                                        # (and the tokenizer is not thread-safe)
                return proba(batch)
        return call
    exact_timing, exact_single = measure("fp32", between_requests(clf.exact_proba), texts, None)
    before = remembered(key)
    names = [n for n in builders if before is None or n in (before["single"], before["batch"])]
    timings, fast = {"fp32": exact_timing}, {"fp32": clf.exact_proba}
    for name in names:
        try:
            proba = builders[name]()
            timings[name], _ = measure(name, between_requests(proba), texts, exact_single)
            fast[name] = proba
        except Exception as exc:  # noqa: BLE001 - an exporter or runtime failure: the others serve
            log.warning("%s: %s cannot serve (%s: %s)", clf.name, name, type(exc).__name__,
                        (str(exc).splitlines() or [""])[0][:200])
    single, batch = choose(timings) if before is None else (before["single"], before["batch"])
    single, batch = (f if f in fast else "fp32" for f in (single, batch))
    checks = {path: Checked(fast[fmt], getattr(timings[fmt], gate)) for path, fmt, gate in
              (("single", single, "gate"), ("batch", batch, "batch_gate")) if fmt != "fp32"}
    answer = {path: (lambda texts, c=checks[path]: c(texts, clf.exact_proba)) if path in checks else clf.exact_proba
              for path in ("single", "batch")}
    route = Route(answer["single"], answer["batch"], single, batch, timings,
                  "measured" if before is None else "chosen by a measurement of " +
                  time.strftime("%Y-%m-%d", time.localtime(before["measured_at"])), checks)
    if before is None:
        remember(key, route)
    return route


def prepare_soon(clf, builders: dict[str, Callable[[], Probabilities]]) -> None:
    """In a background thread: `clf.route` measured and chosen (one reference assignment); `clf.ready` is set
    when done, also when it failed (then the exact format keeps answering everything, and the log says why)."""
    def prepare():
        try:
            clf.route = measure_and_choose(clf, builders)
            log.info("%s serves one tweet in %s, batches in %s", clf.name, clf.route.single_fmt, clf.route.batch_fmt)
        except Exception as exc:  # noqa: BLE001 - the exact format serves
            log.warning("%s: serving every call in fp32: choosing formats failed (%s: %s)", clf.name,
                        type(exc).__name__, (str(exc).splitlines() or [""])[0][:200])
        finally:
            clf.ready.set()

    thread = threading.Thread(target=prepare, name="serving-prepare", daemon=True)
    _preparing.add(thread)
    thread.start()


_preparing: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _finish_preparing(timeout_s: float = 120.0) -> None:
    """At exit: an export cut off by the interpreter's exit aborts the process (ONNX Runtime's and torch's
    thread pools): let a preparation under way finish first."""
    for thread in list(_preparing):
        thread.join(timeout_s)
