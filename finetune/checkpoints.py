"""Resumable checkpoints: when to write them, the data a resumed run trains on, and the copy on the Hub.

The checkpoints themselves are the Trainer's own (`save_only_model=False`: weights, optimizer, scheduler,
RNG states and trainer_state.json with the step, the best metric and the callbacks' state), in
`<run>.partial/_checkpoints/checkpoint-<step>`, and a run resumes with the Trainer's
`train(resume_from_checkpoint=...)`. This module adds

* `Checkpoints`, a callback that asks the Trainer to save every `checkpoint_every_minutes` of training
  and at Stop (it saves at each validation too, for the best checkpoint);
* `save_splits` / `load_splits`: the run's prepared data, kept next to its checkpoints, so that a
  resumed run trains on the very rows it started with (corrections added meanwhile wait for the next run);
* `HubCheckpoints`: in the background, a copy of the newest checkpoint on the model repo's `resume`
  branch (one commit per checkpoint at most, not more often than every few minutes; the training rows
  go only to a private repo, and the reports as `hub.public` has them; the branch is deleted when the run
  finishes), and `restore_from_hub`, which brings it back onto a Space whose disk a restart wiped (a run
  whose rows stayed here rebuilds them from its dataset and seed as it resumes).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from datasets import DatasetDict, load_from_disk
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from core import settings
from core.errors import first_line, scrub
from core.runs import CHECKPOINTS, PARTIAL, TRAINER_STATE, Run, RunState, read_dict, write_json

from .hub import PushResult, client, explain_failure, link_or_copy, stage

log = logging.getLogger(__name__)

SPLITS = "splits"
BRANCH = "resume"               # the model repo's branch that holds the newest resumable checkpoint
POINTER = "resume.json"         # on that branch: {"run_id", "step", "state"}
HUB_PUSH_EVERY_S = 300.0        # at most one checkpoint commit this often


class Checkpoints(TrainerCallback):
    """Sets `control.should_save` every `every_s` seconds of training and at Stop; reports each save
    (`on_checkpoint(path, seconds)`, seconds: the time it took when this callback asked for it)."""

    def __init__(self, every_s: float, stop: threading.Event | None = None,
                 on_checkpoint: Callable[[Path, float | None], None] | None = None):
        self.every_s, self.stop, self.on_checkpoint = every_s, stop, on_checkpoint
        self._last = time.monotonic()
        self._asked: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        stopping = self.stop is not None and self.stop.is_set()
        due = self.every_s > 0 and time.monotonic() - self._last >= self.every_s
        if stopping or due:
            control.should_save = True
        if state.global_step >= state.max_steps and not stopping:
            args.save_only_model = True  # the last save only keeps the best weights: nothing is left to resume
        self._asked = time.monotonic() if control.should_save and not control.should_evaluate else None

    def on_save(self, args, state, control, **kwargs):
        now = time.monotonic()
        seconds = None if self._asked is None else round(now - self._asked, 3)
        self._last, self._asked = now, None
        if self.on_checkpoint is not None and state.is_world_process_zero:
            self.on_checkpoint(Path(args.output_dir) / f"checkpoint-{state.global_step}", seconds)


class SeededOrder(TrainerCallback):
    """Each epoch's order of the length-grouped batches drawn from the seed and the epoch, not from the
    global RNG as it happens to be when the epoch starts: a run resumed mid-training draws the same order.
    (The Trainer's plain random sampler is seeded like this already.)"""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        sampler = length_sampler(train_dataloader)
        if sampler is not None:
            epoch = int(round(state.epoch or 0.0, 6))  # mid-epoch on resume: the epoch it resumes
            sampler.generator = torch.Generator().manual_seed(args.seed + epoch)


def length_sampler(dataloader) -> LengthGroupedSampler | None:
    """The LengthGroupedSampler under a (possibly accelerate-wrapped, sharded) dataloader, if any."""
    holders = [dataloader, getattr(dataloader, "batch_sampler", None)]
    holders.append(getattr(holders[-1], "batch_sampler", None))
    for holder in holders:
        if isinstance(getattr(holder, "sampler", None), LengthGroupedSampler):
            return holder.sampler
    return None


def size_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1024**2, 1)


def save_splits(checkpoints_dir: Path, splits: DatasetDict) -> None:
    """The run's prepared splits, written once at its start (atomically: a folder renamed into place)."""
    target = Path(checkpoints_dir) / SPLITS
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".splits-", dir=target.parent))
    splits.save_to_disk(str(tmp))
    os.replace(tmp, target)


def load_splits(checkpoints_dir: Path) -> DatasetDict | None:
    path = Path(checkpoints_dir) / SPLITS
    return load_from_disk(str(path), keep_in_memory=True) if path.is_dir() else None


