"""Faults at the engine level: a stop, a kill -9, a failing Hub, junk in the runs folder, no room to
write, pickle weights and bad settings. Each must leave the last complete run serving and say what
happened in one line."""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub.utils import hf_raise_for_status

from core import runs
from finetune import hub, train
from core.errors import UserError
from core.model import check_source
from inference.classifier import Classifier
from inference.serving import ModelServer
from tests.helpers import FakeHub, serve
from web.limits import MAX_TRAIN_UPLOAD_BYTES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def previous(trained_run, runs_dir) -> runs.Run:
    """A runs folder that already holds one complete run (a copy of the shared trained run)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    return runs.Run(runs_dir / trained_run.name)


# --- stop -----------------------------------------------------------------------------------------
def test_stop_in_the_first_epoch_ends_at_the_next_step_and_the_previous_run_keeps_serving(
        tiny_config, previous, runs_dir):
    server = ModelServer(runs_dir)
    assert server.get().source == str(previous.path)
    stop, second_step, steps, stopped_at = threading.Event(), threading.Event(), [], {}

    def on_event(event):
        if event["event"] == "progress":
            steps.append(event["step"])
            if event["step"] == 2:  # the first epoch has 15 steps
                second_step.set()
                stop.wait(timeout=60)  # the click lands during step 2, however slow the other thread

    def press_stop():  # like the app's Stop button: another thread
        second_step.wait(timeout=120)
        stopped_at["t"] = time.monotonic()
        stop.set()

    threading.Thread(target=press_stop, daemon=True).start()
    result = train.fine_tune(tiny_config(epochs=3), on_event=on_event, stop=stop)
    seconds = time.monotonic() - stopped_at["t"]
    print(f"stop → job ended in {seconds:.2f} s")
    assert result.state == "stopped"
    assert max(steps) == 2, f"training went on after the stop: steps {steps}"
    run = runs.Run(result.run_dir)
    assert run.path.name.endswith(runs.PARTIAL) and run.state == "stopped"
    assert run.can_resume and not list(run.path.glob("*.safetensors"))  # a resumable checkpoint, no model
    assert runs.latest(runs_dir).path == previous.path
    assert server.refresh() is False and server.get().source == str(previous.path)
    assert server.get().classify("so happy today")[0].label in ("negative", "neutral", "positive")


# --- kill -9 ------------------------------------------------------------------------------------
def test_kill_9_mid_training_leaves_an_interrupted_run_that_latest_ignores(tiny_model, tiny_dataset,
                                                                          previous, runs_dir):
    cmd = [sys.executable, "-m", "finetune", "--base-model", str(tiny_model), "--dataset", str(tiny_dataset),
           "--train-size", "120", "--test-size", "30", "--epochs", "100", "--batch-size", "8",
           "--max-length", "32", "--evals-per-epoch", "4", "--early-stopping-patience", "0",
           "--few-shot-k", "0", "--runs-dir", str(runs_dir), "--quiet"]
    env = {**os.environ, "CPU_CORES": "1"}
    log = runs_dir.parent / "finetune.log"  # a file, not a pipe: a full pipe would block the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        partial = _kill_9_after_checkpoint(runs_dir, proc, log, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    run = runs.Run(partial)
    assert run.state == "running"  # what a kill -9 leaves behind ...
    assert runs.latest(runs_dir).path == previous.path  # ... which latest() never picks

    marked = runs.mark_interrupted(runs_dir)  # what the app does at start-up
    assert [r.path for r in marked] == [partial]
    assert run.state == "interrupted" and "ended before" in run.status["message"]
    assert (partial / "_checkpoints").exists()  # kept: the run can resume (tests/finetune/test_resume.py)
    assert runs.latest(runs_dir).path == previous.path
    assert ModelServer(runs_dir).get().source == str(previous.path)
    assert runs.mark_interrupted(runs_dir) == []  # idempotent


def _kill_9_after_checkpoint(runs_dir: Path, proc: subprocess.Popen, log: Path, timeout: float) -> Path:
    """Once the subprocess's run has written a checkpoint mid-training, `kill -9` it; returns the run's
    `.partial` folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed: {log.read_text()[-2000:]}")
        for path in runs_dir.glob(f"*{runs.PARTIAL}"):
            if list(path.glob("_checkpoints/checkpoint-*/*.safetensors")):
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                return path
        time.sleep(0.05)
    pytest.fail("no checkpoint written within the timeout")


