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
from web import handlers, views

from conftest import ROOT
from tests.helpers import serve, tiny_defaults, wait_for_end


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
    loss, _ = views.curves(Run(resumed.run_dir).history())  # one set of curves, with a mark where it resumed
    assert loss[loss["series"] == "resumed here"]["step"].tolist() == [13]
    assert "resumed" in (resumed.run_dir / "README.md").read_text()
    assert events[0]["run_id"] == stopped.run_id


def test_the_last_step_saves_the_weights_only_a_stop_saves_everything(tmp_path):
    from types import SimpleNamespace
    from transformers import TrainerControl

    from finetune.checkpoints import Checkpoints

    for step, stopping, only_model in ((5, False, False), (10, False, True), (10, True, False)):
        args, stop = SimpleNamespace(save_only_model=False), threading.Event()
        if stopping:
            stop.set()
        Checkpoints(0, stop).on_step_end(args, SimpleNamespace(global_step=step, max_steps=10), TrainerControl())
        assert args.save_only_model is only_model, (step, stopping)


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


def killed_run(tiny_model, tiny_dataset, runs_dir, epochs: int = 30) -> Run:
    """`python -m finetune` in a subprocess, killed with SIGKILL right after its first resumable checkpoint."""
    from test_cli import ENV, tiny_args

    args = tiny_args(tiny_model, tiny_dataset, runs_dir) + [
        "--epochs", str(epochs), "--early-stopping-patience", "0", "--no-measure-forgetting",
        "--checkpoint-every-minutes", "0.0005"]  # a checkpoint about every step
    proc = subprocess.Popen([sys.executable, "-m", "finetune", *args], env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(r.checkpoint for r in list_runs(runs_dir)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    (run,) = list_runs(runs_dir)
    assert run.state == "running" and run.path.name.endswith(".partial")  # as a kill leaves it
    return run


def test_kill_9_after_the_first_checkpoint_then_resume_from_the_command_line(tiny_model, tiny_dataset, runs_dir):
    from test_cli import cli

    run = killed_run(tiny_model, tiny_dataset, runs_dir)
    killed_at = int(run.checkpoint.name.split("-")[1])
    out = cli("-m", "finetune", "--resume", str(run.path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and f"run folder: {runs_dir / run.id}" in out.stdout
    done = Run(runs_dir / run.id)
    assert done.is_complete and done.status["step"] == done.status["total_steps"] == 30 * 8
    history = done.history()
    (mark,) = [e for e in history if e["event"] == "resumed"]
    assert mark["step"] >= killed_at  # at least where the kill found it
    logged = [e["step"] for e in history if e["event"] == "log"]
    assert logged == sorted(set(logged)) and logged[-1] == 30 * 8  # one history: each step once, in order
    assert json.loads((done.path / "train_config.json").read_text())["epochs"] == 30
    out = cli("-m", "finetune", "--resume", str(done.path))
    assert out.returncode == 2 and "has finished" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_app_after_a_kill_offers_resume_and_finishes_the_run(tiny_model, tiny_dataset, runs_dir):
    run = killed_run(tiny_model, tiny_dataset, runs_dir, epochs=6)
    with serve(tiny_defaults(tiny_model, tiny_dataset, runs_dir)) as (client, backend, url):  # the restart
        status = client.predict(api_name="/status")
        assert [p["run_id"] for p in status["resumable"]] == [run.id]
        assert status["resumable"][0]["state"] == "interrupted"
        page = handlers.live(backend, None)
        assert page["resume_button"].visible
        assert run.id.replace("-", "\\-") in page["resume_note"] and "checkpoint at step" in page["resume_note"]
        assert handlers.show_runs(backend)["resume_pick"].value == run.id

        answer = client.predict(api_name="/resume")
        assert answer["accepted"] and "resuming run" in answer["message"], answer
        assert not client.predict(api_name="/resume")["accepted"]  # one job at a time
        end = wait_for_end(client)
        assert end["state"] == "done" and end["run_id"] == run.id, end
        assert end["step"] == end["total_steps"] == 6 * 8 and end["resumable"] == []
        assert Run(runs_dir / run.id).is_complete and backend.model_info()["name"] == run.id
        assert client.predict(run_id="nope", api_name="/resume") == {"accepted": False, "message": "no run nope here"}


def test_checkpoints_go_to_the_hub_throttled_and_come_back_after_a_restart_without_disk(tiny_config, runs_dir, tmp_path):
    from finetune import checkpoints
    from tests.helpers import FakeHub

    hub, repo = FakeHub(), "someone/tweets"
    cfg = tiny_config(epochs=3, train_size=60, early_stopping_patience=0, measure_forgetting=False, few_shot_k=0,
                      evals_per_epoch=2, checkpoint_every_minutes=0, hub_model_id=repo)
    stop, listen = stop_at(13)
    stopped = train.fine_tune(cfg, on_event=listen, stop=stop, hub_api=hub)
    assert stopped.state == "stopped"
    deadline = time.monotonic() + 30  # Stop's checkpoint goes up in the background
    while len([e for e in Run(stopped.run_dir).history() if e["event"] == "hub-checkpoint"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    commits = [u for u in hub.uploads if u.get("revision") == checkpoints.BRANCH]
    # checkpoints at steps 4, 8, 12 (validations) and 13 (Stop): the first goes at once, then no more than
    # one every few minutes, so 8 and 12 were replaced unpushed; Stop's goes up as the run ends
    steps = [json.loads(hub.files[(repo, "resume.json", "resume")])["step"]]
    assert len(commits) == 2 and steps == [13] and (repo, "resume") in hub.branches
    on_hub = {k[1] for k in hub.files if len(k) == 3}
    assert f"{stopped.run_id}/_checkpoints/checkpoint-13/optimizer.pt" in on_hub
    kept = {name.split("/")[2] for name in on_hub if "/_checkpoints/checkpoint-" in name}
    assert "checkpoint-13" in kept and len(kept) <= 2  # one run's newest and its best, not every one
    assert not any("/_checkpoints/splits/" in name for name in on_hub)  # a public repo: no training rows
    assert str(tmp_path) not in hub.files[(repo, f"{stopped.run_id}/train_config.json", "resume")].decode()
    pushed = [e for e in Run(stopped.run_dir).history() if e["event"] == "hub-checkpoint"]
    assert [e["state"] for e in pushed] == ["pushed", "pushed"] and "not its training rows" in pushed[0]["message"]

    fresh = tmp_path / "fresh-disk" / "runs"  # the Space restarted without its disk
    restored = checkpoints.restore_from_hub(fresh, repo, api=hub, local=(cfg.base_model, cfg.dataset))
    assert restored.state == "restored", restored
    run = Run(fresh / f"{stopped.run_id}.partial")
    assert run.state == "interrupted" and run.can_resume and run.checkpoint.name == "checkpoint-13"
    assert run.config["dataset"] == cfg.dataset  # named by its last part on the Hub: the app's own path again
    assert checkpoints.restore_from_hub(fresh, repo, api=hub).state == "skipped"  # already here

    resumed = train.resume(run.path, hub_api=hub)  # its rows made again from the dataset and seed
    assert resumed.state == "done" and resumed.run_id == stopped.run_id
    before = Run(stopped.run_dir).data_report["sizes"]
    assert Run(resumed.run_dir).data_report["sizes"] == before and "made again" in str(Run(resumed.run_dir).history())
    assert (repo, "resume") not in hub.branches and not [k for k in hub.files if len(k) == 3]  # deleted: done
    assert checkpoints.restore_from_hub(tmp_path / "another" / "runs", repo, api=hub).state == "skipped"


def test_a_failing_hub_is_reported_and_never_stops_training(tiny_config):
    from tests.helpers import FakeHub

    hub = FakeHub(fail="Name or service not known")
    result = train.fine_tune(tiny_config(hub_model_id="someone/tweets", measure_forgetting=False, evals_per_epoch=2,
                                         early_stopping_patience=0), hub_api=hub)  # a checkpoint before the last step
    assert result.state == "done"
    failed = [e for e in Run(result.run_dir).history() if e["event"] == "hub-checkpoint"]
    assert failed and failed[0]["state"] == "failed" and "cannot be reached" in failed[0]["message"]