def trim_history(run_dir: Path, step: int) -> int:
    """Before resuming at `step`: drop the history's step events after it (the resumed run logs them
    again), so that the run has one history; returns the last step the history had reached."""
    path = Path(run_dir) / "history.jsonl"
    events = Run(run_dir).history()
    reached = max((e.get("step") or 0 for e in events), default=0)
    kept = [e for e in events if (e.get("step") or 0) <= step or "step" not in e]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(e, default=str) + "\n" for e in kept))
    os.replace(tmp, path)
    return reached


def relocate(checkpoint: Path) -> None:
    """A checkpoint brought from elsewhere (the Hub): its best-checkpoint path pointed into that folder."""
    state_file = checkpoint / TRAINER_STATE
    state = read_dict(state_file)
    best = state.get("best_model_checkpoint")
    if best and not Path(best).is_dir():
        state["best_model_checkpoint"] = str(checkpoint.parent / Path(best).name)
        write_json(state_file, state)


# --- the copy on the Hub ------------------------------------------------------------------------------
def snapshot(run_dir: Path, checkpoint: Path, dest: Path) -> Path:
    """`dest`/<run id>/: the run's small files as they may leave the server (`hub.stage`), its checkpoints
    (the newest, the best) and splits linked, as they are now; and `dest`/resume.json pointing at it."""
    run = Run(run_dir)
    folder = dest / run.id
    folder.mkdir(parents=True)
    for name in ("train_config.json", "data_report.json", "history.jsonl", "status.json"):
        if (run_dir / name).exists():
            stage(run_dir / name, folder / name)
    best = read_dict(checkpoint / TRAINER_STATE).get("best_model_checkpoint")
    for path in {checkpoint, *([Path(best)] if best else []), run_dir / CHECKPOINTS / SPLITS}:
        if path.is_dir():
            shutil.copytree(path, folder / CHECKPOINTS / path.name, copy_function=link_or_copy)
    step = read_dict(checkpoint / TRAINER_STATE).get("global_step")
    write_json(dest / POINTER, {"run_id": run.id, "step": step, "state": RunState.RUNNING.value})
    return dest


class HubCheckpoints:
    """Copies a run's newest resumable checkpoint to the `resume` branch of its Hub repo, in a thread of
    its own: `offer(checkpoint)` after each save takes a snapshot (hard links: cheap, and whole even when
    the Trainer deletes the folder meanwhile); the thread pushes the newest one, one commit per checkpoint
    at most, not more often than every `every_s` seconds; `close(done=True)` deletes the branch (the run
    finished, or failed). The branch holds one run, so it stays one checkpoint big; the run's training rows
    go only where the repo is private. Failures go to `report` and never reach training."""

    def __init__(self, run_dir: Path, repo_id: str, private: bool = False, api=None,
                 every_s: float = HUB_PUSH_EVERY_S, report: Callable[[PushResult], None] | None = None):
        self.run_dir, self.repo_id, self.private, self.every_s = Path(run_dir), repo_id, private, every_s
        self.token = settings.token()
        self.api, self.report = api, report or (lambda result: None)
        self.results: list[PushResult] = []
        # beside the run folder (hidden from list_runs), so that finishing the run cannot pull it away
        self._staging = Path(tempfile.mkdtemp(prefix=f".hub-{Run(run_dir).id}-", dir=self.run_dir.parent))
        self._pending: Path | None = None
        self._last = float("-inf")
        self._done: bool | None = None      # set by close()
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="hub-checkpoints", daemon=True)
        self._thread.start()

    @classmethod
    def maybe(cls, run_dir: Path, repo_id: str, private: bool, api=None, **kwargs) -> "HubCheckpoints | None":
        """A pusher when a Hub repo and a token (or a client, in tests) are set, else None."""
        if not repo_id or (api is None and not settings.token()):
            return None
        return cls(run_dir, repo_id, private, api, **kwargs)

    def offer(self, checkpoint: Path) -> None:
        try:
            taken = snapshot(self.run_dir, checkpoint, self._staging / f"step-{checkpoint.name}-{time.monotonic_ns()}")
        except OSError as exc:
            self._result(PushResult("failed", self.repo_id, message=f"no snapshot of {checkpoint.name}: {exc}"))
            return
        with self._wake:
            if self._pending is not None:
                shutil.rmtree(self._pending, ignore_errors=True)  # a newer one replaces it, unpushed
            self._pending = taken
            self._wake.notify()

    def close(self, done: bool = False, timeout: float | None = None) -> None:
        """No more checkpoints; `done`: the run finished, so the branch no longer offers it. Waits up to
        `timeout` seconds for the last push."""
        with self._wake:
            self._done = done
            self._wake.notify()
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._wake:
                while self._done is None and (self._pending is None or time.monotonic() - self._last < self.every_s):
                    wait = None if self._pending is None else self.every_s - (time.monotonic() - self._last)
                    self._wake.wait(wait)
                taken, self._pending, done = self._pending, None, self._done
            if taken is not None and done is not True:
                self._push(taken)
            if done is not None:
                if done and self._last > float("-inf"):
                    self._mark_done()
                shutil.rmtree(self._staging, ignore_errors=True)
                return

    def _push(self, taken: Path) -> None:
        step = read_dict(taken / POINTER).get("step")
        try:
            api = self.api = client(self.api, self.token)  # one client for the run's pushes
            api.create_repo(self.repo_id, private=self.private, exist_ok=True, repo_type="model")
            api.create_branch(self.repo_id, branch=BRANCH, exist_ok=True, repo_type="model")
            private = bool(getattr(api.repo_info(self.repo_id, repo_type="model"), "private", False))
            api.upload_folder(repo_id=self.repo_id, folder_path=str(taken), revision=BRANCH, repo_type="model",
                              delete_patterns=["*"], ignore_patterns=[] if private else [f"*/{CHECKPOINTS}/{SPLITS}/*"],
                              commit_message=f"resumable checkpoint of run {Run(self.run_dir).id} at step {step}")
            rows = "" if private else " (not its training rows: the repo is public)"
            self._result(PushResult("pushed", self.repo_id, message=f"resumable checkpoint at step {step} on "
                                                                    f"branch {BRANCH} of {self.repo_id}{rows}"))
        except Exception as exc:  # network, auth, rate limit: say so, keep training
            self._result(PushResult("failed", self.repo_id, message="resumable checkpoint not pushed: " + scrub(
                explain_failure(exc, self.repo_id), self.token)))
        finally:
            self._last = time.monotonic()
            shutil.rmtree(taken, ignore_errors=True)

    def _mark_done(self) -> None:
        """The run finished (or failed): its resume branch goes, checkpoints and all."""
        try:
            client(self.api, self.token).delete_branch(self.repo_id, branch=BRANCH, repo_type="model")
        except Exception as exc:
            self._result(PushResult("failed", self.repo_id, message=f"could not delete the {BRANCH} branch of "
                                    f"the finished run: " + scrub(explain_failure(exc, self.repo_id), self.token)))

    def _result(self, result: PushResult) -> None:
        self.results.append(result)
        try:
            self.report(result)
        except Exception:
            log.exception("reporting a checkpoint push failed")