# --- the Hub push fails -----------------------------------------------------------------------------
def _http_error(code: int, message: str = "") -> Exception:
    response = httpx2.Response(code, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"),
                               headers={"x-error-message": message} if message else {})
    try:
        hf_raise_for_status(response)
    except Exception as exc:
        return exc
    raise AssertionError("no error raised")


@pytest.mark.parametrize("error, says", [
    (httpx2.ConnectError("[Errno -3] Temporary failure in name resolution"), "cannot be reached"),
    (_http_error(401, "Invalid credentials in Authorization header"), "HF_TOKEN"),
    (_http_error(403), "HF_TOKEN"),
    (_http_error(429), "try again"),
], ids=["network", "401", "403", "429"])
def test_a_failed_push_keeps_the_run_says_why_and_pushing_again_works(previous, runs_dir, error, says):
    fake = FakeHub(error)
    failed = hub.push_run(previous.path, "someone/tweet-sentiment", api=fake)
    assert failed.state == "failed" and says in failed.message, failed.message
    assert "\n" not in failed.message and "Traceback" not in failed.message
    assert json.loads((previous.path / hub.PUSH_RESULT).read_text())["state"] == "failed"
    assert previous.is_complete and runs.latest(runs_dir).path == previous.path
    assert fake.uploads == []

    fake.fail = None  # the network is back / the token is fixed / the rate limit has passed
    pushed = hub.push_run(previous.path, "someone/tweet-sentiment", api=fake)
    assert pushed.state == "pushed" and pushed.url.endswith("someone/tweet-sentiment")
    assert json.loads((previous.path / hub.PUSH_RESULT).read_text())["state"] == "pushed"
    assert Path(fake.uploads[0]["folder_path"]).name == previous.id  # a staged copy of it (hub.stage)


# --- junk in the runs folder --------------------------------------------------------------------------
def test_corrupt_and_foreign_folders_are_skipped_with_a_warning(previous, runs_dir, caplog):
    junk = {
        "foreign": {"notes.txt": "not a run"},
        "29990101-000000-bad1": {"status.json": "{half a json"},
        "29990101-000000-bad2": {"status.json": "[1, 2, 3]"},
        "29990101-000000-bad3": {"status.json": '{"state": "done"}'},  # no checkpoint
        "29990101-000000-bad4": {"status.json": '{"state": "done"}', "config.json": "{}",
                                 "pytorch_model.bin": "pickle"},
    }
    for name, files in junk.items():
        (runs_dir / name).mkdir()
        for file, text in files.items():
            (runs_dir / name / file).write_text(text)
    (runs_dir / "stray-file.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="core.runs"):
        listed = runs.list_runs(runs_dir)
        assert [r.path for r in listed] == [previous.path]
        assert runs.latest(runs_dir).path == previous.path
        assert runs.mark_interrupted(runs_dir) == []
    warned = caplog.text
    for name in junk:
        assert name in warned, f"no warning for {name}"
    assert ModelServer(runs_dir).get().source == str(previous.path)


def test_a_newer_run_with_corrupt_weights_falls_back_to_the_previous_run(previous, runs_dir, caplog):
    broken = runs_dir / "29990101-000000-beef"
    shutil.copytree(previous.path, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)  # a truncated / corrupted file
    assert runs.latest(runs_dir).path == broken  # complete by its files ...
    with caplog.at_level(logging.WARNING):
        model = ModelServer(runs_dir).get()  # ... but it cannot load, so the previous run serves
    assert model.source == str(previous.path)
    assert broken.name in caplog.text


# --- no room, no write access -----------------------------------------------------------------------------
def _no_work(monkeypatch):
    """Make any loading of data or models fail loudly: the checks must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("work started before the pre-checks")
    monkeypatch.setattr(train.data, "prepare", boom)
    monkeypatch.setattr(train, "load_tokenizer", boom)


def test_unwritable_runs_folder_is_a_clear_error_before_training(tiny_config, tmp_path, monkeypatch):
    _no_work(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match="not writable.*RUNS_DIR"):
        train.fine_tune(tiny_config(runs_dir=str(blocker / "runs")))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_runs_folder_is_a_clear_error_before_training(tiny_config, tmp_path, monkeypatch):
    _no_work(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            train.fine_tune(tiny_config(runs_dir=str(ro)))
    finally:
        ro.chmod(0o700)


def test_nearly_full_disk_is_a_clear_error_before_training(tiny_config, runs_dir, monkeypatch):
    _no_work(monkeypatch)
    real = shutil.disk_usage
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda p: real(p)._replace(free=50 * 1024**2))
    with pytest.raises(UserError, match="only 50 MB free.*free some space"):
        train.fine_tune(tiny_config())
    assert not [p for p in runs_dir.iterdir() if not p.name.startswith(".")]


# --- pickle weights ---------------------------------------------------------------------------------------
class _Trap:
    """Unpickling this writes a file: the proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pickle code ran"))


def _pickle_only(src: Path, dest: Path, proof: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.safetensors"))
    (dest / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(proof)))
    return dest


def test_a_pickle_only_checkpoint_is_refused_with_a_message(trained_run, tmp_path):
    proof = tmp_path / "pwned"
    folder = _pickle_only(trained_run, tmp_path / "pickled", proof)
    for load in (check_source, Classifier.load):
        with pytest.raises(UserError, match="only pickle weights.*safetensors"):
            load(str(folder))
    assert not proof.exists()


def test_a_run_folder_with_pickle_weights_is_not_served(trained_run, runs_dir, tmp_path):
    runs_dir.mkdir()
    proof = tmp_path / "pwned"
    _pickle_only(trained_run, runs_dir / "29990101-000000-f00d", proof)
    assert runs.latest(runs_dir) is None
    assert not proof.exists()


def test_safetensors_beside_a_pickle_loads_the_safetensors(trained_run, tmp_path):
    proof = tmp_path / "pwned"
    folder = tmp_path / "both"
    shutil.copytree(trained_run, folder)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(proof)))
    assert Classifier.load(str(folder)).classify("great day")[0].label
    assert not proof.exists()


