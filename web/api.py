"""The app's two APIs over one Backend, each endpoint under its action's role (web/roles.py).

* The Gradio named API (gradio_client, /gradio_api/...): /classify /train /status /stop /resume /push
  /explain /correct (and /classify_file, /upload_dataset, wired in app.py with their file components).
* A plain JSON HTTP API on the same FastAPI server, documented at /docs (FastAPI's OpenAPI):

      POST /api/classify  {"text": "..."} or {"texts": [...]}  → label, probabilities, model
      GET  /api/model                                          → what serves and how good it is
      GET  /health                                             → the same, and what the job does

  Errors are JSON ({"detail": ...}) with their status: 422 a bad body, 413 a body, too many or too long
  texts over the limits (`BodyLimit` refuses a body before it is read), 503 while no model can serve,
  429 when too many requests wait. Model calls run in threads of their own (at most API_THREADS), so
  that the event loop, /health and the server's own threads keep answering meanwhile.
"""
from __future__ import annotations

import dataclasses
import inspect
import threading
import typing
from typing import Literal, Optional

import anyio
import gradio as gr
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr, model_validator

from core.errors import UserError
from core.labels import LABELS
from finetune.config import TrainConfig, field_type, parse_size
from inference import NoModel

from .backend import OWNER_SETTINGS, Backend, check_tweet
from .limits import API_MAX_WAITING, API_THREADS, CLASSIFY_CONCURRENCY, MAX_BATCH_ROWS, MAX_TWEET_CHARS
from .roles import ROLES, Caller, acts_as

# where runs go and are pushed is the owner's business, not a caller's; which run a Retrain continues is the
# app's (the serving one, unless the call says start_over)
API_EXCLUDED = (*OWNER_SETTINGS, "from_run", "train_offset", "validation_size")


# --- the Gradio named API -----------------------------------------------------------------------
def expose(backend: Backend, fn, action: str, refused=None, **options) -> None:
    """`gr.api(fn)` under `action`'s role: `fn(caller, ...)` (typed: its parameters are the endpoint's)
    runs when web.roles lets the caller do `action`; else the endpoint answers `refused(why)` (default:
    an error with the message). Inside a gr.Blocks context."""
    ROLES[action]
    params = list(inspect.signature(fn).parameters.values())[1:]
    hints = typing.get_type_hints(fn)

    def call(request: gr.Request, profile: Optional[gr.OAuthProfile], *values):
        caller = backend.roles.caller(profile, request)
        if why := backend.roles.refusal(action, caller):
            return refused(why) if refused else _error(why)
        return fn(caller, *values)
    special = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in ("request", "profile")]
    call.__signature__ = inspect.Signature(special + params, return_annotation=hints.get("return", dict))
    hints.pop("caller", None)
    call.__annotations__ = {"request": gr.Request, "profile": Optional[gr.OAuthProfile], **hints}
    call.__name__, call.__doc__, call.action = fn.__name__, fn.__doc__, action
    gr.api(call, api_name=fn.__name__, **options)


def _error(why: str):
    raise gr.Error(why, print_exception=False)


def _refused(why: str) -> dict:
    return {"accepted": False, "message": why}


