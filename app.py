"""Tweet sentiment: the Gradio app. Classify / Train / Runs tabs, the Gradio named API and a JSON API.

    python app.py                  # http://0.0.0.0:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)

This file is the page's layout and the wiring of its events; what the events do lives in `web/`
(backend: what serves, the job, the path rule; roles: who may do what; handlers; views; batch files; the
APIs). Every event is wired with its action (web/roles.py), checked before its handler runs.
Configuration: `core.settings.Settings` (BASE_MODEL, DATASET, RUNS_DIR, DATA_DIR, HUB_MODEL_ID, HF_TOKEN,
ADMIN_USERS, PUBLIC_RETRAIN, THREADS, ...), read once in `create_app` and passed down.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from typing import Optional

import datasets
import gradio as gr
import uvicorn
from fastapi import FastAPI
from gradio.utils import get_upload_folder
from transformers.utils import logging as hf_logging

from core.errors import UserError
from core.labels import LABELS
from core.model import grant_cores
from core.settings import Settings
from finetune import corrections
from finetune.config import TrainConfig, field_type, parse_size
from web import dataview, handlers, views
from web.api import BodyLimit, add_gradio_api, health_route, json_api
from web.backend import Backend
from web.limits import (CLASSIFY_CONCURRENCY, CONCURRENCY, DELETE_CACHE, MAX_BATCH_ROWS, MAX_BODY_BYTES,  # noqa: F401
                        MAX_TRAIN_UPLOAD_BYTES, MAX_UPLOAD_BYTES, POLL_SECONDS, QUEUE_MAX_SIZE)
from web.roles import ROLES
from web.views import as_text

log = logging.getLogger("app")

# the settings the Train tab offers (the API's /train takes every config field but the owner's): the data
# ones in its Data accordion, the others in Settings
DATA_SETTINGS = ("dataset", "text_column", "label_column")
FORM_SETTINGS = ("base_model", "train_size", "time_budget_s", "test_size", "epochs", "learning_rate", "batch_size",
                 "grad_accum", "max_length", "include_corrections")
SETTINGS = DATA_SETTINGS + FORM_SETTINGS + ("start_over",)
HINT_EVERY_S = 10  # the Train tab's "≈ N tweets in 2m 00s" line follows new speed measurements this often
VIEWS_EVERY_S = 5  # what serves and the corrections waiting, on every open page
TRAIN_FILES = [".csv", ".tsv", ".jsonl", ".json", ".parquet"]
EXAMPLES = ["I love this new phone, best purchase all year!", "Stuck in traffic again. Great start to Monday...",
            "The meeting has been moved to 3pm.", "can't stop smiling today :)",
            "my flight got cancelled and nobody at the desk cares"]
CSS = """
.job-bar {height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden}
.job-bar > div {height: 100%; background: var(--color-accent); transition: width .5s}
.job-line {margin: 6px 0 0; font-weight: 600} .job-msg {margin: 2px 0 0; color: var(--body-text-color-subdued)}
"""
PRIVATE = {"api_visibility": "private"}
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
PREVIEW = ["preview_note", "preview_rows", "text_column", "label_column"]  # the Data accordion (handlers.preview_data)
PENDING = ["corrections_note", "pending", "pending_pick"]  # the Review corrections accordion (handlers.pending)
LIVE = ["progress", "plots_box", "loss_plot", "eval_plot", "log_box", "result_box", "scores", "matrix", "report",
        "pushed", "resume_button", "resume_note", "seen", "action_note"]  # the Train tab's live view (handlers.live)
RUNS_SHOWN = ["table", "clicks_plot", "picked", "resume_box", "resume_pick"]  # the Runs tab's lists (handlers.show_runs)


# --- the layout: one function per tab, each returning its components by name ----------------------
def classify_tab(backend: Backend) -> dict:
    ui = {}
    with gr.Tab("Classify", id="classify"):
        ui["serving_note"] = gr.Markdown()  # what serves (handlers.serving, on load and every few seconds)
        with gr.Row():
            with gr.Column(scale=3):
                ui["chatbot"] = gr.Chatbot(label="Chat", height=380, allow_tags=False, feedback_options=None,
                                           group_consecutive_messages=False,
                                           placeholder="Type a tweet below: the reply gives its sentiment.")
                ui["message"] = gr.Textbox(placeholder="Type a tweet and press Enter", show_label=False,
                                           autofocus=True, submit_btn=True)
                ui["examples"] = gr.Examples(EXAMPLES, inputs=[ui["message"]], label="Example tweets")
            with gr.Column(scale=2):
                ui["label"] = gr.Label(num_top_classes=3, label="Sentiment")
                ui["answered_by"] = gr.Markdown()
                ui["why"] = gr.HighlightedText(label="Why: red words pushed towards the label, purple ones against",
                                               show_legend=True, combine_adjacent=False)
                with gr.Group():
                    ui["right_label"] = gr.Radio(list(LABELS), label="Wrong? Pick the right label")
                    ui["correct_button"] = gr.Button("Save the correction", size="sm")
                ui["correct_note"] = gr.Markdown()
                ui["last_reply"] = gr.State(None)  # the text, label and model the person saw
        ui.update(batch_box())
    return ui


def batch_box() -> dict:
    ui = {}
    with gr.Accordion("Classify a file of tweets", open=False):
        gr.Markdown(f"A CSV (its `text` column, else the first column) or a text file with one tweet per "
                    f"line; up to {MAX_BATCH_ROWS:,} tweets, {MAX_UPLOAD_BYTES // 1024**2} MB. You get a "
                    f"CSV back with the label and the three probabilities per tweet.")
        with gr.Row():
            ui["upload"] = gr.File(label="Tweets (.csv or .txt)", file_types=[".csv", ".txt"], type="filepath")
            ui["download"] = gr.File(label="Predictions (.csv)", interactive=False)
        ui["batch_button"] = gr.Button("Classify the file")
        ui["batch_note"] = gr.Textbox(show_label=False, interactive=False, container=False)
    return ui


def train_tab(backend: Backend) -> dict:
    ui = {}
    with gr.Tab("Train", id="train"):
        with gr.Row(equal_height=True):
            ui["retrain"] = gr.Button("🚀 Retrain", variant="primary", size="lg", scale=3)
            ui["stop"] = gr.Button("⏹ Stop", variant="stop", size="lg", scale=1)
            if backend.roles.admins and backend.settings.on_space:
                gr.LoginButton(scale=1)
        if backend.roles.admins and not backend.settings.on_space:
            gr.Markdown(f"Stop, Resume, changing a setting and the reviews are for "
                        f"{as_text(', '.join(sorted(backend.roles.admins)))} (ADMIN_USERS), who sign in with "
                        f"Hugging Face: that works when the app runs on a Space.")
        ui.update(resume_row())
        ui["action_note"] = gr.Markdown()
        ui["budget_note"] = gr.Markdown(views.budget_md(backend.config({})))
        ui["waiting"] = gr.Markdown()  # the corrections waiting (handlers.waiting)
        ui["progress"] = gr.HTML(views.progress_html(backend.job.status()))
        ui.update(data_box(backend))
        ui.update(review_box())
        ui.update(corrections_box())
        ui.update(settings_box(backend))
        ui.update(live_box())
    return ui


def data_box(backend: Backend) -> dict:
    ui, fields, defaults = {}, CONFIG_FIELDS, backend.defaults
    with gr.Accordion("Data: train on your own file, preview it", open=False):
        ui["train_file"] = gr.File(label=f"Your training file ({', '.join(TRAIN_FILES)})", file_types=TRAIN_FILES,
                                   type="filepath")
        gr.Markdown(f"{dataview.LIMITS} Or name a Hub dataset, or a file in the data folder "
                    f"({as_text(backend.data_dir)}).")
        ui["dataset"] = setting_input(fields["dataset"], defaults.dataset)
        with gr.Row(equal_height=True):
            for name in ("text_column", "label_column"):  # the file's own columns, once previewed
                ui[name] = gr.Dropdown([getattr(defaults, name)], value=getattr(defaults, name), allow_custom_value=True,
                                       label=name.replace("_", " "), info=fields[name].metadata.get("help"))
            ui["preview_button"] = gr.Button("Preview the data", size="sm", scale=0, min_width=160)
        ui["preview_note"] = gr.Markdown()
        ui["preview_rows"] = gr.Dataframe(label="First rows", interactive=False, wrap=True, visible=False)
    return ui


def review_box() -> dict:
    ui = {}
    with gr.Accordion("Review data: likely label errors", open=False):
        gr.Markdown("Ranks the next retrain's training tweets by how likely their label is wrong (the base model's "
                    "embeddings, a cross-validated classifier and cleanlab's confident learning). Keep, relabel or "
                    "exclude each suspect: the next retrain uses what you decide, and its data report counts it.")
        ui["review_button"] = gr.Button("🔍 Find likely label errors", size="sm")
        ui["review_note"] = gr.Markdown()
        ui["suspects"] = gr.Dataframe(headers=dataview.SUSPECT_COLUMNS, label="Suspects, most doubtful first",
                                      interactive=False, wrap=True, column_widths=["5%", "63%", "11%", "11%", "10%"])
        with gr.Row(equal_height=True):
            ui["suspect"] = gr.Dropdown(label="Pick a suspect", choices=[], scale=3)
            ui["review_label"] = gr.Radio(list(LABELS), label="Its right label", scale=2)
        with gr.Row():
            ui["keep_button"] = gr.Button("Keep its label", size="sm")
            ui["relabel_button"] = gr.Button("Relabel it", size="sm", variant="primary")
            ui["exclude_button"] = gr.Button("Exclude it from training", size="sm", variant="stop")
        ui["decide_note"] = gr.Markdown()
    return ui


def corrections_box() -> dict:
    ui = {}
    with gr.Accordion("Review corrections: accept or reject people's labels", open=False):
        gr.Markdown("A visitor's correction waits here until an admin accepts it: only accepted ones train the "
                    "next retrain (at most its *corrections share* of the training rows), rejected ones never.")
        ui["pending_button"] = gr.Button("📝 Show the corrections waiting", size="sm")
        ui["corrections_note"] = gr.Markdown()
        ui["pending"] = gr.Dataframe(headers=dataview.PENDING_COLUMNS, label="Waiting, oldest first",
                                     interactive=False, wrap=True, column_widths=["14%", "54%", "10%", "11%", "11%"])
        ui["pending_pick"] = gr.Dropdown(label="Pick corrections", choices=[], multiselect=True)
        with gr.Row():
            ui["pick_all"] = gr.Button("Pick all", size="sm")
            ui["accept_button"] = gr.Button("Accept the picked", size="sm", variant="primary")
            ui["reject_button"] = gr.Button("Reject the picked", size="sm", variant="stop")
    return ui


def settings_box(backend: Backend) -> dict:
    ui = {}
    with gr.Accordion("Settings", open=False):
        gr.Markdown("The owner's settings. Changing one is for admins; anyone may press Retrain with them as "
                    "they are." if backend.roles.public_retrain else "The owner's settings: for admins.")
        ui["start_over"] = gr.Checkbox(False, label="start over from the base model",
                                       info="Off: Retrain continues the run that serves, on tweets it has not "
                                            "trained on yet (each click builds on the last). On: a fresh run.")
        for start in range(0, len(FORM_SETTINGS), 2):  # two to a row
            with gr.Row():
                for name in FORM_SETTINGS[start:start + 2]:
                    ui[name] = setting_input(CONFIG_FIELDS[name], getattr(backend.defaults, name))
    return ui


def setting_input(field: dataclasses.Field, value):
    """A form input for one config field, with the field's own help text."""
    help_text, label, kind = field.metadata.get("help", ""), field.name.replace("_", " "), field_type(field)
    if kind is bool:
        return gr.Checkbox(value=value, label=label, info=help_text)
    if field.metadata.get("parse") is parse_size:
        return gr.Number(value=value, label=f"{label} (0 = all)", info=help_text, precision=0, minimum=0)
    if kind in (int, float):
        return gr.Number(value=value, label=label, info=help_text, precision=0 if kind is int else None)
    return gr.Textbox(value=value, label=label, info=help_text)


