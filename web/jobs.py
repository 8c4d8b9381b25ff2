"""One background training at a time, for the app: start, stop, status, push.

    job = TrainingJob("runs", on_done=server.refresh)
    job.start(TrainConfig(...))          # → (True, "started ...") or (False, "why not")
    job.status()                         # → {"state": "running", "step": 12, "total_steps": 60, ...}
    job.stop()                           # ends it at the next step; the previous model keeps serving
    job.resume()                         # continues the newest interrupted or stopped run (or run_id=...)

Bad settings are refused before the thread starts. The state a page shows comes from the server, not
the page: the run folder (status.json, history.jsonl, metrics.json, push.json) plus what the job holds
in memory, so a reload or a second browser sees the same run.
"""
from __future__ import annotations

import logging
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Callable

from finetune import checkpoints, hub, train
from finetune.config import TrainConfig
from core.errors import UserError, check_on_hub, first_line, looks_like_path
from core.model import check_source
from core.runs import PARTIAL, Run, check_writable, latest, list_runs, mark_interrupted, read_json, resumable

log = logging.getLogger(__name__)


class JobState(StrEnum):
    """What the app's one training job is doing (status()["state"])."""
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"


ENDED = frozenset({JobState.DONE, JobState.STOPPED, JobState.FAILED})  # a job in these has a result to show