def add_gradio_api(backend: Backend, classify_concurrency: int = CLASSIFY_CONCURRENCY) -> None:
    """/classify, /train, /status, /stop, /resume, /push, /explain, /correct: gradio_client drives the app
    through these (inside a gr.Blocks context)."""

    def classify(caller: Caller, text: str) -> dict:
        """One tweet → its label, the three probabilities (summing to 1) and the model that answered."""
        prediction, name = _or_gr_error(backend.classify, text)
        return {"label": prediction.label, "probabilities": prediction.scores, "model": name}

    def status(caller: Caller) -> dict:
        """The training job: state (idle/running/done/failed/stopped), run_id, step, total_steps, epoch,
        eta_s, budget_s, message; the test metrics, data report and Hub push result once a run has ended."""
        return backend.job.status()

    def stop(caller: Caller) -> dict:
        """Stop the running job at its next step; the model that serves keeps serving (admins only)."""
        return backend.stop()

    def resume(caller: Caller, run_id: str = "") -> dict:
        """Continue an interrupted or stopped run from its last resumable checkpoint, with the settings and
        data it started with: `run_id`, or (empty) the newest that can resume (/status lists them under
        `resumable`). → {accepted, message}: refused while a job runs or when the run cannot resume (admins only)."""
        return backend.resume(run_id)

    def push(caller: Caller) -> dict:
        """Push the last finished run to the app's Hub repo again (HUB_MODEL_ID), e.g. after a failed push
        (admins only)."""
        return backend.push_again()

    def train(caller: Caller, *values) -> dict:
        """Start fine-tuning in the background; every parameter is a TrainConfig field, all optional
        (unset = the owner's default; only an admin may set one). `dataset` and `base_model` take a Hub
        id or a file in the app's data folder. By default the run continues the one that serves, on tweets
        it has not trained on yet; `start_over` true (admins): a fresh run from the base model.
        → {accepted, message}: refused while a job runs, for bad settings, for a visitor's changed
        setting, or within RETRAIN_COOLDOWN_S of a visitor's last start."""
        return backend.train(dict(zip([*config_names(), "start_over"], values)), caller)

    def explain(caller: Caller, text: str) -> dict:
        """One tweet → label, probabilities, words (each word's score: how much the label's probability
        falls without it), span (the words that carry the label, with span_start/span_end) and model."""
        ex, name = _or_gr_error(backend.explain, text)
        return {**ex.to_dict(), "model": name}

    def correct(caller: Caller, text: str, model_label: str, corrected_label: str, model: str = "") -> dict:
        """Store a person's correction: the tweet, the label the model gave, the right one, and the model
        that answered. A visitor's waits for an admin's review, and a few a minute are kept at most;
        accepted ones train the next retrain (include_corrections). → {saved, message}"""
        try:
            return {"saved": True, "message": backend.correct(caller, text, model_label, corrected_label, model)}
        except UserError as exc:
            return {"saved": False, "message": str(exc)}

    config_signature(train)
    # more at once than the cores: the requests waiting for the model share its next call (inference.coalesce)
    expose(backend, classify, "classify", concurrency_limit=classify_concurrency)
    expose(backend, train, "train", _refused, concurrency_limit=None)
    expose(backend, status, "view", concurrency_limit=None)
    for fn in (stop, resume, push):
        expose(backend, fn, fn.__name__, _refused, concurrency_limit=None)
    expose(backend, explain, "classify")
    expose(backend, correct, "correct", lambda why: {"saved": False, "message": why})


def _or_gr_error(answer, text):
    try:
        return answer(text)
    except UserError as exc:
        raise gr.Error(str(exc), print_exception=False) from None  # a message, not a bug


def config_names() -> list[str]:
    """The TrainConfig fields the API's /train takes, in order."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in API_EXCLUDED]


def config_signature(fn) -> None:
    """Give `fn(caller, *values)` one optional, typed parameter per TrainConfig field, so that the API
    (and its docs) takes the config's own names, with the config the one place that lists them."""
    params = [inspect.Parameter("caller", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    hints = {"caller": Caller, "return": dict}
    for f in dataclasses.fields(TrainConfig):
        if f.name in API_EXCLUDED:
            continue
        hints[f.name] = Optional[int | str] if f.metadata.get("parse") is parse_size else Optional[field_type(f)]
        params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None))
    hints["start_over"] = Optional[bool]  # not a config field: whether to continue the serving run
    params.append(inspect.Parameter("start_over", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None))
    fn.__signature__ = inspect.Signature(params, return_annotation=dict)
    fn.__annotations__ = hints


