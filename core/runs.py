"""The run folder: the contract between training, serving and the Hub.

    runs/<run-id>/            a complete run: a standard transformers checkpoint folder
        config.json, model.safetensors, tokenizer files    (labels in config.json)
        train_config.json     the TrainConfig it was trained with
        data_report.json      rows in, dropped, duplicates, leakage, label counts
        metrics.json          test metrics of the fine-tuned model and of the few-shot baseline
        history.jsonl         one line per log / evaluation event
        README.md             the model card
        status.json           {"state": "done", ...}
    runs/<run-id>.partial/    a run in progress, or one that was stopped, failed or interrupted
        _checkpoints/checkpoint-<step>/   the Trainer's resumable checkpoints (the last, and the best)
        _checkpoints/splits/  the run's data splits, so that a resumed run trains on the same rows
    runs/<run-id>/serving/    the ONNX exports that serve it (inference/onnx_backend.py; made again when missing)

A run is written as `<id>.partial` and renamed to `<id>` only once complete, so a crash or a stop
never leaves a half-written checkpoint that `latest()` could pick. A running run's status.json names
the process that writes it by its pid and its start token (`process_token`: the boot and the process's
start time), so that after a restart (where the app may get the same pid, as PID 1 in a container does)
the run is not taken for alive. `prune` keeps the disk bounded: the exports and checkpoints of the
newest runs only.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path

from .errors import scrub

log = logging.getLogger(__name__)

PARTIAL = ".partial"
CHECKPOINTS = "_checkpoints"
SERVING_DIR = "serving"   # a complete run's ONNX exports
TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last into a checkpoint: its commit record
RESUMABLE_STATES = ("interrupted", "stopped")
SERVING_FILE = "serving.json"
TRAIN_CONFIG = "train_config.json"   # the TrainConfig a run was trained with (max_length travels in its tokenizer)


class RunState(StrEnum):
    """A run folder's status.json "state"."""
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


MIN_FREE_BYTES = 4 * 1024**3  # gpt2: two resumable checkpoints (newest, best) of 1.4 GB each, and the model


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def write_json(path: Path, value) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def read_dict(path: Path) -> dict:
    """A JSON object file as a dict; {} when it is missing, unreadable or not an object (a foreign file)."""
    value = read_json(path)
    return value if isinstance(value, dict) else {}