class TrainingJob:
    """Runs `finetune.train.fine_tune` in a daemon thread; one job at a time, never queued."""

    def __init__(self, runs_dir: str | Path, on_done: Callable[[train.RunResult], object] | None = None,
                 hub_api=None):
        self.runs_dir = Path(runs_dir)
        self.on_done = on_done
        self.hub_api = hub_api              # tests pass a fake Hub client; None = the real one
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cfg: TrainConfig | None = None
        self._state, self._message = JobState.IDLE, ""
        self._run_id = ""
        self._progress: dict = {}
        self._pushing: dict | None = None   # the push in progress, until push.json has its result
        self._events: list[dict] = []      # the job's own events (started, failed, push ...)
        self.interrupted = mark_interrupted(self.runs_dir)

    # --- actions ------------------------------------------------------------------------------------
    def start(self, cfg: TrainConfig) -> tuple[bool, str]:
        """Start training `cfg` in the background; refused (with the reason) while a job runs or when
        the settings cannot work."""
        with self._lock:
            if self.busy:
                return False, f"a job is already running ({self._describe()}): wait for it or press Stop"
            try:
                prepared = check_settings(cfg)
            except UserError as exc:
                return False, f"not started: {exc}"
            return self._launch(cfg, f"training {cfg.base_model} on {cfg.dataset}", lambda stop: train.fine_tune(
                cfg, on_event=self._on_event, stop=stop, prepared_data=prepared, hub_api=self.hub_api))

    def resume(self, run_id: str | None = None) -> tuple[bool, str]:
        """Continue an interrupted or stopped run (default: the newest that can) from its last resumable
        checkpoint, with its own settings; refused, with the reason, while a job runs or when it cannot."""
        with self._lock:
            if self.busy:
                return False, f"a job is already running ({self._describe()}): wait for it or press Stop"
            run = self._find_run(run_id) if run_id else next(iter(resumable(self.runs_dir)), None)
            if run is None:
                return False, (f"no run {run_id} here" if run_id else "no interrupted or stopped run to resume")
            try:
                run = train.resumable_run(run.path)
                cfg = TrainConfig.from_dict({**run.config, "runs_dir": str(self.runs_dir)})
            except UserError as exc:
                return False, f"not resumed: {exc}"
            what = f"resuming run {run.id} at step {checkpoint_step(run)}"
            return self._launch(cfg, what, lambda stop: train.resume(run.path, self._on_event, stop, self.hub_api),
                                run.id)

    def _launch(self, cfg: TrainConfig, what: str, work, run_id: str = "") -> tuple[bool, str]:
        """Under the lock: the job's state reset, and `work(stop)` (→ a RunResult) started in its thread."""
        self._cfg, self._stop = cfg, threading.Event()
        self._state, self._message, self._run_id = JobState.RUNNING, f"{what}: loading the model and data", run_id
        self._progress, self._events = {}, []
        self._note("started", what)
        self._thread = threading.Thread(target=self._work, args=(cfg, work, self._stop), name="training-job",
                                        daemon=True)
        self._thread.start()
        return True, f"started: {what}"

    def restore_from_hub(self, repo_id: str, defaults: TrainConfig | None = None) -> None:
        """At start-up: an unfinished run that a restart wiped from this disk, back from the Hub (when
        HUB_MODEL_ID and a token are set), so that it can resume; `defaults`: the app's, whose model and
        dataset paths the run's settings may name."""
        local = (defaults.base_model, defaults.dataset) if defaults else ()
        result = checkpoints.restore_from_hub(self.runs_dir, repo_id, api=self.hub_api, local=local)
        if result.state != "skipped":
            self._note("restore", result.message)

    def stop(self) -> tuple[bool, str]:
        with self._lock:
            if self._state != JobState.RUNNING:
                return False, "no training is running"
            self._stop.set()
            self._message = "stopping at the next step"
        return True, "stopping at the next step; the model that serves now keeps serving"

    def push_again(self, run_id: str | None = None, repo_id: str = "", private: bool = False) -> tuple[bool, str]:
        """Push a finished run (default: the job's last, else the newest complete one) to `repo_id` (the
        app's HUB_MODEL_ID: never a repo a run's settings name), created `private` if it does not exist."""
        with self._lock:
            if self.busy:
                return False, f"a job is running ({self._describe()}): push when it has finished"
            mine = self._find_run(run_id) if run_id else (self._find_run() if self._state == JobState.DONE else None)
            run = mine or latest(self.runs_dir)
            if run is None or not run.is_complete:
                return False, "no finished run to push: train one first"
            if not repo_id:
                return False, "no Hub repo set: the app's owner sets HUB_MODEL_ID"
            self._thread = threading.Thread(target=self._push, args=(run, repo_id, private), name="hub-push",
                                            daemon=True)
            self._thread.start()
        return True, f"pushing run {run.id} to {repo_id}"

    # --- state --------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def state(self) -> str:
        """idle, running, done, failed or stopped (what status() says, without reading a file)."""
        return str(self._state)

    @property
    def run_id(self) -> str | None:
        return self._run_id or None

    def status(self) -> dict:
        """A JSON-able snapshot: state (idle/running/done/failed/stopped), run_id, step, total_steps,
        epoch, eta_s, budget_s (a run sized by its time budget), message; once a run has ended its
        metrics, data report and push result. With no job since start-up: idle, with the newest run's
        results. `resumable`: the interrupted or stopped runs that can resume, newest first (see
        `resume_point`)."""
        run = self._find_run() if self._run_id else None
        status = self._idle_status() if run is None and self._state == JobState.IDLE else self._job_status(run)
        if self._pushing:
            status["push"] = self._pushing
        status["resumable"] = [] if self.busy else [resume_point(r) for r in resumable(self.runs_dir)]
        return status

    def events(self) -> list[dict]:
        """The run's history (log, eval, data, test ... events) and the job's own, oldest first."""
        run = self.current_run()
        history = run.history() if run else []
        return sorted(history + self._events, key=lambda e: e.get("time", 0))

    def current_run(self) -> Run | None:
        """The run the job works (or last worked) on; with no job since start-up, the newest one."""
        if self._run_id:
            return self._find_run()
        return self._newest() if self._state == JobState.IDLE else None  # a job starting: no folder yet

    # --- the thread ---------------------------------------------------------------------------------
    def _work(self, cfg: TrainConfig, work, stop: threading.Event) -> None:
        try:
            result = work(stop)
        except UserError as exc:
            self._finish(JobState.FAILED, f"failed: {exc}")
            return
        except Exception as exc:  # a bug or a resource problem: keep the app up, say what happened
            log.exception("training failed")
            self._finish(JobState.FAILED, f"failed: {type(exc).__name__}: {first_line(exc)}")
            return
        self._run_id = result.run_id or self._run_id
        if result.state != JobState.DONE:
            self._finish(result.state, f"{result.state}: {result.message}")
            return
        if self.on_done is not None:
            try:
                self.on_done(result)  # the app switches Classify to the new run before we say "done"
            except Exception as exc:
                log.exception("on_done failed")
                self._note("warning", f"the new run could not be served: {first_line(exc)}")
        test, promoted = result.metrics.get("test", {}), result.metrics.get("promotion") or {}
        self._finish(JobState.DONE, f"done: run {result.run_id}, test accuracy {test.get('accuracy', 0):.3f}, "
                                    f"macro-F1 {test.get('f1_macro', 0):.3f}; " + promoted.get("message", "serves"))
        if cfg.hub_model_id:
            self._push(Run(result.run_dir), cfg.hub_model_id, cfg.hub_private)

    def _push(self, run: Run, repo: str, private: bool) -> None:
        self._note("push", f"pushing run {run.id} to {repo}")
        self._pushing = {"state": "pushing", "repo_id": repo, "url": "", "message": f"pushing run {run.id}"}
        try:
            result = hub.push_run(run.path, repo, private, api=self.hub_api)  # never raises
        finally:
            self._pushing = None
        self._note("push", f"push {result.state}: {result.url or result.repo_id} {result.message}".strip())

    def _on_event(self, event: dict) -> None:
        self._run_id = event.get("run_id") or self._run_id
        if event["event"] == "progress":
            self._progress = {k: event.get(k) for k in (*train.PROGRESS_KEYS, "elapsed_s")}
            if not self._stop.is_set():
                self._message = "training"
        elif event.get("message") and not self._stop.is_set():
            self._message = event["message"]

    def _finish(self, state: str, message: str) -> None:
        with self._lock:
            self._state, self._message = state, message
        self._note(state, message)

    def _note(self, kind: str, message: str) -> None:
        self._events.append({"time": round(time.time(), 3), "event": kind, "message": message})

    # --- helpers ------------------------------------------------------------------------------------
    def _describe(self) -> str:
        step, total = self._progress.get("step"), self._progress.get("total_steps")
        if self._pushing:
            return f"{self._pushing['message']} to {self._pushing['repo_id']}"
        if not self._run_id:
            return "starting"
        return f"run {self._run_id}" + (f", step {step}/{total}" if step is not None and total else "")

    def _find_run(self, run_id: str | None = None) -> Run | None:
        """The job's run folder (complete or partial), or the one named `run_id`."""
        run_id = run_id or self._run_id
        for name in (run_id, run_id + PARTIAL):
            if name and (self.runs_dir / name / "status.json").exists():
                return Run(self.runs_dir / name)
        return None

    def _newest(self) -> Run | None:
        return next(iter(list_runs(self.runs_dir)), None)

    def _job_status(self, run: Run | None) -> dict:
        folder = run.status if run else {}
        progress = {k: folder.get(k) for k in train.PROGRESS_KEYS}
        progress.update({k: v for k, v in self._progress.items() if v is not None})  # fresher than the file
        status = {"state": self._state, "run_id": self._run_id or None, **progress,
                  "elapsed_s": self._progress.get("elapsed_s"), "message": self._message,
                  "base_model": self._cfg.base_model if self._cfg else None,
                  "hub_model_id": self._cfg.hub_model_id if self._cfg else "",
                  "started": folder.get("started")}
        if run and self._state in ENDED:
            status.update(_results(run))
        return status

    def _idle_status(self) -> dict:
        run = self._newest()
        status = {"state": JobState.IDLE.value, "run_id": None, "step": None, "total_steps": None, "epoch": None,
                  "eta_s": None, "message": "no training since the app started"}
        if run is not None:
            status["last_run"] = {"run_id": run.id, "state": run.state, "message": run.status.get("message", "")}
            status["message"] = f"no training since the app started; the newest run is {run.id} ({run.state})"
            if run.is_complete:
                status.update(_results(run))
        return status