# --- the JSON API -------------------------------------------------------------------------------
class ClassifyRequest(BaseModel):
    """One tweet (`text`) or up to the batch limit of them (`texts`)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "I love it"}]})
    text: Optional[StrictStr] = None
    texts: Optional[list[StrictStr]] = None

    @model_validator(mode="after")
    def one_of(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError('give either "text" (one tweet) or "texts" (a list of tweets)')
        return self


class Classification(BaseModel):
    label: Literal[LABELS]
    probabilities: dict[str, float]   # negative, neutral, positive: summing to 1
    model: str                        # the model that answered (a run id, a Hub repo@revision, a base model)


class Classifications(BaseModel):
    model: str
    results: list[Classification]     # in the order of `texts`


class ModelInfo(BaseModel):
    name: str
    kind: str                         # "fine-tuned" | "few-shot"
    test_accuracy: Optional[float]    # the run's test accuracy; None for a base model or a Hub repo
    test_f1_macro: Optional[float]
    reason: str = ""                  # why it serves when it is not the configured model (the bundled one offline)


class Problem(BaseModel):
    detail: str


ERRORS = {413: {"model": Problem, "description": "too many texts, or a text too long"},
          429: {"model": Problem, "description": "too many requests waiting: retry in a moment"},
          503: {"model": Problem, "description": "no model can serve yet (loading, or nothing to serve)"}}


def json_api(backend: Backend, max_waiting: int = API_MAX_WAITING, threads: int = API_THREADS) -> APIRouter:
    """The /api routes over `backend`; at most `max_waiting` classifications run or wait at once, and
    `threads` of them call the model at once (a limiter of their own: the server's thread pool stays free
    for the page's events)."""
    router = APIRouter(prefix="/api", tags=["sentiment"])
    slots, limiter = threading.BoundedSemaphore(max_waiting), anyio.CapacityLimiter(threads)

    @router.post("/classify", response_model=Classification | Classifications, responses=ERRORS)
    @acts_as("classify")
    async def classify(request: ClassifyRequest):
        """Classify one tweet or a batch of them: per text its label, the three probabilities and the
        model that answered."""
        texts = [request.text] if request.text is not None else request.texts
        check_texts(texts)
        if not slots.acquire(blocking=False):
            raise HTTPException(429, "too many requests are waiting: retry in a moment",
                                headers={"Retry-After": "1"})
        try:
            predictions, name = await anyio.to_thread.run_sync(_answer, backend.classify_many, texts, limiter=limiter)
        finally:
            slots.release()
        results = [Classification(label=p.label, probabilities=p.scores, model=name) for p in predictions]
        return results[0] if request.text is not None else Classifications(model=name, results=results)

    @router.get("/model", response_model=ModelInfo, responses={503: ERRORS[503]})
    @acts_as("view")
    async def model():
        """What serves: its name, kind and, for a fine-tuned run, its test accuracy and macro-F1."""
        info = backend.model_info()
        if not info["loaded"]:
            raise HTTPException(503, info["error"], headers={"Retry-After": "5"})
        return ModelInfo(**info)

    return router


def check_texts(texts: list[str]) -> None:
    """413 for too many or too long texts, 422 for an empty one (or invalid Unicode), naming which."""
    if not texts or len(texts) > MAX_BATCH_ROWS:
        raise HTTPException(413 if texts else 422, f"give 1 to {MAX_BATCH_ROWS:,} texts, got {len(texts):,}")
    for i, text in enumerate(texts):
        where = f"texts[{i}]: " if len(texts) > 1 else ""
        if len(text) > MAX_TWEET_CHARS:
            raise HTTPException(413, f"{where}the text is {len(text):,} characters long; the limit is "
                                     f"{MAX_TWEET_CHARS:,}")
        try:
            check_tweet(text)
        except UserError as exc:
            raise HTTPException(422, where + str(exc)) from None


def _answer(answer, texts):
    """answer(texts), its UserErrors as HTTP errors: 503 when no model serves, else 422."""
    try:
        return answer(texts)
    except NoModel as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    except UserError as exc:
        raise HTTPException(422, str(exc)) from None


def health_route(backend: Backend):
    """GET /health: async, from memory only, so that it answers at once however busy the threads are."""
    @acts_as("view")
    async def health() -> dict:
        return backend.health()
    return health


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before anything reads it: at once by its
    Content-Length, else (a chunked body) as soon as the bytes streamed in pass the limit. Paths under
    `exempt` keep their own limit (Gradio's uploads: the app's max_file_size)."""

    def __init__(self, app, max_bytes: int, exempt: tuple[str, ...] = ()):
        self.app, self.max_bytes, self.exempt = app, max_bytes, exempt
        self.message = f"the request body is over {max_bytes / 1024**2:g} MB: send less"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)
        if length is not None or b"chunked" not in headers.get(b"transfer-encoding", b""):
            return await self.app(scope, receive, send)  # the server reads no more than Content-Length
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self.message)
            return message
        await self.app(scope, counted, send)