# --- bad settings -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, says", [
    ({"epochs": -1}, "epochs must be > 0"),
    ({"batch_size": -1}, "batch_size must be >= 0"),
    ({"base_model": "./no/such/model"}, "does not exist"),
    ({"base_model": "no-such-user/no-such-model"}, "cannot load"),
], ids=["negative-epochs", "negative-batch", "missing-model-path", "unknown-hub-model"])
def test_bad_settings_are_refused_before_any_run_folder_exists(tiny_config, runs_dir, overrides, says):
    with pytest.raises(UserError, match=says):
        train.fine_tune(tiny_config(**overrides))
    assert not runs_dir.exists() or not [p for p in runs_dir.iterdir() if not p.name.startswith(".")]


def test_a_dataset_without_labels_is_refused_before_any_run_folder_exists(tiny_config, runs_dir, tmp_path):
    data = tmp_path / "nolabels.jsonl"
    data.write_text("".join(json.dumps({"text": f"tweet {i}"}) + "\n" for i in range(20)))
    with pytest.raises(UserError, match="no column 'label'.*--label-column"):
        train.fine_tune(tiny_config(dataset=str(data)))
    assert not [p for p in runs_dir.iterdir() if not p.name.startswith(".")]


# --- the app: kill -9 mid-training, then a restart ----------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kill_9_of_the_app_mid_training_then_a_restart_serves_the_last_complete_run(
        tiny_model, tiny_dataset, previous, runs_dir):
    import httpx
    from gradio_client import Client

    from finetune.config import TrainConfig

    port = _free_port()
    env = {**os.environ, "RUNS_DIR": str(runs_dir), "BASE_MODEL": str(tiny_model), "DATASET": str(tiny_dataset),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "CPU_CORES": "1",
           "HUB_MODEL_ID": "", "ADMIN_USERS": "", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = runs_dir.parent / "app.log"  # a file, not a pipe: a full pipe would block the app
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert app.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the app did not answer /health"
            try:
                if httpx.get(url + "health", timeout=2).json()["model_loaded"]:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        client = Client(url, verbose=False, analytics_enabled=False)
        started = client.predict(api_name="/train", train_size=120, test_size=30, epochs=100, batch_size=8,
                                 max_length=32, evals_per_epoch=4, early_stopping_patience=0, few_shot_k=0)
        assert started["accepted"], started
        partial = _kill_9_after_checkpoint(runs_dir, app, log, timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
    assert runs.Run(partial).state == "running"  # left behind by the kill

    defaults = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir))
    with serve(defaults) as (client, backend, url):  # the restart
        health = httpx.get(url + "health").json()
        deadline = time.monotonic() + 30
        while not health["model_loaded"] and time.monotonic() < deadline:
            time.sleep(0.2)
            health = httpx.get(url + "health").json()
        assert health["model"] == previous.id and not health["job_running"], health
        assert client.predict("what a lovely day", api_name="/classify")["model"] == previous.id
        assert [r.path for r in backend.job.interrupted] == [partial]
    run = runs.Run(partial)
    assert run.state == "interrupted" and (partial / "_checkpoints").exists()  # kept, to resume
    assert runs.latest(runs_dir).path == previous.path


