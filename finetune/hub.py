"""Pushing a finished run to the Hugging Face Hub.

The token comes from the environment (HF_TOKEN) and is never printed, logged or written; messages
that might carry it are scrubbed. What leaves for the Hub is a staged copy of the run whose reports
(PUBLIC_FILES) carry no server paths and no example tweets (`public`). Tests replace the Hub client
(`api=`) at this one boundary.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx2
import huggingface_hub

from core import settings
from core.errors import first_line, is_offline_error, looks_like_path, scrub
from core.runs import Run, write_json

PUSHED_FILES = ["*.safetensors", "*.json", "*.txt", "*.jinja", "README.md", "history.jsonl"]
PUSH_RESULT = "push.json"
PUBLIC_FILES = ("train_config.json", "data_report.json", "metrics.json", "history.jsonl", "status.json")
PRIVATE_KEYS = frozenset({"examples", "pid", "process"})  # example tweets; which process ran it
_PATH = re.compile(r"(?<![\w:/.~-])(?:~|\.{1,2})?/(?:[^\s'\"/]+/)*([^\s'\"/]+)/?")  # /a/b/c, ~/x, ../y: the last part


def public(value):
    """A run's JSON value as it may leave the server: a local path cut to its last part (a whole value that
    looks like one, or one inside a message), and no example tweets or process ids (PRIVATE_KEYS)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if k not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [public(v) for v in value]
    if isinstance(value, str):
        whole = looks_like_path(value) and not any(c.isspace() for c in value)
        return Path(value.rstrip("/")).name if whole else _PATH.sub(r"\1", value)
    return value


def link_or_copy(src, dst):
    try:
        os.link(src, dst)   # the Trainer writes new files and deletes old folders: a link stays whole
    except OSError:
        shutil.copy2(src, dst)


def stage(src: Path, dest: Path) -> None:
    """`src` (a file or folder) at `dest` as it may leave the server: PUBLIC_FILES rewritten by `public`,
    the rest linked (or copied)."""
    if src.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        for child in src.iterdir():
            stage(child, dest / child.name)
    elif src.name not in PUBLIC_FILES:
        link_or_copy(src, dest)
    elif src.suffix == ".jsonl":
        lines = [json.loads(line) for line in src.read_text().splitlines() if line.strip().endswith("}")]
        dest.write_text("".join(json.dumps(public(e), default=str) + "\n" for e in lines))
    else:
        dest.write_text(json.dumps(public(json.loads(src.read_text())), indent=2, default=str) + "\n")


@dataclass
class PushResult:
    state: str          # pushed | skipped | failed
    repo_id: str = ""
    url: str = ""
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def client(api=None, token: str | None = None):
    """`api` when given (tests pass a fake), else huggingface_hub's HfApi with `token` (HF_TOKEN)."""
    if api is not None:
        return api
    return huggingface_hub.HfApi(token=token or settings.token())


def explain_failure(exc: Exception, repo_id: str) -> str:
    """A failed push in one line: what went wrong and what to do (the run is kept either way)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        hint = (f"the Hub refused the token (HTTP {status}): set HF_TOKEN to a token with write access "
                f"to {repo_id}, then push again")
    elif status == 429:
        hint = "the Hub is limiting requests (HTTP 429): try again in a few minutes"
    elif status is None and (isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError))
                             or is_offline_error(exc)):
        hint = "the Hub cannot be reached (network down or offline): push again once it is back"
    else:
        hint = f"the push to {repo_id} failed" + (f" (HTTP {status})" if status else "")
    return f"{hint} [{type(exc).__name__}: {first_line(exc)}]"


def push_run(run_dir: str | Path, repo_id: str, private: bool = False, api=None) -> PushResult:
    """Create `repo_id` if needed and upload the run's checkpoint, card and reports as one commit.

    Never raises: the result (also saved as the run's push.json) says pushed, skipped or failed, and why.
    A failed push leaves the local run as it was; call again once the cause is gone.
    """
    run = Run(Path(run_dir))
    token = settings.token()
    if not repo_id:
        result = PushResult("skipped", message="no Hub repo set (HUB_MODEL_ID / --push-to-hub)")
    elif api is None and not token:
        result = PushResult("skipped", repo_id, message="HF_TOKEN is not set: add a write token to push")
    else:
        try:
            api = client(api, token)
            repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            with tempfile.TemporaryDirectory(prefix=".push-", dir=run.path.parent) as staging:
                stage(run.path, Path(staging) / run.id)
                commit = api.upload_folder(repo_id=repo_id, folder_path=str(Path(staging) / run.id), repo_type="model",
                                           allow_patterns=PUSHED_FILES, ignore_patterns=[PUSH_RESULT, "status.json"],
                                           commit_message=f"run {run.id}")
            url = str(getattr(repo, "url", "") or f"https://huggingface.co/{repo_id}")
            revision = getattr(commit, "oid", "") or ""
            result = PushResult("pushed", repo_id, url, f"pushed run {run.id}" + (f" at {revision[:8]}" if revision else ""))
        except Exception as exc:  # network, auth, rate limit: report, keep the run
            result = PushResult("failed", repo_id, message=scrub(explain_failure(exc, repo_id), token))
    if run.path.is_dir():
        write_json(run.path / PUSH_RESULT, result.to_dict())
    return result