def restore_from_hub(runs_dir: str | Path, repo_id: str, api=None, local: tuple[str, ...] = ()) -> PushResult:
    """At start-up (a Space whose restart wiped its disk): when the repo's `resume` branch holds an
    unfinished run that this disk lacks, bring it back as an interrupted run that can resume. The branch's
    settings name local paths by their last part only (`hub.public`): one that is the last part of a
    path in `local` (the app's own model and dataset) is that path again. Never raises; the result says
    restored, skipped or failed, and why."""
    token, runs_dir = settings.token(), Path(runs_dir)
    if not repo_id or (api is None and not token):
        return PushResult("skipped", repo_id, message="no Hub repo or no token: nothing to restore")
    try:
        api = client(api, token)
        runs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".restore-", dir=runs_dir) as tmp:
            got = api.hf_hub_download(repo_id, POINTER, revision=BRANCH, repo_type="model", local_dir=tmp)
            pointer = json.loads(Path(got).read_text())
            run_id = pointer.get("run_id") or ""
            if pointer.get("state") != RunState.RUNNING or not run_id:
                return PushResult("skipped", repo_id, message="no unfinished run on the Hub")
            if any((runs_dir / name).exists() for name in (run_id, run_id + PARTIAL)):
                return PushResult("skipped", repo_id, message=f"run {run_id} is on this disk already")
            api.snapshot_download(repo_id, revision=BRANCH, repo_type="model", local_dir=tmp,
                                  allow_patterns=[f"{run_id}/*"])
            target = runs_dir / f"{run_id}{PARTIAL}"
            os.replace(Path(tmp) / run_id, target)
        for checkpoint in (target / CHECKPOINTS).glob("checkpoint-*"):
            relocate(checkpoint)
        _local_paths_again(target / "train_config.json", local)
        status = read_dict(target / "status.json")
        write_json(target / "status.json", {**status, "state": RunState.INTERRUPTED.value, "message":
                   f"brought back from the Hub ({repo_id}, branch {BRANCH}) after a restart: it can resume"})
        return PushResult("restored", repo_id, message=f"run {run_id} restored from the Hub at step {pointer.get('step')}")
    except Exception as exc:
        if type(exc).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError", "RepositoryNotFoundError",
                                  "RevisionNotFoundError"):
            return PushResult("skipped", repo_id, message="no resumable checkpoint on the Hub")
        return PushResult("failed", repo_id, message=scrub(f"could not restore from the Hub: {first_line(exc)}", token))


def _local_paths_again(config_file: Path, local: tuple[str, ...]) -> None:
    config = read_dict(config_file)
    names = {Path(p).name: p for p in local if p and Path(p).expanduser().exists()}
    for key in ("base_model", "dataset"):
        if config.get(key) in names and not Path(config[key]).exists():
            config[key] = names[config[key]]
    if config:
        write_json(config_file, config)