def live_box() -> dict:
    ui = {}
    with gr.Row(visible=False) as ui["plots_box"]:
        ui["loss_plot"] = gr.LinePlot(x="step", y="value", color="series", title="Loss", height=260)
        # points, not lines: a one-epoch run (the default) has a single validation point
        ui["eval_plot"] = gr.ScatterPlot(x="step", y="value", color="series", title="Validation", height=260,
                                         y_lim=[0, 1])
    ui["log_box"] = gr.Textbox(label="Events (newest first)", lines=8, max_lines=8, interactive=False)
    with gr.Column(visible=False) as ui["result_box"]:
        gr.Markdown("### Result")
        with gr.Row():
            ui["scores"] = gr.Dataframe(label="Test metrics, before and after", interactive=False)
            ui["matrix"] = gr.Dataframe(label="Confusion matrix (rows: true label)", interactive=False)
        ui["report"] = gr.Markdown()
        with gr.Row(equal_height=True):
            ui["pushed"] = gr.Markdown()
            ui["push_button"] = gr.Button("Push again", size="sm", scale=0, min_width=120)
    ui["seen"] = gr.State(None)
    return ui


def resume_row() -> dict:
    """Resume, shown while an interrupted or stopped run can resume (handlers.live), with how far it got."""
    ui = {}
    with gr.Row(equal_height=True):
        ui["resume_note"] = gr.Markdown()
        ui["resume_button"] = gr.Button("⏯ Resume", size="sm", scale=0, min_width=120, visible=False)
    return ui