class Run:
    """A run folder, complete or not."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name.removesuffix(PARTIAL)

    @property
    def status(self) -> dict:
        return read_dict(self.path / "status.json")

    @property
    def state(self) -> str:
        return self.status.get("state", "unknown")

    @property
    def is_complete(self) -> bool:
        return (not self.path.name.endswith(PARTIAL) and self.state == RunState.DONE
                and (self.path / "config.json").exists() and any(self.path.glob("*.safetensors")))

    @property
    def metrics(self) -> dict:
        return read_dict(self.path / "metrics.json")

    @property
    def promoted(self) -> bool:
        """Whether it took over serving when it finished (finetune.promotion); runs from before that rule did."""
        return (self.metrics.get("promotion") or {}).get("promoted", True) is not False

    @property
    def config(self) -> dict:
        return read_dict(self.path / TRAIN_CONFIG)

    @property
    def data_report(self) -> dict:
        return read_dict(self.path / "data_report.json")

    @property
    def checkpoint(self) -> Path | None:
        """The newest complete resumable checkpoint (see `resumable_checkpoint`), or None."""
        return resumable_checkpoint(self.path / CHECKPOINTS)

    @property
    def can_resume(self) -> bool:
        return self.path.name.endswith(PARTIAL) and self.state in RESUMABLE_STATES and self.checkpoint is not None

    def history(self) -> list[dict]:
        """The events logged so far; a half-written last line (a crash mid-write) is skipped."""
        events = []
        try:
            lines = (self.path / "history.jsonl").read_text().splitlines()
        except OSError:
            return events
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def __repr__(self):
        return f"Run({self.path})"


class RunWriter:
    """Writes one run: starts it as `<id>.partial`, records events, and finishes or abandons it."""

    def __init__(self, runs_dir: str | Path, run_id: str | None = None, reopen: bool = False):
        """A new `<id>.partial` folder; `reopen`: the existing one of `run_id`, to resume it."""
        self.runs_dir = Path(runs_dir)
        self.id = run_id or new_run_id()
        self.path = self.runs_dir / f"{self.id}{PARTIAL}"
        self.path.mkdir(parents=True, exist_ok=reopen)
        self._lock = threading.Lock()
        owner = {"pid": os.getpid(), "process": process_token()}
        if reopen:
            self.set_status(RunState.RUNNING, **owner, resumed=_now(), finished=None, message="")
        else:
            self.set_status(RunState.RUNNING, **owner, started=_now())

    @classmethod
    def reopen(cls, run_dir: str | Path) -> "RunWriter":
        """The writer of an existing partial run (interrupted or stopped), to resume it in place."""
        run_dir = Path(run_dir)
        return cls(run_dir.parent, run_dir.name.removesuffix(PARTIAL), reopen=True)

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    def write_json(self, name: str, value) -> None:
        write_json(self.path / name, value)

    def log_event(self, event: dict) -> None:
        line = scrub(json.dumps({"time": round(time.time(), 3), **event}, default=str)) + "\n"
        with self._lock, open(self.path / "history.jsonl", "a") as f:
            f.write(line)
            f.flush()

    def set_status(self, state: str, **extra) -> None:
        state = RunState(state)
        with self._lock:
            status = read_dict(self.path / "status.json")
            status.update({k: scrub(v) if isinstance(v, str) else v for k, v in extra.items()},
                          state=state, updated=_now())
            write_json(self.path / "status.json", status)

    def finish(self, **extra) -> Path:
        """Mark done and rename `<id>.partial` → `<id>`: from now on `latest()` may pick it."""
        shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
        self.set_status(RunState.DONE, finished=_now(), **extra)
        final = self.runs_dir / self.id
        os.replace(self.path, final)
        self.path = final
        return final

    def abandon(self, state: str, message: str = "") -> Path:
        """A stopped or interrupted run keeps its resumable checkpoint; a failed one keeps its history and
        status, not its heavy checkpoints."""
        if state not in RESUMABLE_STATES:
            shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
        self.set_status(state, finished=_now(), message=message)
        return self.path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def list_runs(runs_dir: str | Path) -> list[Run]:
    """Every run folder, newest first; a folder that is not a run is skipped with a warning."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = []
    for path in runs_dir.iterdir():
        if not path.is_dir() or path.name.startswith((".", "_")):
            continue
        run = Run(path)
        if not run.status.get("state"):
            log.warning("skipping %s: not a run folder (no readable status.json)", path)
            continue
        if run.state == RunState.DONE and not run.is_complete:
            log.warning("skipping %s: marked done but its checkpoint is missing or incomplete", path)
            continue
        runs.append(run)
    return sorted(runs, key=lambda r: r.id, reverse=True)


def latest(runs_dir: str | Path) -> Run | None:
    """The newest complete run, or None."""
    return next((r for r in list_runs(runs_dir) if r.is_complete), None)


def resumable(runs_dir: str | Path) -> list[Run]:
    """The interrupted or stopped runs that can resume (a complete checkpoint), newest first."""
    return [r for r in list_runs(runs_dir) if r.can_resume]


def serving(runs_dir: str | Path) -> Run | None:
    """The run chosen to serve (see `pin`), else the newest complete one that was no worse than what served
    when it finished (`promoted`)."""
    pinned = read_dict(Path(runs_dir) / SERVING_FILE)
    if pinned.get("run_id"):
        run = Run(Path(runs_dir) / pinned["run_id"])
        if run.is_complete:
            return run
        log.warning("pinned run %s is not a complete run; serving the newest instead", pinned["run_id"])
    return next((r for r in list_runs(runs_dir) if r.is_complete and r.promoted), None)


def pin(runs_dir: str | Path, run_id: str | None) -> None:
    """Serve `run_id` instead of the latest; None returns to the latest (and to each new run)."""
    path = Path(runs_dir) / SERVING_FILE
    if run_id is None:
        path.unlink(missing_ok=True)
        return
    if not Run(Path(runs_dir) / run_id).is_complete:
        raise ValueError(f"{run_id} is not a complete run")
    write_json(path, {"run_id": run_id})


