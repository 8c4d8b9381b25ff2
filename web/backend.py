"""The app's backend: the model that serves (`inference.ModelServer`), the training job
(`finetune.jobs.TrainingJob`), the admin rule and the web's path rule, for one app process. Every
method takes plain values and returns plain values or raises a UserError with what to do."""
from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

from core.errors import UserError, first_line
from core.runs import Run, pin
from core.settings import Settings
from finetune import corrections, lineage
from finetune.config import TrainConfig
from finetune.jobs import TrainingJob
from inference import ModelServer
from inference.classifier import Prediction, check_text
from inference.explain import Explanation, explain

from .limits import MAX_TWEET_CHARS, MODEL_WAIT_SECONDS, RELOAD_AFTER_SECONDS
from .paths import WebPaths

log = logging.getLogger("app")

WEB_PATH_SETTINGS = ("dataset", "base_model")  # the settings a web request may name a local path in


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
        self.settings = settings or Settings.from_env()
        self.runs_dir = Path(defaults.runs_dir)
        self.data_dir = Path(self.settings.data_dir or self.runs_dir / "_data")
        self.paths = WebPaths(self.data_dir, self.runs_dir, upload_dir)
        self.admins = {u.strip() for u in admin_users if u.strip()}
        # a fresh Space gets people's corrections back from the Hub dataset (HUB_DATASET_ID), if set
        threading.Thread(target=corrections.pull, args=(self.runs_dir,), name="corrections-pull", daemon=True).start()
        self.push_corrections = corrections.PushSoon(self.runs_dir)
        self.server = ModelServer(self.runs_dir, defaults.hub_model_id, defaults.base_model,
                                  precision=self.settings.serving_precision, wait_s=MODEL_WAIT_SECONDS,
                                  retry_s=RELOAD_AFTER_SECONDS)
        self.job = TrainingJob(self.runs_dir, on_done=lambda result: self.server.refresh(), hub_api=hub_api)
        # a Space without persistent storage: an unfinished run comes back from the Hub's resume branch
        threading.Thread(target=self.job.restore_from_hub, args=(defaults.hub_model_id,), name="restore-run",
                         daemon=True).start()
        self.server.load_soon()

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
                "test_f1_macro": test.get("f1_macro"), "error": "", "reason": getattr(model, "reason", "")}

    def correct(self, text, model_label, corrected_label, model_name: str = "") -> str:
        """Store a person's correction of a reply, then copy the file to the Hub dataset in the background."""
        c = corrections.add(self.runs_dir, check_tweet(text), model_label, corrected_label, model_name)
        if self.settings.hub_dataset_id:
            self.push_corrections()
        return (f"Saved: the next retrain learns that this tweet is {c.corrected_label} "
                f"({len(corrections.waiting(self.runs_dir))} correction(s) waiting).")

    # --- the job and the admin rule ---------------------------------------------------------------
    def refused(self, profile) -> str:
        """Why this user may not retrain (or stop, push, pin), or "" when they may."""
        if not self.admins:
            return ""
        if profile is None:
            return f"only {', '.join(sorted(self.admins))} may do this: sign in with Hugging Face first"
        if profile.username not in self.admins:
            return f"{profile.username} may not do this: only {', '.join(sorted(self.admins))} may (ADMIN_USERS)"
        return ""

    def web_settings(self, settings: dict) -> dict:
        """The settings a web request gives (None, "" = the default), with the paths it names checked:
        a value equal to the server's own default is the server's choice, not the caller's."""
        given = {k: v for k, v in settings.items() if v not in (None, "")}
        for name in WEB_PATH_SETTINGS:
            if name in given and given[name] != getattr(self.defaults, name):
                given[name] = self.paths.check(name, given[name])
        return given

    def config(self, settings: dict) -> TrainConfig:
        """The config a retrain with `settings` would run: the defaults overridden by them (None = default),
        validated."""
        values = {**self.defaults.to_dict(), "base_model": self.base_model(), **self.web_settings(settings)}
        return TrainConfig.from_dict({**values, "runs_dir": str(self.runs_dir)}).validate()

    def train(self, settings: dict, profile=None) -> dict:
        """Start a run with the defaults overridden by `settings` (None = default): by default it continues
        the run that serves (`parent`); `start_over` true: a fresh run from the base model."""
        if why := self.refused(profile):
            return {"accepted": False, "message": why}
        settings = dict(settings)
        start_over = bool(settings.pop("start_over", False))
        try:
            cfg = self.config(settings)
            accepted, message = self.job.start(cfg if start_over else self.continuing(cfg))
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

    def stop(self, profile=None) -> dict:
        return self._as_admin(profile, self.job.stop)

    def resume(self, run_id: str | None = None, profile=None) -> dict:
        """Continue an interrupted or stopped run (None: the newest that can) from its last checkpoint."""
        return self._as_admin(profile, lambda: self.job.resume(run_id or None))

    def push_again(self, profile=None) -> dict:
        return self._as_admin(profile, lambda: self.job.push_again(repo_id=self.defaults.hub_model_id))

    def _as_admin(self, profile, action) -> dict:
        """{accepted, message} of `action()` (→ (accepted, message)), or why this user may not."""
        if why := self.refused(profile):
            return {"accepted": False, "message": why}
        accepted, message = action()
        return {"accepted": accepted, "message": message}

    def serve(self, run_id: str | None, profile=None) -> str:
        """Pin `run_id` as the run that Classify serves (None: back to the newest)."""
        if why := self.refused(profile):
            return why
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
        model, status = self.server.model, self.job.status()
        return {"status": "ok", "model_loaded": model is not None, "model": model.name if model else None,
                "model_kind": model.kind if model else None, "model_reason": getattr(model, "reason", ""),
                "model_precision": getattr(model, "precision", None),
                "model_prepared": model is not None and model.ready.is_set(),
                "model_serving": model.serving() if model else None,
                "model_error": "" if model else (self.server.error or "loading"),
                "job_running": self.job.busy, "job_state": status["state"], "run_id": status.get("run_id")}