def checkpoint_step(run: Run) -> int:
    return int(run.checkpoint.name.rsplit("-", 1)[-1])


def resume_point(run: Run) -> dict:
    """How far a run that can resume got (`step` of `total_steps`), and the step it resumes from."""
    status = run.status
    return {"run_id": run.id, "state": run.state, "step": status.get("step"), "total_steps": status.get("total_steps"),
            "checkpoint_step": checkpoint_step(run), "message": status.get("message", "")}


def _results(run: Run) -> dict:
    """What a finished (or ended) run has to show: metrics, data report, push result."""
    return {"metrics": run.metrics or None, "data_report": run.data_report or None,
            "push": read_json(run.path / hub.PUSH_RESULT)}


def check_settings(cfg: TrainConfig):
    """What can be checked in a moment, before any thread starts: the config, that the model and the
    dataset exist (a local path, or a Hub repo), that the runs folder is writable. A local dataset must
    load: it is prepared here, and what this returns (`train.clean_data`'s cleaned rows; None for a
    Hub dataset, which the run loads) is handed to the run, so that it loads once."""
    cfg.validate()
    check_source(cfg.base_model)
    path = Path(cfg.dataset).expanduser()
    if looks_like_path(cfg.dataset) and not path.exists():
        raise UserError(f"dataset {cfg.dataset!r} does not exist: check the path")
    if not path.exists():
        check_on_hub("dataset", cfg.dataset)
    check_on_hub("model", cfg.base_model)
    check_writable(cfg.runs_dir)
    # a file type it cannot read, no train split, no usable rows ...
    return train.clean_data(cfg) if path.exists() else None
