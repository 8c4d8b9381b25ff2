"""web.jobs: one background training at a time, stop, status from the run folder, Hub push."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from core import runs
from finetune import data
from web.jobs import TrainingJob
from tests.helpers import FakeHub


def wait_until_ended(job: TrainingJob, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not job.busy:
            return job.status()
        time.sleep(0.1)
    raise AssertionError(f"job still running after {timeout}s: {job.status()}")


def test_trains_in_background_refuses_a_second_start_and_pushes(tiny_config, runs_dir, monkeypatch):
    loads, load_splits = [], data.load_splits
    monkeypatch.setattr(data, "load_splits", lambda *a, **kw: loads.append(a) or load_splits(*a, **kw))
    done, hub = [], FakeHub()
    job = TrainingJob(runs_dir, on_done=done.append, hub_api=hub)
    assert job.status()["state"] == "idle"

    # two validations: the first one's checkpoint is resumable (the last step's holds the weights only)
    accepted, message = job.start(tiny_config(hub_model_id="someone/tweets", evals_per_epoch=2,
                                              early_stopping_patience=0))
    assert accepted, message
    again, why = job.start(tiny_config())
    assert not again and "already running" in why  # refused, not queued

    status = wait_until_ended(job)
    assert status["state"] == "done", status
    run_id = status["run_id"]
    assert status["step"] == status["total_steps"] > 0
    assert status["metrics"]["test"]["n"] == 30 and "baseline" in status["metrics"]
    assert status["data_report"]["sizes"]["train"] == 120
    assert len(loads) == 1  # the settings check loaded the dataset; the run used what it prepared
    assert status["push"]["state"] == "pushed" and status["push"]["url"].endswith("someone/tweets")
    runs_pushed = [(u["repo_id"], Path(u["folder_path"]).name) for u in hub.uploads if u.get("revision") is None]
    assert runs_pushed == [("someone/tweets", run_id)]
    # the resumable checkpoint went to the repo's resume branch while training, and the branch is gone now
    assert [u["revision"] for u in hub.uploads if u.get("revision")] == ["resume"]
    assert ("delete_branch", "someone/tweets", "resume") in hub.calls and not [k for k in hub.files if len(k) == 3]
    assert [r.run_id for r in done] == [run_id]  # on_done ran (the app switches Classify to it)
    assert runs.latest(runs_dir).id == run_id
    kinds = {e["event"] for e in job.events()}
    assert {"started", "data", "start", "log", "test", "done", "push"} <= kinds


def test_stop_ends_the_run_and_keeps_the_previous_model(tiny_config, runs_dir, trained_run):
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    job = TrainingJob(runs_dir)
    accepted, message = job.start(tiny_config(epochs=50))
    assert accepted, message
    deadline = time.monotonic() + 60
    while not (job.status().get("step") or 0) >= 2:
        assert time.monotonic() < deadline and job.busy, job.status()
        time.sleep(0.05)
    stopping, _ = job.stop()
    assert stopping

    status = wait_until_ended(job)
    assert status["state"] == "stopped"
    assert status["step"] < status["total_steps"]
    assert runs.Run(runs_dir / f"{status['run_id']}.partial").state == "stopped"
    assert runs.latest(runs_dir).id == trained_run.name  # the last good run still serves
    assert job.stop() == (False, "no training is running")


@pytest.mark.parametrize("overrides, words", [
    ({"epochs": 0}, "epochs must be > 0"),
    ({"dataset": "/no/such/folder"}, "does not exist"),
    ({"base_model": "/no/such/model"}, "does not exist"),
    ({"hub_model_id": "not-a-repo"}, "user/name"),
])
def test_bad_settings_are_refused_before_any_thread(tiny_config, runs_dir, overrides, words):
    job = TrainingJob(runs_dir)
    accepted, message = job.start(tiny_config(**overrides))
    assert not accepted and words in message
    assert not job.busy and job.status()["state"] == "idle"


def test_a_dataset_file_it_cannot_read_is_refused(tiny_config, tiny_model, runs_dir):
    job = TrainingJob(runs_dir)
    accepted, message = job.start(tiny_config(dataset=str(tiny_model / "merges.txt")))
    assert not accepted and "unknown type" in message and not job.busy


def test_unwritable_runs_dir_is_refused(tiny_config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    job = TrainingJob(tmp_path / "runs")
    accepted, message = job.start(tiny_config(runs_dir=str(blocker / "runs")))
    assert not accepted and "not writable" in message


def test_status_after_a_restart_comes_from_the_run_folder(runs_dir, trained_run):
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    # a run left "running" by a process that is gone: marked interrupted at start-up
    dead = runs_dir / "20000101-000000-dead.partial"
    dead.mkdir()
    runs.write_json(dead / "status.json", {"state": "running", "pid": 999_999_999})

    job = TrainingJob(runs_dir)  # a new app process on the same folder
    assert [r.id for r in job.interrupted] == ["20000101-000000-dead"]
    status = job.status()
    assert status["state"] == "idle"
    assert status["last_run"]["run_id"] == trained_run.name
    assert status["metrics"]["test"]["accuracy"] == runs.Run(trained_run).metrics["test"]["accuracy"]
    assert any(e["event"] == "eval" for e in job.events())


def test_push_without_token_is_skipped_and_a_failed_push_can_be_retried(runs_dir, trained_run):
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    job = TrainingJob(runs_dir)
    assert job.push_again() == (False, "no Hub repo set: the app's owner sets HUB_MODEL_ID")

    assert job.push_again(repo_id="someone/tweets")[0]  # no HF_TOKEN in the tests: skipped, with why
    assert "HF_TOKEN" in wait_until_ended(job)["push"]["message"]

    job.hub_api = FakeHub(fail=ConnectionError("Name or service not known"))
    assert job.push_again(repo_id="someone/tweets")[0]
    push = wait_until_ended(job)["push"]
    assert push["state"] == "failed" and "cannot be reached" in push["message"]

    job.hub_api = FakeHub()
    assert job.push_again(repo_id="someone/tweets")[0]
    assert wait_until_ended(job)["push"]["state"] == "pushed"


def test_hub_ids_are_checked_before_the_thread(monkeypatch, tiny_config, runs_dir):
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import RepositoryNotFoundError

    def unreachable(repo_id, timeout):
        raise ConnectionError("[Errno -2] Name or service not known")

    def missing(repo_id, timeout):
        url = f"https://huggingface.co/api/datasets/{repo_id}"
        response = httpx2.Response(404, request=httpx2.Request("GET", url))
        raise RepositoryNotFoundError(f"404 {repo_id}", response=response)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(runs_dir / "empty-cache"))
    job = TrainingJob(runs_dir)
    monkeypatch.setattr("core.errors.model_info", unreachable)
    accepted, message = job.start(tiny_config(base_model="gpt2"))
    assert not accepted and "Hub cannot be reached" in message and "local folder" in message
    monkeypatch.setattr("core.errors.dataset_info", missing)
    accepted, message = job.start(tiny_config(dataset="someone/no-such-data"))
    assert not accepted and "neither a local path nor a repo on the Hub" in message
    assert not job.busy
