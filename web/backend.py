"""The app's backend: the model that serves (`inference.ModelServer`), the training job
(`web.jobs.TrainingJob`), who may do what (`web.roles.Roles`: the page and the APIs check it before
they call in here; what a visitor may do is limited here) and the web's path rule, for one app process.
Every method takes plain values and returns plain values or raises a UserError with what to do."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

from core.errors import UserError, first_line
from core.runs import Run, pin, prune
from core.settings import Settings
from finetune import corrections, lineage
from finetune.config import TrainConfig
from finetune.events import duration
from inference import ModelServer
from inference.classifier import Prediction, check_text
from inference.explain import Explanation, explain

from .jobs import TrainingJob
from .limits import CORRECTION_LIMITS, MAX_TWEET_CHARS, MODEL_WAIT_SECONDS, RELOAD_AFTER_SECONDS, Quota
from .paths import WebPaths
from .roles import Caller, Roles

log = logging.getLogger("app")

WEB_PATH_SETTINGS = ("dataset", "base_model")  # the settings a web request may name a local path in
OWNER_SETTINGS = ("runs_dir", "hub_model_id", "hub_private")  # the owner's alone (RUNS_DIR, HUB_MODEL_ID, HUB_PRIVATE)
OWNER = Caller(user="", client="local", admin=True)  # the app itself (and the tests): may do anything


def check_tweet(text) -> str:
    """The classifier's own checks (text, not empty, valid Unicode), then the app's length limit."""
    check_text(text)
    if len(text) > MAX_TWEET_CHARS:
        raise UserError(f"the text is {len(text):,} characters long; the limit is {MAX_TWEET_CHARS:,}: "
                        f"shorten it (a tweet is at most 280)")
    return text


class Backend:
    """The model that serves, the training job and the admin rule, for one app process."""

    def __init__(self, defaults: TrainConfig, admin_users=(), hub_api=None, settings: Settings | None = None,
                 upload_dir: str | Path = ""):
        self.defaults = defaults
        self.settings = settings or Settings()  # the entry point (app.create_app) reads the environment
        self.runs_dir = Path(defaults.runs_dir)
        self.data_dir = Path(self.settings.data_dir or self.runs_dir / "_data")
        self.paths = WebPaths(self.data_dir, self.runs_dir, upload_dir)
        self.roles = Roles(admin_users, self.settings.on_space, self.settings.retrain_public)
        self.roles.warn()
        self.correction_quota = Quota(CORRECTION_LIMITS)
        self._visitor_started: float | None = None  # when a visitor last started a run (time.monotonic)
        self._starting = threading.Lock()
        # a fresh Space gets people's corrections back from the Hub dataset (HUB_DATASET_ID), if set
        threading.Thread(target=corrections.pull, args=(self.runs_dir, self.settings.hub_dataset_id),
                         name="corrections-pull", daemon=True).start()
        self.push_corrections = corrections.PushSoon(self.runs_dir, repo_id=self.settings.hub_dataset_id)
        self.server = ModelServer(self.runs_dir, defaults.hub_model_id, defaults.base_model,
                                  precision=self.settings.serving_precision, wait_s=MODEL_WAIT_SECONDS,
                                  retry_s=RELOAD_AFTER_SECONDS)
        self.job = TrainingJob(self.runs_dir, on_done=self._done, hub_api=hub_api)
        self.prune()
        # a Space without persistent storage: an unfinished run comes back from the Hub's resume branch
        threading.Thread(target=self.job.restore_from_hub, args=(defaults.hub_model_id, defaults), name="restore-run",
                         daemon=True).start()
        self.server.load_soon()

    def _done(self, result) -> None:
        """A run finished: Classify switches to it, and older runs' exports and checkpoints go."""
        self.server.refresh()
        self.prune()

    def prune(self) -> list[Path]:
        """The newest KEEP_RUNS runs (and the one serving) keep their exports and checkpoints (core.runs.prune)."""
        model = self.server.model
        serving = Path(model.source).name if getattr(model, "kind", "") == "fine-tuned" else ""
        return prune(self.runs_dir, self.settings.runs_kept, protect={serving})

    # --- answering ------------------------------------------------------------------------------
    def model(self):
        """The model to answer one request with, or a UserError (NoModel) saying why there is none."""
        return self.server.get()

    def classify(self, text) -> tuple[Prediction, str]:
        """(prediction, model name) for one tweet; a UserError with what to do for bad input."""
        return self._answer(text, "classify", lambda model, t: model.classify(t)[0])

    def classify_many(self, texts: list[str]) -> tuple[list[Prediction], str]:
        """(predictions, model name) for tweets that passed `check_tweet`, in one model call."""
        return self._answer(texts, "classify", lambda model, t: model.classify(t), many=True)

    def explain(self, text) -> tuple[Explanation, str]:
        """(Explanation, model name) for one tweet: its label and probabilities, each word's share in
        the label, and the span; one model call."""
        return self._answer(text, "explain", explain)

    def _answer(self, text, verb: str, answer, many: bool = False):
        """(answer(model, text), model name): bad input and failures nobody foresaw become a UserError
        that says what went wrong, and the app keeps serving. `many`: `text` is a list of texts."""
        text = [check_tweet(t) for t in text] if many else check_tweet(text)
        model = self.model()
        try:
            return answer(model, text), model.name
        except UserError:
            raise
        except Exception as exc:
            log.exception("could not %s a text", verb)
            raise UserError(f"could not {verb} this text ({type(exc).__name__}: {first_line(exc)})") from None

    def model_info(self) -> dict:
        """What serves and how good it is: name, kind, and a run's test accuracy and macro-F1."""
        model = self.server.model
        if model is None:
            return {"loaded": False, "name": None, "kind": None, "test_accuracy": None, "test_f1_macro": None,
                    "error": self.server.error or "the model is loading"}
        test = (Run(Path(model.source)).metrics.get("test") or {}) if model.kind == "fine-tuned" else {}
        return {"loaded": True, "name": model.name, "kind": model.kind, "test_accuracy": test.get("accuracy"),
                "test_f1_macro": test.get("f1_macro"), "error": "", "reason": getattr(model, "reason", ""),
                "serving": model.serving()}

    def correct(self, caller: Caller, text, model_label, corrected_label, model_name="") -> str:
        """Store a person's correction of a reply (an admin's counts at once; anyone else's waits for an
        admin's review, and counts against their quota), then copy the file to the Hub dataset in the
        background."""
        def admit():  # a valid correction: it counts against the quota of anyone but an admin
            if not caller.admin and (why := self.correction_quota.take(caller.client)):
                raise UserError(f"not saved: {why}")
        c = corrections.add(self.runs_dir, check_tweet(text), model_label, corrected_label, model_name or "",
                            status=corrections.ACCEPTED if caller.admin else corrections.PENDING, by=caller.user,
                            admit=admit)
        if self.settings.hub_dataset_id:
            self.push_corrections()
        if c.status == corrections.PENDING:
            return (f"Saved for review: once an admin accepts it, the next retrain learns that this tweet is "
                    f"{c.corrected_label}.")
        return (f"Saved: the next retrain learns that this tweet is {c.corrected_label} "
                f"({len(corrections.waiting(self.runs_dir))} correction(s) waiting).")

    # --- the job ------------------------------------------------------------------------------------
    def web_settings(self, settings: dict) -> dict:
        """The settings a web request gives (None, "" = the default), with the paths it names checked:
        a value equal to the server's own default is the server's choice, not the caller's. Where runs
        go and where they are pushed are the owner's alone (OWNER_SETTINGS)."""
        given = {k: v for k, v in settings.items() if v not in (None, "")}
        if owners := [k for k in OWNER_SETTINGS if k in given]:
            raise UserError(f"{', '.join(owners)}: set by the app's owner (RUNS_DIR, HUB_MODEL_ID, HUB_PRIVATE), "
                            f"not by a request: leave it out")
        for name in WEB_PATH_SETTINGS:
            if name in given and given[name] != getattr(self.defaults, name):
                given[name] = self.paths.check(name, given[name])
        return given

    def config(self, settings: dict) -> TrainConfig:
        """The config a retrain with `settings` would run: the defaults overridden by them (None = default),
        validated."""
        values = {**self.defaults.to_dict(), "base_model": self.base_model(), **self.web_settings(settings)}
        return TrainConfig.from_dict({**values, "runs_dir": str(self.runs_dir)}).validate()

    def train(self, settings: dict, caller: Caller = OWNER) -> dict:
        """Start a run with the defaults overridden by `settings` (None = default): by default it continues
        the run that serves; `start_over` true: a fresh run from the base model. Only an admin may change a
        setting or start over (roles "settings"), and a visitor's start waits out the cooldown after the last."""
        settings = dict(settings)
        start_over = bool(settings.pop("start_over", False))
        try:
            cfg = self.config(settings)
            changed = [k for k in self.web_settings(settings) if getattr(cfg, k) != getattr(self.defaults, k)]
            changed += ["start_over"] if start_over else []
            if changed and (why := self.roles.refusal("settings", caller)):
                return {"accepted": False, "message": f"{why} ({', '.join(changed)} not the owner's): press "
                                                      f"Retrain with the settings as they are"}
            with self._starting:
                if not caller.admin and (wait := self.cooldown_left()):
                    return {"accepted": False, "message": f"a visitor's retrain started less than "
                            f"{duration(self.settings.cooldown_s)} ago: the next one can start in {duration(wait)}"}
                accepted, message = self.job.start(cfg if start_over else self.continuing(cfg))
                if accepted and not caller.admin:
                    self._visitor_started = time.monotonic()
            if accepted:
                self.prune()
        except UserError as exc:
            accepted, message = False, f"not started: {exc}"
        except Exception as exc:  # input nobody foresaw: refuse it in words, keep serving
            log.exception("refused a training request")
            accepted, message = False, f"not started: {type(exc).__name__}: {first_line(exc)}"
        return {"accepted": accepted, "message": message}

    def continuing(self, cfg: TrainConfig) -> TrainConfig:
        """cfg continuing the run that serves (a local run, or the Hub repo after a restart), when it is a run
        of cfg's base model and labels; else cfg as it is (a fresh run)."""
        model = self.server.model
        if cfg.from_run or model is None or model.kind != "fine-tuned":
            return cfg
        try:
            lineage.check_compatible(cfg, lineage.find_parent(model.source, self.runs_dir))
        except UserError as exc:
            log.info("Retrain starts over: %s", exc)
            return cfg
        return dataclasses.replace(cfg, from_run=model.source)

    def cooldown_left(self) -> float:
        """Seconds until a visitor may start a run again (0: now)."""
        if self._visitor_started is None:
            return 0.0
        return max(0.0, self.settings.cooldown_s - (time.monotonic() - self._visitor_started))

    def stop(self) -> dict:
        return _answer(self.job.stop())

    def resume(self, run_id: str | None = None) -> dict:
        """Continue an interrupted or stopped run (None: the newest that can) from its last checkpoint."""
        return _answer(self.job.resume(run_id or None))

    def push_again(self) -> dict:
        """Push the last finished run to HUB_MODEL_ID (the owner's repo; never one a request names)."""
        return _answer(self.job.push_again(repo_id=self.defaults.hub_model_id, private=self.defaults.hub_private))

    def serve(self, run_id: str | None) -> str:
        """Pin `run_id` as the run that Classify serves (None: back to the newest)."""
        try:
            pin(self.runs_dir, run_id or None)
        except ValueError as exc:
            return f"cannot serve it: {exc}"
        self.server.refresh()
        model = self.server.model
        return f"Classify now answers with {model.name}" if model else self.server.error

    def base_model(self) -> str:
        """The base model a retrain starts from: the configured one, or the bundled one that serves in
        its place while the Hub is unreachable."""
        model = self.server.model
        return model.source if getattr(model, "reason", "") else self.defaults.base_model

    def health(self) -> dict:
        """What serves and what the job does, from memory only (no file read: it answers at once)."""
        model = self.server.model
        return {"status": "ok", "model_loaded": model is not None, "model": model.name if model else None,
                "model_kind": model.kind if model else None, "model_reason": getattr(model, "reason", ""),
                "model_precision": getattr(model, "precision", None),
                "model_prepared": model is not None and model.ready.is_set(),
                "model_serving": model.serving() if model else None,
                "model_error": "" if model else (self.server.error or "loading"),
                "job_running": self.job.busy, "job_state": self.job.state, "run_id": self.job.run_id}


def _answer(result: tuple[bool, str]) -> dict:
    accepted, message = result
    return {"accepted": accepted, "message": message}