def runs_tab() -> dict:
    ui = {}
    with gr.Tab("Runs", id="runs") as ui["runs_tab"]:
        ui["table"] = gr.Dataframe(label="Runs (newest first)", interactive=False, wrap=True,
                                   column_widths=["15%", "13%", "7%", "11%", "5%", "7%", "9%", "7%", "7%", "7%", "7%",
                                                  "5%"])
        ui["clicks_plot"] = gr.ScatterPlot(x="tweets", y="accuracy", color="chain", height=240,
                                           title="Test accuracy per click (each Retrain continues the last)",
                                           x_title="tweets trained on, all clicks so far", y_title="test accuracy")
        with gr.Row():
            ui["picked"] = gr.Dropdown(label="Pick a finished run", choices=[], scale=3)
            with gr.Column(scale=1, min_width=200):
                ui["serve_button"] = gr.Button("Serve this run in Classify", size="sm")
                ui["newest_button"] = gr.Button("Serve the newest run", size="sm")
        with gr.Row(visible=False) as ui["resume_box"]:
            ui["resume_pick"] = gr.Dropdown(label="Or pick an interrupted or stopped run", choices=[], scale=3)
            ui["resume_picked"] = gr.Button("⏯ Resume this run", size="sm", scale=1)
        ui["serve_note"] = gr.Markdown()
        with gr.Column(visible=False) as ui["run_box"]:
            with gr.Row():
                ui["run_loss"] = gr.LinePlot(x="step", y="value", color="series", title="Loss", height=240)
                ui["run_eval"] = gr.ScatterPlot(x="step", y="value", color="series", title="Validation",
                                                height=240, y_lim=[0, 1])
            ui["run_scores"] = gr.Dataframe(label="Test metrics, before and after", interactive=False)
            with gr.Accordion("Model card", open=False):
                ui["card"] = gr.Markdown()
    return ui


