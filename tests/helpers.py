"""What several test files share that is not a fixture: a stand-in for the Hub client, and the app served
in-process on a free port (fixtures stay in conftest.py)."""
from __future__ import annotations

import contextlib
import fnmatch
import json
import secrets
import socket
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import httpx
import uvicorn
from gradio_client import Client
from huggingface_hub.errors import EntryNotFoundError

import app as app_module
from finetune.config import TrainConfig


class FakeHub:
    """Stands in for huggingface_hub.HfApi (its constructor too, so it can be patched in for it): repos and
    files in memory. `calls` records every call in order, `uploads` the arguments of each upload_folder,
    `files` what is on the "Hub" by (repo_id, path in repo), on a branch other than main by (repo_id, path,
    branch), `private` each repo's visibility as created (the first create_repo decides, as on the Hub).
    While `fail` is set (an exception, or a message for a ConnectionError) create_repo raises it, so
    nothing is uploaded; set it to None and pushing works."""

    def __init__(self, fail: Exception | str | None = None, *, token: str | None = None, **kwargs):
        self.fail = ConnectionError(fail) if isinstance(fail, str) else fail
        self.token = token
        self.calls, self.uploads = [], []
        self.branches: set[tuple[str, str]] = set()
        self.files: dict[tuple[str, str], bytes] = {}
        self.private: dict[str, bool] = {}
        self._repo_types: dict[tuple[str, str], str | None] = {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        if self.fail is not None:
            raise self.fail
        self.private.setdefault(repo_id, bool(kwargs.get("private")))
        return SimpleNamespace(url=f"https://huggingface.co/{repo_id}", repo_id=repo_id)

    def repo_info(self, repo_id, **kwargs):
        self.calls.append(("repo_info", repo_id))
        return SimpleNamespace(id=repo_id, private=self.private.get(repo_id, False))

    def create_branch(self, repo_id, *, branch, **kwargs):
        self.calls.append(("create_branch", repo_id, branch))
        self.branches.add((repo_id, branch))

    def delete_branch(self, repo_id, *, branch, **kwargs):
        """The branch and every file on it go."""
        self.calls.append(("delete_branch", repo_id, branch))
        self.branches.discard((repo_id, branch))
        for key in [k for k in self.files if k[0] == repo_id and _branch(k) == branch]:
            del self.files[key]

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        self.uploads.append(kwargs)
        repo_id, revision = kwargs["repo_id"], kwargs.get("revision")
        folder, allow = Path(kwargs["folder_path"]), kwargs.get("allow_patterns") or ["*"]
        if kwargs.get("delete_patterns"):  # files matching them go, unless uploaded again below
            for key in [k for k in self.files if k[0] == repo_id and _branch(k) == (revision or "main")]:
                if any(fnmatch.fnmatch(key[1], pattern) for pattern in kwargs["delete_patterns"]):
                    del self.files[key]
        ignore = kwargs.get("ignore_patterns") or []
        for path in (p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            if any(fnmatch.fnmatch(name, p) for p in allow) and not any(fnmatch.fnmatch(name, p) for p in ignore):
                self._put(repo_id, f"{kwargs.get('path_in_repo') or ''}/{name}".lstrip("/"),
                          path.read_bytes(), kwargs.get("repo_type"), revision)
        return SimpleNamespace(oid="0123456789abcdef")

    def upload_file(self, *, path_or_fileobj, path_in_repo, repo_id, repo_type=None, revision=None, **kwargs):
        self.calls.append(("upload_file", repo_id, repo_type))
        self._put(repo_id, path_in_repo, _read(path_or_fileobj), repo_type, revision)
        return SimpleNamespace(oid="0123456789abcdef")

    def create_commit(self, repo_id, operations, *, repo_type=None, **kwargs):
        """What huggingface_hub.CommitScheduler calls (with CommitOperationAdd operations)."""
        self.calls.append(("create_commit", repo_id, repo_type))
        for op in operations:
            self._put(repo_id, op.path_in_repo, _read(op.path_or_fileobj), repo_type)
        return SimpleNamespace(oid="0123456789abcdef")

    def run_as_future(self, fn, *args, **kwargs) -> Future:
        """HfApi runs it in a thread; here it runs at once, so a test need not wait."""
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, as HfApi's future does
            future.set_exception(exc)
        return future

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, local_dir=None, revision=None, **kwargs):
        self.calls.append(("hf_hub_download", repo_id, filename))
        key = _key(repo_id, filename, revision)
        if key not in self.files or self._repo_types[key] != repo_type:  # a model repo is not a dataset repo
            raise EntryNotFoundError(f"{filename} not in {repo_type or 'model'} repo {repo_id}")
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(self.files[key])
        return str(out)

    def snapshot_download(self, repo_id, *, revision=None, local_dir=None, allow_patterns=None, **kwargs):
        self.calls.append(("snapshot_download", repo_id, revision))
        for key in [k for k in self.files if k[0] == repo_id and _branch(k) == (revision or "main")]:
            if any(fnmatch.fnmatch(key[1], pattern) for pattern in allow_patterns or ["*"]):
                out = Path(local_dir) / key[1]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(self.files[key])
        return str(local_dir)

    def _put(self, repo_id: str, path_in_repo: str, body: bytes, repo_type: str | None,
             revision: str | None = None) -> None:
        key = _key(repo_id, path_in_repo, revision)
        self.files[key] = body
        self._repo_types[key] = repo_type


def _key(repo_id: str, path: str, revision: str | None) -> tuple:
    return (repo_id, path) if revision in (None, "main") else (repo_id, path, revision)


def _branch(key: tuple) -> str:
    return key[2] if len(key) > 2 else "main"


def _read(path_or_fileobj) -> bytes:
    if isinstance(path_or_fileobj, (bytes, bytearray)):
        return bytes(path_or_fileobj)
    if isinstance(path_or_fileobj, (str, Path)):
        return Path(path_or_fileobj).read_bytes()
    return path_or_fileobj.read()


@contextlib.contextmanager
def serve(defaults: TrainConfig, admin_users=(), settings=None, hub_api=None):
    """The app on a free local port (uvicorn in a thread); yields (gradio_client.Client, Backend, base url).
    `settings`: a core.settings.Settings instead of the environment's (e.g. SPACE_ID set)."""
    fastapi_app, _, backend = app_module.create_app(defaults, admin_users=list(admin_users), hub_api=hub_api,
                                                    settings=settings)
    with serving(fastapi_app) as (client, url):
        yield client, backend, url


@contextlib.contextmanager
def serving(fastapi_app):
    """An app made by app.create_app on a free local port; yields (gradio_client.Client, base url)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fastapi_app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/"
    client = Client(url, verbose=False)
    try:
        yield client, url
    finally:
        client.close()  # ends its heartbeat stream, so that the server need not wait for it
        server.should_exit = True
        thread.join(timeout=10)


def tiny_defaults(tiny_model, tiny_dataset, runs_dir, **overrides) -> TrainConfig:
    """The app's defaults for the tiny model and data: a run of a few seconds."""
    settings = dict(train_size=60, test_size=30, epochs=1, batch_size=8, learning_rate=5e-3, few_shot_k=2,
                    max_length=32, freeze_embeddings=False, freeze_layers=0)  # random embeddings must train (conftest)
    return TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir),
                       **{**settings, **overrides})


def wait_for_end(client: Client, timeout: float = 120) -> dict:
    """Polls the app's /status until the job is no longer running; returns that status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.predict(api_name="/status")
        if status["state"] != "running":
            return status
        time.sleep(0.3)
    raise AssertionError("training did not end in time")


def page_event(url: str, handler: str, data: list, timeout: float = 120) -> list:
    """Run a page event (app.py wires it as `page_<handler>`, not part of the API) as a browser does: join
    Gradio's queue with the event's index and inputs, read the event stream → the outputs' values (an
    output the handler left alone comes back as an empty update)."""
    config = httpx.get(url + "config", timeout=30).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == f"page_{handler}")
    session = secrets.token_hex(8)
    joined = httpx.post(url + "gradio_api/queue/join", timeout=30, json={
        "data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None})
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}, timeout=timeout) as s:
        for line in s.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                assert message.get("success"), message
                return message["output"]["data"]
    raise AssertionError(f"no answer to page_{handler}")