def resumable_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest `checkpoint-<step>` folder that is complete: its trainer_state.json, which the Trainer
    writes after the weights, optimizer, scheduler and RNG states, reads whole. One a crash cut short
    mid-save is passed over, so the previous one counts (the Trainer deletes that only after the new one
    is written)."""
    found = []
    for path in Path(checkpoints_dir).glob("checkpoint-*"):
        state = read_dict(path / TRAINER_STATE)
        if isinstance(state.get("global_step"), int) and (path / "optimizer.pt").exists():
            found.append((state["global_step"], path))
    return max(found, key=lambda f: f[0])[1] if found else None


def drop_incomplete_checkpoints(checkpoints_dir: Path) -> None:
    """Remove checkpoint folders newer than the resumable one (half-written by a crash mid-save)."""
    keep = resumable_checkpoint(checkpoints_dir)
    step = int(keep.name.rsplit("-", 1)[-1]) if keep else -1
    for path in Path(checkpoints_dir).glob("checkpoint-*"):
        if path.name.rsplit("-", 1)[-1].isdigit() and int(path.name.rsplit("-", 1)[-1]) > step:
            shutil.rmtree(path, ignore_errors=True)


def mark_interrupted(runs_dir: str | Path) -> list[Run]:
    """At start-up: runs left 'running' by a process that is gone (kill -9, a crash, a Space or container
    restart) become 'interrupted'; their resumable checkpoint is kept (see `Run.can_resume`)."""
    marked = []
    for run in list_runs(runs_dir):
        status = run.status
        if status.get("state") == RunState.RUNNING and not _alive(status.get("pid"), status.get("process")):
            write_json(run.path / "status.json", {**status, "state": RunState.INTERRUPTED.value, "updated": _now(),
                                                  "message": "the process ended before the run finished"})
            marked.append(run)
    return marked


def process_token(pid: int | None = None) -> str:
    """What tells a process from any other that had (or will have) its pid: this boot's id and the
    process's start time (in clock ticks since the boot), from /proc; "" where there is no /proc."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
    except OSError:
        return ""
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, starttime: after the name in parentheses


def _alive(pid, token=None) -> bool:
    """Whether the process that wrote a run's status is still running: its pid, and (where the status has
    one) its start token. A status without a token that names this process's pid was written by an
    earlier process, where this one writes tokens (it has /proc): not alive."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if token:
        return process_token(pid) == token
    if pid == os.getpid():
        return not process_token()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune(runs_dir: str | Path, keep: int, protect=()) -> list[Path]:
    """Keep the disk bounded: beyond the `keep` newest runs, a complete run loses its ONNX exports
    (`serving/`, exported again should it serve) and an unfinished one its resumable checkpoints (it can
    no longer resume). The run that serves (the pinned one, else the newest complete one), those named in
    `protect` and a running one keep theirs. → the folders removed."""
    served = serving(runs_dir)
    protect = {*protect, served.id if served else None}
    removed = []
    for run in list_runs(runs_dir)[keep:]:
        if run.id in protect or run.state == RunState.RUNNING:
            continue
        for folder in (run.path / SERVING_DIR, run.path / CHECKPOINTS):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    if removed:
        log.info("kept the newest %d runs' exports and checkpoints: removed %s", keep,
                 ", ".join(f"{p.parent.name}/{p.name}" for p in removed))
    return removed


def check_writable(runs_dir: str | Path, need_bytes: int = MIN_FREE_BYTES) -> None:
    """Before training: the runs folder must be writable and have room for a checkpoint."""
    from .errors import UserError

    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        probe = runs_dir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"the runs folder {runs_dir} is not writable ({exc.strerror or exc}): "
                        f"set --runs-dir / RUNS_DIR to a writable folder") from None
    free = shutil.disk_usage(runs_dir).free
    if free < need_bytes:
        raise UserError(f"only {free / 1024**2:.0f} MB free in {runs_dir}; a run needs about "
                        f"{need_bytes / 1024**2:.0f} MB: free some space or point RUNS_DIR elsewhere")