# --- the wiring ------------------------------------------------------------------------------------
class Wiring:
    """Connects page events to `handler(backend, *inputs)`, whose {name: value} answer becomes
    {component: value}: a handler updates exactly the components it names. Each event names its action
    (a key of web.roles.ROLES; no other can be wired), and who asks is checked before the handler runs: a
    refusal shows in `note` (default: the event's first output)."""

    def __init__(self, backend: Backend, ui: dict):
        self.backend, self.ui = backend, ui

    def on(self, listen, handler, inputs=(), outputs=(), *, action: str, caller: bool = False, note: str = "",
           **options):
        """`caller`: the handler takes who asks (a web.roles.Caller) after the backend."""
        backend, ui, note = self.backend, self.ui, note or (list(outputs) or [None])[0]
        ROLES[action]

        def run(request: gr.Request, profile: Optional[gr.OAuthProfile], *values):  # Gradio fills both in
            who = backend.roles.caller(profile, request)
            if why := backend.roles.refusal(action, who):
                return {ui[note]: f"⚠️ {as_text(why, 600)}"} if note else {}
            answer = handler(backend, who, *values) if caller else handler(backend, *values)
            return {ui[name]: value for name, value in answer.items()}
        params = list(inspect.signature(handler).parameters.values())[2 if caller else 1:]  # the API names them
        special = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in ("request", "profile")]
        run.__signature__ = inspect.Signature(special + [p.replace(annotation=inspect.Parameter.empty) for p in params])
        run.__name__, run.action, run.handler = f"page_{handler.__name__}", action, handler.__name__  # api_name: page_...
        return listen(run, [ui[n] for n in inputs], [ui[n] for n in outputs], **{**PRIVATE, **options})


