"""What to serve, and switching to a newer run without failing a request in flight.

`find_model` picks, in order: the run chosen in the runs folder (the newest complete one unless one
is pinned), else the Hub repo `hub_model_id`, else the base model by few-shot prompting. `ModelServer`
holds the current model; a request takes a reference and keeps it to the end, so a swap never breaks
one in flight. It is also the one loading state machine: `load_soon()` loads in the background (from
the Hub that can mean a download), `get()` waits up to `wait_s` for it, and when nothing serves, a
request after `retry_s` starts another load (a Hub that was down at start-up may be back).
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from core.bundled import BUNDLED_NAME, resolve_base_model
from core.errors import UserError, check_on_hub
from core.fewshot import builtin_calibration
from core.runs import list_runs, serving

from .classifier import Classifier, FewShot, SentimentModel

log = logging.getLogger(__name__)

# few-shot examples for serving the base model before any run exists (written for this project)
FEW_SHOT_EXAMPLES = [
    ("I can't believe my flight got cancelled again, worst day ever", 0),
    ("Heading to the office, meeting at 10", 1),
    ("Just got tickets for the show tonight, so excited!!", 2),
    ("My phone died and I lost all my photos", 0),
    ("Does anyone know when the store opens on Sunday?", 1),
    ("Thank you all for the birthday wishes, love you", 2),
]


class NoModel(UserError):
    """Nothing could be loaded; the message says what to set."""


class ModelLoading(NoModel):
    """The model is still loading: try again in a moment."""


def find_model(runs_dir: str | Path, hub_model_id: str = "", base_model: str = "", k: int = 4,
               precision: str = "auto") -> SentimentModel:
    reasons = []
    chosen = serving(runs_dir)
    older = [r for r in list_runs(runs_dir) if r.is_complete and chosen and r.path != chosen.path]
    for run in ([chosen] if chosen else []) + older:  # a run that cannot load (corrupt weights): the next one
        try:
            return Classifier.load(run.path, precision=precision)
        except UserError as exc:
            log.warning("cannot serve run %s, trying the next one: %s", run.id, exc)
            reasons.append(f"run {run.id}: {exc}")
    if hub_model_id:
        try:  # one model_info call per load: check_on_hub's answer pins the revision too
            info = check_on_hub("model", hub_model_id)
            return Classifier.load(hub_model_id, precision=precision, revision=getattr(info, "sha", None))
        except UserError as exc:
            reasons.append(f"Hub repo {hub_model_id}: {exc}")
    if base_model:
        try:
            source, reason = resolve_base_model(base_model)  # offline: the bundled SmolLM2, saying so
            check_on_hub("model", source)
            return FewShot(source, FEW_SHOT_EXAMPLES[:k], builtin_calibration(), reason=reason,
                           name=BUNDLED_NAME if reason else "")
        except (UserError, ValueError) as exc:
            reasons.append(f"base model {base_model}: {exc}")
    raise NoModel("no model to serve: " + ("; ".join(reasons) or f"no complete run in {runs_dir}") +
                  ". Train one (Train tab / python -m finetune), or set HUB_MODEL_ID to a trained repo, "
                  "or BASE_MODEL to a local model folder")


class ModelServer:
    """Holds the model that serves; `refresh()` switches to a newer run when one appears."""

    def __init__(self, runs_dir: str | Path, hub_model_id: str = "", base_model: str = "",
                 precision: str = "", wait_s: float = 30.0, retry_s: float = 60.0):
        self.runs_dir, self.hub_model_id, self.base_model = Path(runs_dir), hub_model_id, base_model
        self.precision = precision or "auto"  # auto: measured here, keeping fp32's labels (inference.policy)
        self.wait_s, self.retry_s = wait_s, retry_s
        self._model: SentimentModel | None = None
        self._error = ""
        self._swap_lock, self._load_lock = threading.Lock(), threading.Lock()
        self._loaded = threading.Event()
        self._load_started: float | None = None  # monotonic time of the last load_soon(); None: never

    @property
    def model(self) -> SentimentModel | None:
        return self._model

    @property
    def error(self) -> str:
        return self._error

    def load_soon(self) -> None:
        """Load what should serve in a background thread, unless a load is under way."""
        with self._load_lock:
            if self._load_started is not None and not self._loaded.is_set():
                return
            self._loaded.clear()
            self._load_started = time.monotonic()
        threading.Thread(target=self._load, name="model-load", daemon=True).start()

    def _load(self) -> None:
        try:
            self.refresh()
        finally:
            self._loaded.set()

    def get(self, wait_s: float | None = None) -> SentimentModel:
        """The model to answer one request with. The first call starts loading; a request waits up to
        `wait_s` for it (ModelLoading after that), then raises NoModel with what to set when nothing
        can serve, starting another load when the last one is over `retry_s` old."""
        model = self._model
        if model is not None:
            return model
        if self._load_started is None:
            self.load_soon()
        if not self._loaded.wait(self.wait_s if wait_s is None else wait_s):
            raise ModelLoading("the model is still loading: try again in a moment")
        model, error = self._model, self._error  # read before a retry can clear the error
        if model is None:
            if time.monotonic() - self._load_started > self.retry_s:
                self.load_soon()
            raise NoModel(error or "no model to serve yet")
        return model

    def refresh(self) -> bool:
        """Load what should serve now if it differs from what serves; True when it switched."""
        with self._swap_lock:
            run, current = serving(self.runs_dir), self._model
            if current is not None and (run is None or current.source == str(run.path)):
                return False  # no local run (keep the Hub or few-shot model), or it already serves
            try:
                model = find_model(self.runs_dir, self.hub_model_id, self.base_model, precision=self.precision)
            except UserError as exc:
                self._error = str(exc)
                return False
            if current is not None and model.source == current.source:
                return False  # what should serve cannot load, and the fallback already serves
            self._model, self._error = model, ""  # one reference assignment: requests in flight keep theirs
            log.info("now serving %s", model.name)
            return True
