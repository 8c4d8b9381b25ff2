"""Resuming a run: after a Stop, a kill -9 or a Space restart, a run continues at its step and ends as if it
had never stopped (same data order, same step count, the same weights)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from safetensors.torch import load_file

from core.errors import UserError
from core.runs import Run, RunWriter, list_runs
from finetune import train

from conftest import ROOT


def stop_at(step: int):
    stop = threading.Event()

    def listen(event):
        if event["event"] == "progress" and event["step"] >= step:
            stop.set()
    return stop, listen


def weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def steps(run_dir, kind="log"):
    return [e["step"] for e in Run(run_dir).history() if e["event"] == kind]


def test_resumed_run_equals_an_uninterrupted_one(tiny_config, runs_dir):
    cfg = dict(epochs=3, train_size=60, early_stopping_patience=0, measure_forgetting=False, few_shot_k=0,
               evals_per_epoch=2, checkpoint_every_minutes=0)
    whole = train.fine_tune(tiny_config(**cfg))
    stop, listen = stop_at(13)  # in the second epoch, between two validations
    stopped = train.fine_tune(tiny_config(**cfg), on_event=listen, stop=stop)
    assert stopped.state == "stopped" and Run(stopped.run_dir).can_resume
    assert Run(stopped.run_dir).checkpoint.name == "checkpoint-13"

    events = []
    resumed = train.resume(stopped.run_dir, on_event=events.append)
    assert resumed.state == "done" and resumed.run_id == stopped.run_id
    assert not (resumed.run_dir / "_checkpoints").exists()
    a, b = weights(whole.run_dir), weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() < 1e-5, name
    assert steps(resumed.run_dir) == steps(whole.run_dir)
    assert steps(resumed.run_dir, "eval") == steps(whole.run_dir, "eval")
    assert Run(resumed.run_dir).metrics["best_checkpoint_step"] == Run(whole.run_dir).metrics["best_checkpoint_step"]
    marks = [e for e in Run(resumed.run_dir).history() if e["event"] == "resumed"]
    assert [m["step"] for m in marks] == [13]
    assert "resumed" in (resumed.run_dir / "README.md").read_text()
    assert events[0]["run_id"] == stopped.run_id


def test_only_interrupted_or_stopped_runs_with_a_checkpoint_resume(runs_dir, trained_run, tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        train.resume(tmp_path)
    with pytest.raises(UserError, match="has finished"):
        train.resume(trained_run)
    w = RunWriter(runs_dir)
    w.abandon("failed", "boom")
    with pytest.raises(UserError, match="only an interrupted or stopped run"):
        train.resume(w.path)
    w = RunWriter(runs_dir)
    w.abandon("stopped")
    with pytest.raises(UserError, match="no resumable checkpoint"):
        train.resume(w.path)