def wire_classify(w: Wiring, ui: dict) -> None:
    chat_out = ["chatbot", "message", "label", "answered_by", "why", "last_reply", "right_label", "correct_note"]
    w.on(ui["message"].submit, handlers.chat, ["message", "chatbot"], chat_out, action="classify")
    w.on(ui["examples"].load_input_event.then, handlers.chat, ["message", "chatbot"], chat_out, action="classify")
    w.on(ui["correct_button"].click, handlers.correct, ["last_reply", "right_label"], ["correct_note", "waiting"],
         action="correct", caller=True)
    w.on(ui["batch_button"].click, handlers.classify_file, ["upload"], ["download", "batch_note"],
         action="classify_file", api_name="classify_file", api_visibility="public")


def wire_train(w: Wiring, ui: dict) -> None:
    def retrain(backend, caller, *values):
        return handlers.retrain(backend, caller, SETTINGS, values)

    def hint(backend, *values):
        return handlers.budget_hint(backend, SETTINGS, values)

    w.on(ui["retrain"].click, retrain, SETTINGS, ["action_note"], action="train", caller=True)
    triggers = [ui[name].change for name in ("base_model", "train_size", "time_budget_s", "batch_size", "epochs")]
    w.on(functools.partial(gr.on, [*triggers, gr.Timer(HINT_EVERY_S).tick]), hint, SETTINGS, ["budget_note"],
         action="view", queue=False, show_progress="hidden")
    w.on(ui["stop"].click, handlers.stop, (), ["action_note"], action="stop")
    w.on(ui["resume_button"].click, handlers.resume, (), ["action_note"], action="resume")
    w.on(ui["push_button"].click, handlers.push, (), ["action_note"], action="push")
    w.on(ui["train_file"].upload, handlers.upload_dataset, ["train_file"], ["dataset", "action_note", *PREVIEW],
         action="upload", caller=True, note="action_note", api_name="upload_dataset", api_visibility="public")
    for listen in (ui["preview_button"].click, ui["text_column"].input, ui["label_column"].input):
        w.on(listen, handlers.preview_data, DATA_SETTINGS, PREVIEW, action="preview", caller=True)
    w.on(ui["dataset"].submit, handlers.preview_dataset, ["dataset"], PREVIEW, action="preview", caller=True)
    # polls skip the queue, so that open pages never fill it up for real requests
    w.on(gr.Timer(POLL_SECONDS).tick, handlers.live, ["seen"], LIVE, action="view", queue=False, show_progress="hidden")


def wire_review(w: Wiring, ui: dict) -> None:
    listed = ["suspects", "suspect", "review_label"]
    w.on(ui["review_button"].click, handlers.review_data, [*DATA_SETTINGS, "base_model", "train_size"],
         ["review_note", *listed], action="review")
    w.on(ui["suspect"].input, handlers.pick_suspect, ["suspect"], ["review_label"], action="view")
    for verb in ("keep", "relabel", "exclude"):
        def decide(backend, text, label, verb=verb):
            return handlers.decide(backend, text, label, verb)
        w.on(ui[f"{verb}_button"].click, decide, ["suspect", "review_label"], ["decide_note", "waiting", *listed],
             action="review")
    w.on(ui["pending_button"].click, handlers.pending, (), PENDING, action="corrections")
    w.on(ui["pick_all"].click, handlers.pick_all_pending, (), ["corrections_note", "pending_pick"],
         action="corrections")
    for decision, button in ((corrections.ACCEPTED, "accept_button"), (corrections.REJECTED, "reject_button")):
        def decide_corrections(backend, caller, ids, decision=decision):
            return handlers.decide_corrections(backend, caller, ids, decision)
        w.on(ui[button].click, decide_corrections, ["pending_pick"], [*PENDING, "waiting"], action="corrections",
             caller=True)


