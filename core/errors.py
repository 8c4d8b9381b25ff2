"""Errors the user can fix. Their message is one line that says what to do; the command lines print
it without a traceback and the app shows it as it is."""


import re
from pathlib import Path

from huggingface_hub import constants, dataset_info, model_info
from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id

from . import settings


class UserError(Exception):
    """Bad input or an unreachable resource: the message says what to change."""


def offline_hint(what: str, name: str) -> str:
    hint = ("upload a CSV, TSV, JSONL or Parquet file in the Train tab, or set DATASET (or --dataset) to a "
            "local folder or file" if what == "dataset" else "pass a local folder or file instead")
    return (f"cannot load {what} {name!r}: it is not a local path and the Hugging Face Hub cannot be "
            f"reached (offline?): {hint}")


def looks_like_path(name: str) -> bool:
    """True for what can only be a local path (a Hub id is `name` or `owner/name`)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.lower().endswith(
        (".csv", ".tsv", ".json", ".jsonl", ".parquet"))


def is_offline_error(exc: BaseException) -> bool:
    """Whether an exception from the Hub libraries means the Hub (or the repo) could not be reached."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in (
        "connection", "offline", "resolve", "network", "timed out", "timeout", "couldn't reach", "could not reach",
        "max retries", "name or service", "repositorynotfound", "not a valid model identifier",
        "couldn't find", "does not appear to have"))


def scrub(text: str, token: str | None = None) -> str:
    """Remove the token (HF_TOKEN, and anything shaped like a Hub token) from a message before anyone sees it."""
    token = token or settings.token()
    if token:
        text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)


def first_line(exc: BaseException) -> str:
    """An exception's first line, for a one-line message: at most 300 characters, never a token."""
    lines = scrub(str(exc)).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def check_on_hub(kind: str, repo_id: str):
    """For a `kind` ("model" or "dataset") that is not a local path (those pass): a malformed Hub id, one that does not
    exist, or an unreachable Hub raise a UserError at once (loading would retry for a minute first).
    Cached repos, offline mode and other answers (gated, server errors) are left to the loading.
    Returns the Hub's answer (model_info / dataset_info) when it asked, so that a caller need not ask
    again (e.g. for the revision to pin); None otherwise."""
    if Path(repo_id).expanduser().exists():
        return  # a local path: nothing to ask the Hub
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UserError(f"{kind} {repo_id!r} is neither an existing local path nor a valid Hub id "
                        f"('name' or 'owner/name'): check it") from None
    cached = Path(constants.HF_HUB_CACHE) / f"{kind}s--{repo_id.replace('/', '--')}"
    if constants.HF_HUB_OFFLINE or cached.is_dir():
        return None
    try:
        return (model_info if kind == "model" else dataset_info)(repo_id, timeout=10)
    except RepositoryNotFoundError:
        raise UserError(f"{kind} {repo_id!r} is neither a local path nor a repo on the Hub: check the name "
                        f"(a private repo needs HF_TOKEN)") from None
    except Exception as exc:
        if is_offline_error(exc):
            raise UserError(offline_hint(kind, repo_id)) from None
