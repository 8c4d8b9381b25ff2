"""People's corrections: replies the chat got wrong, with the right label, kept for the next retrain.

    add(runs_dir, text, model_label="positive", corrected_label="negative", run_id="20261126-101500-ab12",
        status=PENDING, by="")  # a visitor's: waits for an admin; an admin's (the default) counts at once
    decide(runs_dir, ["3f2a...", ...], ACCEPTED, by="alice")   # or REJECTED; in bulk
    load(runs_dir)            # every correction, oldest first, with its status (pending/accepted/rejected)
    training_rows(runs_dir)   # [(text, label id)] of the accepted ones, for finetune.data.prepare(extra_train=...)
    waiting(runs_dir)         # the accepted ones no finished run has learned from yet
    push(runs_dir) / pull(runs_dir)    # to / from the Hub dataset HUB_DATASET_ID
    PushSoon(runs_dir)()      # push in the background (huggingface_hub.CommitScheduler), a burst in one commit

They live in `<runs_dir>/corrections.jsonl`, one JSON object per line, append-only: a correction (with
its id and the status it was made with), or a decision ({"decision": "accepted", "ids": [...], "by",
"time"}) that sets the status of the corrections it names (the last decision wins). Each line goes in
with a single `write` under an exclusive `flock` and is fsynced, so threads and processes writing at
once never interleave, and a crash can at worst leave a torn last line: readers skip it, and the next
line written ends it first so that the new line stands alone. The file takes no more corrections once
it holds MAX_FILE_BYTES (decisions still go in); names are cut to MAX_NAME_CHARS.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from huggingface_hub import CommitScheduler

from core import settings
from core.errors import UserError
from core.labels import LABELS, label_id
from core.runs import latest, list_runs

from .data import fold
from .hub import PushResult, client, explain_failure, scrub

log = logging.getLogger(__name__)

FILE = "corrections.jsonl"
HUB_DATASET_ENV = "HUB_DATASET_ID"
PUSH_DELAY_S = 10.0       # corrections made within this long of each other go to the Hub in one commit
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
MAX_NAME_CHARS = 200      # the model name and who made it; longer is refused
MAX_FILE_BYTES = 20 * 1024**2  # about 10,000 corrections of the longest tweets


@dataclass
class Correction:
    text: str
    model_label: str          # what the model answered
    corrected_label: str      # what the person says it is
    run_id: str = ""          # the run (or model name) that answered
    time: str = ""            # UTC, ISO 8601
    id: str = ""              # what a decision names it by
    by: str = ""              # the signed-in user who made it ("" = anonymous)
    status: str = ACCEPTED    # pending, accepted or rejected (made with; a decision changes it)
    decided: str = field(default="", compare=False)  # when a decision set its status (UTC, ISO 8601)

    @property
    def label(self) -> int:
        return LABELS.index(self.corrected_label)

    @property
    def counts_from(self) -> str:
        """When it became a correction a retrain learns: when it was made, or accepted."""
        return self.decided or self.time


def path(runs_dir: str | Path) -> Path:
    return Path(runs_dir) / FILE


def _label(value, what: str) -> str:
    lid = label_id(value)
    if lid is None:
        raise UserError(f"{what} must be one of {', '.join(LABELS)}, got {value!r}")
    return LABELS[lid]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _name(value, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise UserError(f"{what} must be text of at most {MAX_NAME_CHARS} characters")
    return value


def add(runs_dir: str | Path, text: str, model_label, corrected_label, run_id: str = "", status: str = ACCEPTED,
        by: str = "", admit=None) -> Correction:
    """Append one correction (safe from many threads and processes at once); returns what was stored.
    `admit()`, called once the correction is found valid, may still refuse it (a UserError: a quota)."""
    if not isinstance(text, str) or not text.strip():
        raise UserError("a correction needs the tweet's text")
    c = Correction(text=text, model_label=_label(model_label, "the model's label"),
                   corrected_label=_label(corrected_label, "the corrected label"),
                   run_id=_name(str(run_id or ""), "the model name"), time=_now(), id=secrets.token_hex(8),
                   by=_name(by, "the user name"), status=status)
    if c.model_label == c.corrected_label:
        raise UserError(f"the model already said {c.model_label}: pick the label it should have said")
    if status not in (PENDING, ACCEPTED):
        raise UserError(f"a new correction is {PENDING} or {ACCEPTED}, not {status!r}")
    if admit is not None:
        admit()
    record = asdict(c)
    del record["decided"]
    _append(runs_dir, record, MAX_FILE_BYTES)
    return c


def decide(runs_dir: str | Path, ids: list[str], decision: str, by: str = "") -> int:
    """Accept or reject the corrections named by `ids` (one line, whatever their number); → how many of
    them exist."""
    if decision not in (ACCEPTED, REJECTED):
        raise UserError(f"a decision is {ACCEPTED} or {REJECTED}, not {decision!r}")
    known = {c.id for c in load(runs_dir)}
    ids = [i for i in dict.fromkeys(ids) if i in known]
    if ids:
        _append(runs_dir, {"decision": decision, "ids": ids, "by": by, "time": _now()})
    return len(ids)


def _append(runs_dir: str | Path, record: dict, max_bytes: int | None = None) -> None:
    """One line at the end of the file, whole (see the module's docstring); refused when the file would
    grow past `max_bytes`."""
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    file = path(runs_dir)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if max_bytes is not None and size + len(line) > max_bytes:
            raise UserError(f"the corrections file is full ({max_bytes // 1024**2} MB): an admin must retrain "
                            f"or clear it before more corrections are kept")
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line from a crash: end it first
            line = b"\n" + line
        while line:
            line = line[os.write(fd, line):]
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the lock


def _read(runs_dir: str | Path) -> bytes:
    """The file's bytes, read under a shared lock so that no line is caught half-written."""
    try:
        fd = os.open(path(runs_dir), os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def load(runs_dir: str | Path) -> list[Correction]:
    """Every correction, oldest first, with its status after the decisions on it; a torn or unreadable
    line is skipped with a warning. A correction of an older version of this file has no id (it gets one
    from its line) and no status (it was accepted as it was made)."""
    found: dict[str, Correction] = {}
    for n, line in enumerate(_read(runs_dir).decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if "decision" in record:
                _apply(found, record)
                continue
            c = Correction(**{**record, "decided": ""})
            _label(c.corrected_label, "corrected_label")
            c.id = c.id or hashlib.sha1(line.encode()).hexdigest()[:16]
            found[c.id] = c
        except (ValueError, TypeError, KeyError, UserError):
            log.warning("%s line %d is not a correction (a torn write?): skipped", path(runs_dir), n)
    return list(found.values())


def _apply(found: dict[str, Correction], decision: dict) -> None:
    if decision["decision"] not in (ACCEPTED, REJECTED) or not isinstance(decision["ids"], list):
        raise ValueError("not a decision")
    for i in decision["ids"]:
        if i in found:
            found[i].status, found[i].decided = decision["decision"], str(decision.get("time") or "")


def accepted(runs_dir: str | Path) -> list[Correction]:
    """The corrections a retrain learns from."""
    return [c for c in load(runs_dir) if c.status == ACCEPTED]


def pending(runs_dir: str | Path) -> list[Correction]:
    """The corrections waiting for an admin's decision, oldest first."""
    return [c for c in load(runs_dir) if c.status == PENDING]


def status_counts(runs_dir: str | Path) -> dict[str, int]:
    """{"pending", "accepted", "rejected"}: how many corrections are in each state."""
    counts = Counter(c.status for c in load(runs_dir))
    return {state: counts[state] for state in (PENDING, ACCEPTED, REJECTED)}


def training_rows(runs_dir: str | Path, since: str | None = None) -> list[tuple[str, int]]:
    """(text, label id) per accepted correction, oldest first; when one tweet was corrected twice, the
    latest label wins (in the latest one's place). `since` (ISO time, e.g. when the run a new one continues
    started): only the corrections that count from then on (made, or accepted, since)."""
    latest, items = {}, accepted(runs_dir)
    if since:
        items = collected_between(items, _as_time(since))
    for c in sorted(items, key=lambda c: c.counts_from):
        latest.pop(fold(c.text), None)  # re-insert: keeps the order of the latest corrections
        latest[fold(c.text)] = (c.text, c.label)
    return list(latest.values())


def _started(run) -> datetime | None:
    """When the run read the corrections (see `_as_time`)."""
    return _as_time(run.status.get("started") or "")


def _as_time(started: str) -> datetime | None:
    """A run's start time, as its status says it (to the second). The run reads the corrections just
    before: a correction made within that second counts as before the run."""
    try:
        started = datetime.fromisoformat(started)
    except ValueError:
        return None
    return started + timedelta(seconds=1) if not started.microsecond else started


def collected_between(items: list[Correction], start: datetime | None, end: datetime | None = None) -> list[Correction]:
    """The corrections that count from (made, or accepted) at or after `start` and before `end` (None = open)."""
    def inside(c: Correction) -> bool:
        t = datetime.fromisoformat(c.counts_from)
        return (start is None or t >= start) and (end is None or t < end)
    return [c for c in items if c.counts_from and inside(c)]


def since_last_run(runs_dir: str | Path) -> list[Correction]:
    """The corrections collected since the newest complete run started: what a run starting now is
    judged on (how often it agrees with people about the previous model's mistakes)."""
    newest = latest(runs_dir)
    return collected_between(accepted(runs_dir), _started(newest) if newest else None)


def waiting(runs_dir: str | Path, items: list[Correction] | None = None) -> list[Correction]:
    """The accepted corrections (of `items`, default: the file's) that no finished run has learned from:
    those made (or accepted) after the newest complete run trained with include_corrections started."""
    items = load(runs_dir) if items is None else items
    learned = [r for r in list_runs(runs_dir) if r.is_complete and r.config.get("include_corrections")]
    return collected_between([c for c in items if c.status == ACCEPTED], _started(learned[0]) if learned else None)


def agreement(items: list[Correction], predicted: list[str]) -> dict:
    """How often a model's labels agree with people's: {"n", "agree", "accuracy"}."""
    agree = sum(p == c.corrected_label for c, p in zip(items, predicted))
    return {"n": len(items), "agree": agree, "accuracy": agree / len(items) if items else None}


def card_section(result: dict, learned: int) -> str:
    """The model card's paragraph on corrections, from metrics.json "corrections" and the number added."""
    text = f"## People's corrections\n\nThis run learned from {learned} correction(s) made in the chat."
    if result.get("n"):
        text += (f" On the {result['n']} collected since the previous run it agrees with people on "
                 f"{result['agree']} ({result['accuracy']:.0%}).")
    return text


# --- the Hub copy ---------------------------------------------------------------------------------
def _skip(repo_id: str, body: bytes, api, token: str) -> PushResult | None:
    """Why there is nothing to push (no repo, no corrections, no token), or None."""
    if not repo_id:
        return PushResult("skipped", message=f"no Hub dataset set ({HUB_DATASET_ENV})")
    if not body:
        return PushResult("skipped", repo_id, message="no corrections yet")
    if api is None and not token:
        return PushResult("skipped", repo_id, message="HF_TOKEN is not set: add a write token to push")
    return None


def _upload(api, repo_id: str, body: bytes, token: str) -> PushResult:
    """One commit of the corrections file; a failure is explained, not raised."""
    try:
        lines = body.count(b"\n")
        api.upload_file(path_or_fileobj=body, path_in_repo=FILE, repo_id=repo_id, repo_type="dataset",
                        commit_message=f"{lines} corrections")
        return PushResult("pushed", repo_id, f"https://huggingface.co/datasets/{repo_id}",
                          f"pushed {lines} corrections")
    except Exception as exc:  # network, auth, rate limit: the local file stays as it is
        return PushResult("failed", repo_id, message=scrub(explain_failure(exc, repo_id), token))


def push(runs_dir: str | Path, repo_id: str = "", api=None, private: bool = True) -> PushResult:
    """Upload the corrections file to the Hub dataset `repo_id` (the app's HUB_DATASET_ID), private by
    default (it holds people's tweets). Never raises: the result says pushed, skipped or failed."""
    token = settings.token()
    body = _read(runs_dir)
    skipped = _skip(repo_id, body, api, token)
    if skipped:
        return skipped
    try:
        api = client(api, token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    except Exception as exc:
        return PushResult("failed", repo_id, message=scrub(explain_failure(exc, repo_id), token))
    return _upload(api, repo_id, body, token)


def pull(runs_dir: str | Path, repo_id: str = "", api=None) -> PushResult:
    """At start-up: fetch the corrections file from the Hub dataset `repo_id` when the local one is missing
    (a fresh Space). Never raises and never overwrites a local file."""
    token = settings.token()
    local = path(runs_dir)
    if not repo_id:
        return PushResult("skipped", message=f"no Hub dataset set ({HUB_DATASET_ENV})")
    if local.exists():
        return PushResult("skipped", repo_id, message="the local corrections file is kept")
    try:
        api = client(api, token)
        local.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=local.parent) as tmp:
            got = api.hf_hub_download(repo_id, FILE, repo_type="dataset", local_dir=tmp)
            if not local.exists():  # a correction may have been added meanwhile: keep it
                os.replace(got, local)
        return PushResult("pulled", repo_id, message=f"pulled {len(load(runs_dir))} corrections")
    except Exception as exc:
        if type(exc).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError", "RepositoryNotFoundError"):
            return PushResult("skipped", repo_id, message="no corrections on the Hub yet")
        return PushResult("failed", repo_id, message=scrub(f"{type(exc).__name__}: {exc}".splitlines()[0], token))


class CorrectionsScheduler(CommitScheduler):
    """huggingface_hub's `CommitScheduler` for the one corrections file: every `every` minutes it looks,
    and when the file changed since the last look, the file goes up as one commit carrying every
    correction made meanwhile (not one commit per click; the Hub rate-limits commits). The look at start
    is skipped: the burst that starts the scheduler goes up at the next one, all of it. The file
    is read under its lock; a failure is explained in `results`, never raised, and retried once the
    file changes again."""

    def __init__(self, runs_dir: str | Path, repo_id: str, api, every: float, token: str = "",
                 private: bool = True, results: list | None = None):
        self.runs_dir, self.token = Path(runs_dir), token
        self.results: list[PushResult] = [] if results is None else results
        self._seen: bytes | None = None   # the file's digest at the last push (or failed try)
        self._started = False
        super().__init__(repo_id=repo_id, repo_type="dataset", folder_path=self.runs_dir, every=every,
                         private=private, hf_api=api, allow_patterns=[FILE])

    def push_to_hub(self) -> PushResult | None:
        with self.lock:
            if not self._started:  # the look at start: the burst that started us is still coming
                self._started = True
                return None
            body = _read(self.runs_dir)
            digest = hashlib.sha256(body).digest()
            changed, self._seen = digest != self._seen, digest
        if not changed or not body:
            return None
        result = _upload(self.api, self.repo_id, body, self.token)
        self.results.append(result)
        log.info("corrections: %s", result.message)
        return result


class PushSoon:
    """Call it after each correction: the first call starts a `CorrectionsScheduler` (in the background:
    it creates the Hub dataset repo) that pushes the corrections file every `delay` seconds when it has
    changed. Nothing happens without a Hub dataset (HUB_DATASET_ID) or a token; a failed start is
    explained in `results` and tried again at the next call."""

    def __init__(self, runs_dir: str | Path, delay: float = PUSH_DELAY_S, api=None, repo_id: str = ""):
        self.runs_dir, self.delay, self.api, self.repo_id = runs_dir, delay, api, repo_id
        self.results: list[PushResult] = []
        self.scheduler: CorrectionsScheduler | None = None
        self._lock, self._starting = threading.Lock(), False

    def __call__(self) -> None:
        with self._lock:
            if self.scheduler is not None or self._starting:
                return
            self._starting = True
        threading.Thread(target=self._start, name="corrections-push", daemon=True).start()

    def _start(self) -> None:
        repo_id, token = self.repo_id, settings.token()
        try:
            skipped = _skip(repo_id, b"\n", self.api, token)
            if skipped:
                self.results.append(skipped)
                return
            self.scheduler = CorrectionsScheduler(self.runs_dir, repo_id, client(self.api, token), self.delay / 60,
                                                  token, results=self.results)
        except Exception as exc:  # creating the repo failed: network, auth ...
            self.results.append(PushResult("failed", repo_id, message=scrub(explain_failure(exc, repo_id), token)))
        finally:
            self._starting = False

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