# --- bad input through the HTTP API ---------------------------------------------------------------------
def _call(url: str, api: str, body: str) -> tuple[str, str]:
    """POST raw JSON to Gradio's REST API, then read the result stream: (event, data)."""
    import httpx

    posted = httpx.post(f"{url}gradio_api/call/{api}", content=body.encode("utf-8", "surrogatepass"),
                        headers={"content-type": "application/json"}, timeout=30)
    if posted.status_code != 200:
        return f"http {posted.status_code}", posted.text
    event_id = posted.json()["event_id"]
    lines = httpx.get(f"{url}gradio_api/call/{api}/{event_id}", timeout=60).text.splitlines()
    event = next(l.split(": ", 1)[1] for l in lines if l.startswith("event:"))
    data = next(l.split(": ", 1)[1] for l in lines if l.startswith("data:"))
    return event, data


ODD_TEXTS = ["\x00\x01\x02 control \x07 characters \x7f", "😀🎉🔥", "これは素晴らしい一日です", "مرحبا بالعالم",
             "Привет, как дела?", "\u200b\u200b zero-width \u200b", "<script>alert(1)</script>", "é" * 2000]


def test_odd_but_valid_text_is_classified_and_bad_requests_get_one_line_messages(
        tiny_model, tiny_dataset, previous, runs_dir, tmp_path):
    import httpx
    from gradio_client import handle_file

    from finetune.config import TrainConfig

    files = {
        "latin1.csv": "text\ncafé très bien\n".encode("latin-1"),
        "utf16.txt": "I love it\nhate this\n".encode("utf-16"),
        "binary.csv": bytes(range(256)) * 64,
        "empty.csv": b"",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    defaults = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir))
    with serve(defaults) as (client, backend, url):
        for text in ODD_TEXTS:  # valid text, however odd, gets a label
            assert client.predict(text, api_name="/classify")["label"] in ("negative", "neutral", "positive")

        bad = {  # raw requests a script might send: each gets a message that says what is wrong
            '{"data": ["\\ud800 half an emoji"]}': "not valid Unicode",
            '{"data": [{"text": "hi"}]}': "expected text, got dict",
            '{"data": [12]}': "expected text, got int",
            '{"data": [""]}': "empty",
        }
        for body, says in bad.items():
            event, data = _call(url, "classify", body)
            assert event == "error" and says in data, (body, event, data)
            assert "Traceback" not in data
        event, data = _call(url, "classify", '{"data": ["unterminated')
        assert event == "http 422" and "JSON" in data

        for name in files:
            path, note = client.predict(handle_file(str(tmp_path / name)), api_name="/classify_file")
            assert path is None and note.startswith("⚠️") and "\n" not in note.strip(), (name, note)
        (tmp_path / "big.txt").write_bytes(b"a tweet\n" * 300_000)  # 2.4 MB: over the limit for a file to classify
        path, note = client.predict(handle_file(str(tmp_path / "big.txt")), api_name="/classify_file")
        assert path is None and "over 2 MB" in note
        too_big = httpx.post(url + "gradio_api/upload",  # over the server's limit for any upload (a training file's)
                             files={"files": ("big.txt", b"a tweet\n" * (MAX_TRAIN_UPLOAD_BYTES // 8 + 1))}, timeout=60)
        assert too_big.status_code == 413 and "maximum allowed size" in too_big.text

        assert httpx.get(url + "health").json()["status"] == "ok"  # still up, still serving
        assert client.predict("still here?", api_name="/classify")["model"] == previous.id
