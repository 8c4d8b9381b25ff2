"""The app's two APIs over one Backend.

* The Gradio named API (gradio_client, /gradio_api/...): /classify /train /status /stop /resume /push
  /explain /correct (and /classify_file, wired in app.py with its file components).
* A plain JSON HTTP API on the same FastAPI server, documented at /docs (FastAPI's OpenAPI):

      POST /api/classify  {"text": "..."} or {"texts": [...]}  → label, probabilities, model
      GET  /api/model                                          → what serves and how good it is

  Errors are JSON ({"detail": ...}) with their status: 422 a bad body, 413 too many or too long
  texts, 503 while no model can serve, 429 when too many requests wait. Model calls run in a worker
  thread, so that the event loop keeps serving meanwhile.
"""
from __future__ import annotations

import dataclasses
import inspect
import threading
from typing import Literal, Optional

import gradio as gr
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, StrictStr, model_validator
from starlette.concurrency import run_in_threadpool

from core.errors import UserError
from core.labels import LABELS
from finetune.config import TrainConfig, field_type, parse_size
from inference import NoModel

from .backend import Backend, check_tweet
from .limits import API_MAX_WAITING, CLASSIFY_CONCURRENCY, MAX_BATCH_ROWS, MAX_TWEET_CHARS

# where runs go is the server's business, not a caller's; which run a Retrain continues too (the serving one,
# unless the call says start_over)
API_EXCLUDED = ("runs_dir", "from_run", "train_offset", "validation_size")


# --- the Gradio named API -----------------------------------------------------------------------
def add_gradio_api(backend: Backend, classify_concurrency: int = CLASSIFY_CONCURRENCY) -> None:
    """/classify, /train, /status, /stop, /resume, /push, /explain, /correct: gradio_client drives the app
    through these (inside a gr.Blocks context)."""

    def classify(text: str) -> dict:
        """One tweet → its label, the three probabilities (summing to 1) and the model that answered."""
        prediction, name = _or_gr_error(backend.classify, text)
        return {"label": prediction.label, "probabilities": prediction.scores, "model": name}

    def status() -> dict:
        """The training job: state (idle/running/done/failed/stopped), run_id, step, total_steps, epoch,
        eta_s, budget_s, message; the test metrics, data report and Hub push result once a run has ended."""
        return backend.job.status()

    def stop(profile: Optional[gr.OAuthProfile]) -> dict:
        """Stop the running job at its next step; the model that serves keeps serving."""
        return backend.stop(profile)

    def resume(profile: Optional[gr.OAuthProfile], run_id: str = "") -> dict:
        """Continue an interrupted or stopped run from its last resumable checkpoint, with the settings and
        data it started with: `run_id`, or (empty) the newest that can resume (/status lists them under
        `resumable`). → {accepted, message}: refused while a job runs or when the run cannot resume."""
        return backend.resume(run_id, profile)

    def push(profile: Optional[gr.OAuthProfile]) -> dict:
        """Push the last finished run to the Hub repo again (HUB_MODEL_ID), e.g. after a failed push."""
        return backend.push_again(profile)

    def train(profile: Optional[gr.OAuthProfile], *values) -> dict:
        """Start fine-tuning in the background; every parameter is a TrainConfig field, all optional
        (unset = the default). `dataset` and `base_model` take a Hub id or a file in the app's data
        folder. By default the run continues the one that serves, on tweets it has not trained on yet;
        `start_over` true: a fresh run from the base model. → {accepted, message}: refused while a job
        runs or for bad settings."""
        return backend.train(dict(zip([*config_names(), "start_over"], values)), profile)

    def explain_tweet(text: str) -> dict:
        """One tweet → label, probabilities, words (each word's score: how much the label's probability
        falls without it), span (the words that carry the label, with span_start/span_end) and model."""
        ex, name = _or_gr_error(backend.explain, text)
        return {**ex.to_dict(), "model": name}

    def correct(text: str, model_label: str, corrected_label: str, model: str = "") -> dict:
        """Store a person's correction: the tweet, the label the model gave, the right one, and the model
        that answered. The next retrain learns from it (include_corrections). → {saved, message}"""
        try:
            return {"saved": True, "message": backend.correct(text, model_label, corrected_label, model)}
        except UserError as exc:
            return {"saved": False, "message": str(exc)}

    config_signature(train)
    # more at once than the cores: the requests waiting for the model share its next call (inference.coalesce)
    gr.api(classify, api_name="classify", concurrency_limit=classify_concurrency)
    for fn, name in ((train, "train"), (status, "status"), (stop, "stop"), (resume, "resume"), (push, "push")):
        gr.api(fn, api_name=name, concurrency_limit=None)
    gr.api(explain_tweet, api_name="explain")
    gr.api(correct, api_name="correct")


def _or_gr_error(answer, text):
    try:
        return answer(text)
    except UserError as exc:
        raise gr.Error(str(exc), print_exception=False) from None  # a message, not a bug


def config_names() -> list[str]:
    """The TrainConfig fields the API's /train takes, in order."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in API_EXCLUDED]


def config_signature(fn) -> None:
    """Give `fn(profile, *values)` one optional, typed parameter per TrainConfig field, so that the API
    (and its docs) takes the config's own names, with the config the one place that lists them."""
    params = [inspect.Parameter("profile", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    hints = {"profile": Optional[gr.OAuthProfile], "return": dict}
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


def json_api(backend: Backend, max_waiting: int = API_MAX_WAITING) -> APIRouter:
    """The /api routes over `backend`; at most `max_waiting` classifications run or wait at once."""
    router = APIRouter(prefix="/api", tags=["sentiment"])
    slots = threading.BoundedSemaphore(max_waiting)

    @router.post("/classify", response_model=Classification | Classifications, responses=ERRORS)
    async def classify(request: ClassifyRequest):
        """Classify one tweet or a batch of them: per text its label, the three probabilities and the
        model that answered."""
        texts = [request.text] if request.text is not None else request.texts
        check_texts(texts)
        if not slots.acquire(blocking=False):
            raise HTTPException(429, "too many requests are waiting: retry in a moment",
                                headers={"Retry-After": "1"})
        try:
            predictions, name = await run_in_threadpool(_answer, backend.classify_many, texts)
        finally:
            slots.release()
        results = [Classification(label=p.label, probabilities=p.scores, model=name) for p in predictions]
        return results[0] if request.text is not None else Classifications(model=name, results=results)

    @router.get("/model", response_model=ModelInfo, responses={503: ERRORS[503]})
    def model():
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