def wire_runs(w: Wiring, ui: dict) -> None:
    shown = ["serve_note", *RUNS_SHOWN, "serving_note"]
    w.on(ui["runs_tab"].select, handlers.show_runs, (), RUNS_SHOWN, action="view")
    w.on(ui["picked"].change, handlers.show_run, ["picked"], ["run_box", "run_loss", "run_eval", "run_scores", "card"],
         action="view")
    w.on(ui["serve_button"].click, handlers.serve, ["picked"], shown, action="serve")
    w.on(ui["newest_button"].click, handlers.serve_newest, (), shown, action="serve")
    w.on(ui["resume_picked"].click, handlers.resume_picked, ["resume_pick"], ["serve_note", *RUNS_SHOWN],
         action="resume")


def wire_page(w: Wiring, ui: dict, demo: gr.Blocks) -> None:
    """What every page shows on load and keeps up to date: the job, the label review's suspects, what
    serves and the corrections waiting."""
    w.on(demo.load, handlers.live, ["seen"], LIVE, action="view")
    w.on(demo.load, handlers.suspects, (), ["suspects", "suspect", "review_label"], action="view")
    every = functools.partial(gr.on, [demo.load, gr.Timer(VIEWS_EVERY_S).tick])
    w.on(every, handlers.serving, (), ["serving_note"], action="view", queue=False, show_progress="hidden")
    w.on(every, handlers.waiting, (), ["waiting"], action="view", queue=False, show_progress="hidden")


def build_demo(backend: Backend) -> gr.Blocks:
    with gr.Blocks(title="Tweet sentiment", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("# 🐦 Tweet sentiment\nClassify a tweet as negative, neutral or positive; "
                    "retrain the model on tweets in one click.")
        if banner := backend.roles.banner():
            gr.Markdown(banner)
        ui = {**classify_tab(backend), **train_tab(backend), **runs_tab()}
        w = Wiring(backend, ui)
        wire_classify(w, ui)
        wire_train(w, ui)
        wire_review(w, ui)
        wire_runs(w, ui)
        wire_page(w, ui, demo)
        add_gradio_api(backend, CLASSIFY_CONCURRENCY)
    return demo


# --- the server -------------------------------------------------------------------------------------
def create_app(defaults: TrainConfig | None = None, admin_users: list[str] | None = None,
               hub_api=None, settings: Settings | None = None) -> tuple[FastAPI, gr.Blocks, Backend]:
    """The FastAPI app (GET /health, the JSON API under /api, docs at /docs, the Gradio app at /), its
    Blocks and its Backend. Settings default to the environment (core.settings)."""
    settings = settings or Settings.from_env()
    grant_cores(settings.cpu_cores)
    defaults = defaults or TrainConfig.from_dict(settings.train_overrides())
    if admin_users is None:
        admin_users = sorted(settings.admins)
    backend = Backend(defaults, admin_users, hub_api=hub_api, settings=settings, upload_dir=get_upload_folder())
    demo = build_demo(backend)
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=CONCURRENCY)
    app = FastAPI(title="Tweet sentiment", description="Classify tweets as negative, neutral or positive.")
    app.get("/health")(health_route(backend))
    app.include_router(json_api(backend))
    app = gr.mount_gradio_app(app, demo, path="/", max_file_size=MAX_TRAIN_UPLOAD_BYTES, ssr_mode=False,
                              theme=gr.themes.Soft(), css=CSS, footer_links=["api"])
    # any body but an upload's (Gradio limits those to max_file_size): 413 before it is read
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, exempt=("/gradio_api/upload",))
    return app, demo, backend


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hf_logging.set_verbosity_error()  # the app's log says what happens; no per-load reports
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        app, _, backend = create_app()
    except (UserError, ValueError) as exc:  # e.g. a bad THREADS or KEEP_RUNS value
        raise SystemExit(f"error: {exc}")
    host, port = backend.settings.host, int(backend.settings.port)
    log.info("runs in %s; data folder %s; base model %s; dataset %s; serving on http://%s:%d", backend.runs_dir,
             backend.data_dir, backend.defaults.base_model, backend.defaults.dataset, host, port)
    # open pages keep a heartbeat stream open: don't let them hold up a restart
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
