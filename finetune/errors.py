"""Errors the user can fix. Their message is one line that says what to do; the command lines print
it without a traceback and the app shows it as it is."""


class UserError(Exception):
    """Bad input or an unreachable resource: the message says what to change."""


def offline_hint(what: str, name: str) -> str:
    return (f"cannot load {what} {name!r}: it is not a local path and the Hugging Face Hub cannot be "
            f"reached (offline?). Pass a local folder or file instead")


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
    import os
    import re

    token = token or os.environ.get("HF_TOKEN")
    if token:
        text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)


def first_line(exc: BaseException) -> str:
    """An exception's first line, for a one-line message: at most 300 characters, never a token."""
    lines = scrub(str(exc)).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
