"""Tweet sentiment: the Gradio app. Train / Classify / Runs tabs and a named API, over the two packages.

    python app.py                  # http://0.0.0.0:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)

A thin shell: training is `finetune.jobs.TrainingJob` (one background job, status from the run folder),
serving is `inference.ModelServer` (latest run → Hub repo → base model few-shot → a message saying
what to set). Every handler is one small function; bad input becomes a one-line message, never a
traceback. Configuration: BASE_MODEL, DATASET, RUNS_DIR, HUB_MODEL_ID, HF_TOKEN, ADMIN_USERS, THREADS.
"""
from __future__ import annotations

import dataclasses
import html
import inspect
import io
import logging
import re
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import gradio as gr
import pandas as pd
from fastapi import FastAPI

from finetune import corrections
from finetune.config import TrainConfig, parse_size
from finetune.events import data_report_text, event_text
from core.labels import LABELS
from core.settings import Settings
from core.errors import UserError, first_line
from finetune.jobs import TrainingJob
from core.runs import Run, list_runs, pin, read_json, serving
from inference import ModelServer, NoModel
from inference.explain import explain
from inference.classifier import check_text

log = logging.getLogger("app")

# --- limits: the one place for them (README "## The app" documents them) ----------------------------
MAX_TWEET_CHARS = 2_000            # longer text gets a message, not a truncated guess
MAX_BATCH_ROWS = 1_000             # tweets per uploaded file
MAX_UPLOAD_BYTES = 2 * 1024**2     # size of an uploaded file
QUEUE_MAX_SIZE = 64                # requests waiting; beyond that: "Queue is full! Please try again."
CONCURRENCY = 2                    # requests that run at once (2 CPU cores)
POLL_SECONDS = 1.0                 # how often an open page polls the training status
MODEL_WAIT_SECONDS = 30            # a request waits this long for the model that loads at start-up
RELOAD_AFTER_SECONDS = 60          # with no model to serve, try loading again this often

# the settings offered in the Train tab's accordion (the API's /train takes every config field)
SETTINGS = ("base_model", "dataset", "train_size", "test_size", "epochs", "learning_rate", "batch_size",
            "grad_accum", "max_length", "hub_model_id", "include_corrections")
API_EXCLUDED = ("runs_dir",)      # where runs go is the server's business, not a caller's
EMOJI = {"negative": "😠", "neutral": "😐", "positive": "😊"}
STATE_ICON = {"idle": "💤", "running": "⏳", "done": "✅", "failed": "❌", "stopped": "⏹️"}
EXAMPLES = ["I love this new phone, best purchase all year!", "Stuck in traffic again. Great start to Monday...",
            "The meeting has been moved to 3pm.", "can't stop smiling today :)",
            "my flight got cancelled and nobody at the desk cares"]
CSS = """
.job-bar {height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden}
.job-bar > div {height: 100%; background: var(--color-accent); transition: width .5s}
.job-line {margin: 6px 0 0; font-weight: 600} .job-msg {margin: 2px 0 0; color: var(--body-text-color-subdued)}
"""


# --- the backend: what the handlers call ------------------------------------------------------------
class Backend:
    """The model that serves, the training job and the admin rule, for one app process."""

    def __init__(self, defaults: TrainConfig, admin_users=(), hub_api=None, settings: Settings | None = None):
        self.defaults = defaults
        self.settings = settings or Settings.from_env()
        self.runs_dir = Path(defaults.runs_dir)
        self.admins = {u.strip() for u in admin_users if u.strip()}
        # a fresh Space gets people's corrections back from the Hub dataset (HUB_DATASET_ID), if set
        threading.Thread(target=corrections.pull, args=(self.runs_dir,), name="corrections-pull", daemon=True).start()
        self.push_corrections = corrections.PushSoon(self.runs_dir)
        self.server = ModelServer(self.runs_dir, defaults.hub_model_id, defaults.base_model,
                                  precision=self.settings.serving_precision)
        self.job = TrainingJob(self.runs_dir, on_done=lambda result: self.server.refresh(), hub_api=hub_api)
        self._loaded = threading.Event()
        self._last_load = 0.0
        self.load_model()

    def load_model(self) -> None:
        """Load what should serve, in the background (from the Hub that can mean a download first)."""
        self._last_load = time.monotonic()
        self._loaded.clear()

        def load():
            try:
                self.server.refresh()
            finally:
                self._loaded.set()
        threading.Thread(target=load, name="model-load", daemon=True).start()

    def model(self):
        """The model to answer one request with, or a UserError saying why there is none."""
        if not self._loaded.wait(MODEL_WAIT_SECONDS):
            raise UserError("the model is still loading: try again in a moment")
        model = self.server.model
        if model is None:
            if time.monotonic() - self._last_load > RELOAD_AFTER_SECONDS:
                self.load_model()  # a Hub that was down at start-up may be back
            raise NoModel(self.server.error or "no model to serve yet")
        return model

    def classify(self, text):
        """(prediction, model name) for one tweet; a UserError with what to do for bad input."""
        return self._answer(text, "classify", lambda model, t: model.classify(t)[0])

    def explain(self, text):
        """(Explanation, model name) for one tweet: each word's share in its label, and the span."""
        return self._answer(text, "explain", explain)

    def _answer(self, text, verb: str, answer):
        """(answer(model, text), model name): bad input and failures nobody foresaw become a UserError
        that says what went wrong, and the app keeps serving."""
        text = check_tweet(text)
        model = self.model()
        try:
            return answer(model, text), model.name
        except UserError:
            raise
        except Exception as exc:
            log.exception("could not %s a text", verb)
            raise UserError(f"could not {verb} this text ({type(exc).__name__}: {first_line(exc)})") from None

    def correct(self, text, model_label, corrected_label, model_name: str = "") -> str:
        """Store a person's correction of a reply, then copy the file to the Hub dataset in the background."""
        c = corrections.add(self.runs_dir, check_tweet(text), model_label, corrected_label, model_name)
        if self.settings.hub_dataset_id:
            self.push_corrections()
        return (f"Saved: the next retrain learns that this tweet is {c.corrected_label} "
                f"({len(corrections.waiting(self.runs_dir))} correction(s) waiting).")

    def refused(self, profile) -> str:
        """Why this user may not retrain (or stop, push, pin), or "" when they may."""
        if not self.admins:
            return ""
        if profile is None:
            return f"only {', '.join(sorted(self.admins))} may do this: sign in with Hugging Face first"
        if profile.username not in self.admins:
            return f"{profile.username} may not do this: only {', '.join(sorted(self.admins))} may (ADMIN_USERS)"
        return ""

    def train(self, settings: dict, profile=None) -> dict:
        """Start a run with the defaults overridden by `settings` (None = default)."""
        if why := self.refused(profile):
            return {"accepted": False, "message": why}
        try:
            values = {**self.defaults.to_dict(), **{k: v for k, v in settings.items() if v not in (None, "")}}
            accepted, message = self.job.start(TrainConfig.from_dict({**values, "runs_dir": str(self.runs_dir)}))
        except UserError as exc:
            accepted, message = False, f"not started: {exc}"
        except Exception as exc:  # input nobody foresaw: refuse it in words, keep serving
            log.exception("refused a training request")
            accepted, message = False, f"not started: {type(exc).__name__}: {first_line(exc)}"
        return {"accepted": accepted, "message": message}

    def stop(self, profile=None) -> dict:
        if why := self.refused(profile):
            return {"accepted": False, "message": why}
        accepted, message = self.job.stop()
        return {"accepted": accepted, "message": message}

    def push_again(self, profile=None) -> dict:
        if why := self.refused(profile):
            return {"accepted": False, "message": why}
        accepted, message = self.job.push_again(repo_id=self.defaults.hub_model_id)
        return {"accepted": accepted, "message": message}

    def serve(self, run_id: str | None, profile=None) -> str:
        """Pin `run_id` as the run that Classify serves (None: back to the newest)."""
        if why := self.refused(profile):
            return why
        try:
            pin(self.runs_dir, run_id or None)
        except ValueError as exc:
            return f"cannot serve it: {exc}"
        self.server.refresh()
        model = self.server.model
        return f"Classify now answers with {model.name}" if model else self.server.error

    def health(self) -> dict:
        model, status = self.server.model, self.job.status()
        return {"status": "ok", "model_loaded": model is not None, "model": model.name if model else None,
                "model_kind": model.kind if model else None,
                "model_error": "" if model else (self.server.error or "loading"),
                "job_running": self.job.busy, "job_state": status["state"], "run_id": status.get("run_id")}


def check_tweet(text) -> str:
    """The classifier's own checks (text, not empty, valid Unicode), then the app's length limit."""
    check_text(text)
    if len(text) > MAX_TWEET_CHARS:
        raise UserError(f"the text is {len(text):,} characters long; the limit is {MAX_TWEET_CHARS:,}: "
                        f"shorten it (a tweet is at most 280)")
    return text


# --- showing things: user text is always text, never markup ----------------------------------------
def as_text(text, limit: int = 300) -> str:
    """Text for a Markdown view: shortened, HTML escaped and Markdown escaped, so it shows as typed."""
    text = str(text)
    text = text if len(text) <= limit else text[:limit] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~>])", r"\\\1", html.escape(text, quote=False))


def reply(prediction, model_name: str) -> str:
    scores = " · ".join(f"{name} {prediction.scores[name]:.0%}" for name in LABELS)
    return f"{EMOJI[prediction.label]} **{prediction.label}**  \n{scores}  \n_{as_text(model_name)}_"


def progress_html(status: dict) -> str:
    state, step, total = status["state"], status.get("step") or 0, status.get("total_steps") or 0
    share = 1.0 if state == "done" else (step / total if total else 0.0)
    line = f"{STATE_ICON.get(state, '')} {state}"
    if status.get("run_id"):
        line += f" · run {status['run_id']}"
    if total:
        line += f" · step {step}/{total} · epoch {status.get('epoch') or 0:.2f}"
    if state == "running" and status.get("eta_s") is not None:
        line += f" · ETA {_duration(status['eta_s'])}"
    return (f'<div class="job-bar"><div style="width:{100 * share:.1f}%"></div></div>'
            f'<p class="job-line">{html.escape(line)}</p>'
            f'<p class="job-msg">{html.escape(status.get("message") or "")}</p>')


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def curves(events: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(loss, validation metrics) as long tables for the plots: step, value, series."""
    loss = [{"step": e["step"], "value": e["loss"], "series": "train loss"} for e in events
            if e.get("event") == "log" and "loss" in e]
    loss += [{"step": e["step"], "value": e["eval_loss"], "series": "validation loss"} for e in events
             if e.get("event") == "eval" and "eval_loss" in e]
    scores = [{"step": e["step"], "value": e[key], "series": name} for e in events if e.get("event") == "eval"
              for key, name in (("eval_accuracy", "accuracy"), ("eval_f1_macro", "macro-F1")) if key in e]
    columns = ["step", "value", "series"]
    return pd.DataFrame(loss, columns=columns), pd.DataFrame(scores, columns=columns)


def event_log(events: list[dict], last: int = 200) -> str:
    """The events as plain text lines, newest first."""
    lines = []
    for e in events[-last:]:
        when = datetime.fromtimestamp(e.get("time", 0)).strftime("%H:%M:%S")
        lines.append(f"{when}  {e.get('event', ''):<8} {event_text(e)}")
    return "\n".join(reversed(lines))


def before_after(metrics: dict | None) -> pd.DataFrame:
    metrics = metrics or {}
    base, test = metrics.get("baseline"), metrics.get("test")
    rows = [(f"before: base model, {base.get('method', 'few-shot')}", base) if base else None,
            ("after: fine-tuned", test) if test else None]
    return pd.DataFrame([{"model": name, "accuracy": round(m["accuracy"], 3), "macro-F1": round(m["f1_macro"], 3),
                          "tweets": m.get("n")} for name, m in filter(None, rows)],
                        columns=["model", "accuracy", "macro-F1", "tweets"])


def confusion(metrics: dict | None) -> pd.DataFrame:
    matrix = ((metrics or {}).get("test") or {}).get("confusion_matrix") or []
    return pd.DataFrame([{"true \\ predicted": LABELS[i], **dict(zip(LABELS, row))} for i, row in enumerate(matrix)],
                        columns=["true \\ predicted", *LABELS])


def data_report_md(report: dict | None) -> str:
    if not report:
        return ""
    return f"**Data:** {as_text(report.get('dataset', ''))}. {as_text(data_report_text(report), 2000)}"


def push_md(push: dict | None, repo: str = "") -> str:
    if not push:
        return ("**Hub:** not pushed: no Hub repo set (HUB_MODEL_ID, or the Hub repo setting)" if not repo
                else f"**Hub:** not pushed to {as_text(repo)} yet")
    state, repo = push.get("state"), as_text(push.get("repo_id", ""))
    if state == "pushed":
        return f"**Hub:** ✅ pushed to [{repo}]({push.get('url')}) — {as_text(push.get('message', ''))}"
    icon = {"pushing": "⏳", "skipped": "⏭️", "failed": "❌"}.get(state, "")
    return f"**Hub:** {icon} {state} {repo} — {as_text(push.get('message', ''))}"


RUN_COLUMNS = ["run", "", "state", "base model", "train/val/test", "epochs", "accuracy", "macro-F1",
               "baseline acc.", "agrees with people", "Hub"]


def runs_table(runs_dir: Path) -> pd.DataFrame:
    newest, served = next((r.id for r in list_runs(runs_dir) if r.is_complete), None), serving(runs_dir)
    rows = []
    for run in list_runs(runs_dir):
        cfg, metrics, report = run.config, run.metrics, run.data_report
        test, base = metrics.get("test", {}), metrics.get("baseline", {})
        marks = " ".join(mark for mark, on in (("⭐ latest", run.id == newest),
                                               ("▶ serving", served is not None and run.id == served.id)) if on)
        rows.append({"run": run.id, "": marks, "state": run.state,
                     "base model": Path(cfg.get("base_model", "")).name,
                     "train/val/test": "/".join(str(v) for v in (report.get("sizes") or {}).values()),
                     "epochs": cfg.get("epochs"), "accuracy": _round(test.get("accuracy")),
                     "macro-F1": _round(test.get("f1_macro")), "baseline acc.": _round(base.get("accuracy")),
                     "agrees with people": agreement_cell(metrics.get("corrections")),
                     "Hub": (read_json(run.path / "push.json", {}) or {}).get("state", "")})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def agreement_cell(judged: dict | None) -> str:
    """How often a run agrees with the corrections people made since the previous run."""
    return f"{judged['accuracy']:.0%} of {judged['n']}" if judged and judged.get("n") else ""


def waiting_md(runs_dir: Path) -> str:
    n = len(corrections.waiting(runs_dir))
    if not n:
        return "No corrections from the chat are waiting."
    return (f"📝 **{n}** correction(s) from the chat are waiting: the next retrain learns from them "
            f"(untick *include corrections* in Settings to leave them out).")


def _round(x):
    return None if x is None else round(x, 3)


def model_card(run: Run) -> str:
    """The run's README.md without its YAML header (the Hub shows that as metadata)."""
    try:
        text = (run.path / "README.md").read_text()
    except OSError:
        return "_no model card: the run did not finish_"
    return re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)


# --- batch files ------------------------------------------------------------------------------------
TEXT_COLUMNS = ("text", "tweet", "tweets", "content", "message")  # a CSV's tweets column, by header


def read_tweets(path: Path) -> list[str]:
    """Tweets from a CSV (its `text` column; a one-column CSV may have no header) or a text file
    (one per line), UTF-8."""
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise UserError(f"the file is over {MAX_UPLOAD_BYTES // 1024**2} MB: split it")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError("the file is not UTF-8 text: save it as UTF-8 (CSV or plain text)") from None
    if path.suffix.lower() == ".csv":
        try:
            table = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as exc:
            raise UserError(f"cannot read the CSV ({first_line(exc)}): give one tweet per row") from None
        columns = {c.strip().lower(): c for c in table.columns}
        name = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
        if name is not None:
            texts = table[name].tolist()
        elif len(table.columns) == 1:  # one column without a header: its first line is a tweet too
            texts = [table.columns[0], *table[table.columns[0]].tolist()]
        else:
            raise UserError(f"the CSV has no text column (it has: {', '.join(map(str, table.columns))}): "
                            f"name the tweets' column 'text'")
    else:
        texts = [line for line in content.splitlines() if line.strip()]
    if not texts:
        raise UserError("the file holds no tweets: give one tweet per line (or per CSV row)")
    if len(texts) > MAX_BATCH_ROWS:
        raise UserError(f"the file has {len(texts):,} tweets; the limit is {MAX_BATCH_ROWS:,}: split it")
    return texts


def classify_rows(backend: Backend, texts: list[str]) -> pd.DataFrame:
    """One row per tweet: label, the three probabilities, and why a row was skipped."""
    model = backend.model()
    ok = [i for i, t in enumerate(texts) if t.strip() and len(t) <= MAX_TWEET_CHARS]
    predictions = dict(zip(ok, model.classify([texts[i] for i in ok])))
    rows = []
    for i, text in enumerate(texts):
        p = predictions.get(i)
        error = "" if p else ("empty" if not text.strip() else f"over {MAX_TWEET_CHARS} characters")
        rows.append({"text": text, "label": p.label if p else "", **{l: p.scores[l] if p else None for l in LABELS},
                     "model": model.name, "error": error})
    return pd.DataFrame(rows)


# --- the UI -----------------------------------------------------------------------------------------
def build_demo(backend: Backend) -> gr.Blocks:
    defaults = backend.defaults
    with gr.Blocks(title="Tweet sentiment") as demo:
        gr.Markdown("# 🐦 Tweet sentiment\nClassify a tweet as negative, neutral or positive; "
                    "retrain the model on tweets in one click.")
        with gr.Tab("Train", id="train"):
            with gr.Row(equal_height=True):
                retrain = gr.Button("🚀 Retrain", variant="primary", size="lg", scale=3)
                stop = gr.Button("⏹ Stop", variant="stop", size="lg", scale=1)
                if backend.admins and backend.settings.on_space:
                    gr.LoginButton(scale=1)
            if backend.admins and not backend.settings.on_space:
                gr.Markdown(f"Retrain is limited to {as_text(', '.join(sorted(backend.admins)))} (ADMIN_USERS), "
                            f"who sign in with Hugging Face: that works when the app runs on a Space.")
            action_note = gr.Markdown()
            gr.Markdown(lambda: waiting_md(backend.runs_dir), every=5)
            progress = gr.HTML(progress_html(backend.job.status()))
            with gr.Accordion("Settings", open=False):
                fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
                inputs = []
                for start in range(0, len(SETTINGS), 2):  # two to a row
                    with gr.Row():
                        inputs += [setting_input(fields[name], getattr(defaults, name))
                                   for name in SETTINGS[start:start + 2]]
            with gr.Row(visible=False) as plots_box:
                loss_plot = gr.LinePlot(x="step", y="value", color="series", title="Loss", height=260)
                # points, not lines: a one-epoch run (the default) has a single validation point
                eval_plot = gr.ScatterPlot(x="step", y="value", color="series", title="Validation", height=260,
                                           y_lim=[0, 1])
            log_box = gr.Textbox(label="Events (newest first)", lines=8, max_lines=8, interactive=False)
            with gr.Column(visible=False) as result_box:
                gr.Markdown("### Result")
                with gr.Row():
                    scores = gr.Dataframe(label="Test metrics, before and after", interactive=False)
                    matrix = gr.Dataframe(label="Confusion matrix (rows: true label)", interactive=False)
                report = gr.Markdown()
                with gr.Row(equal_height=True):
                    pushed = gr.Markdown()
                    push_button = gr.Button("Push again", size="sm", scale=0, min_width=120)

        with gr.Tab("Classify", id="classify"):
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Chat", height=380, allow_tags=False, feedback_options=None,
                                         group_consecutive_messages=False,
                                         placeholder="Type a tweet below: the reply gives its sentiment.")
                    with gr.Row():
                        message = gr.Textbox(placeholder="Type a tweet and press Enter", show_label=False,
                                             scale=5, autofocus=True, submit_btn=True)
                    examples = gr.Examples(EXAMPLES, inputs=[message], label="Example tweets")
                with gr.Column(scale=2):
                    label = gr.Label(num_top_classes=3, label="Sentiment")
                    answered_by = gr.Markdown()
                    why = gr.HighlightedText(label="Why: red words pushed towards the label, purple ones against",
                                             show_legend=True, combine_adjacent=False)
                    with gr.Group():
                        right_label = gr.Radio(list(LABELS), label="Wrong? Pick the right label")
                        correct_button = gr.Button("Save the correction", size="sm")
                    correct_note = gr.Markdown()
                    last_reply = gr.State(None)
            with gr.Accordion("Classify a file of tweets", open=False):
                gr.Markdown(f"A CSV (its `text` column, else the first column) or a text file with one tweet per "
                            f"line; up to {MAX_BATCH_ROWS:,} tweets, {MAX_UPLOAD_BYTES // 1024**2} MB. You get a "
                            f"CSV back with the label and the three probabilities per tweet.")
                with gr.Row():
                    upload = gr.File(label="Tweets (.csv or .txt)", file_types=[".csv", ".txt"], type="filepath")
                    download = gr.File(label="Predictions (.csv)", interactive=False)
                batch_button = gr.Button("Classify the file")
                batch_note = gr.Textbox(show_label=False, interactive=False, container=False)

        with gr.Tab("Runs", id="runs") as runs_tab:
            table = gr.Dataframe(label="Runs (newest first)", interactive=False, wrap=True,
                                 column_widths=["17%", "14%", "7%", "12%", "10%", "6%", "7%", "7%", "7%", "7%", "6%"])
            with gr.Row():
                picked = gr.Dropdown(label="Pick a finished run", choices=[], scale=3)
                with gr.Column(scale=1, min_width=200):
                    serve_button = gr.Button("Serve this run in Classify", size="sm")
                    newest_button = gr.Button("Serve the newest run", size="sm")
            serve_note = gr.Markdown()
            with gr.Column(visible=False) as run_box:
                with gr.Row():
                    run_loss = gr.LinePlot(x="step", y="value", color="series", title="Loss", height=240)
                    run_eval = gr.ScatterPlot(x="step", y="value", color="series", title="Validation",
                                              height=240, y_lim=[0, 1])
                run_scores = gr.Dataframe(label="Test metrics, before and after", interactive=False)
                with gr.Accordion("Model card", open=False):
                    card = gr.Markdown()

        # --- events: one small function each ---------------------------------------------------------
        def chat(text, history):
            history = list(history or [])
            if isinstance(text, str) and text.strip():
                history.append({"role": "user", "content": as_text(text)})
            try:
                prediction, name = backend.classify(text)
            except UserError as exc:
                history.append({"role": "assistant", "content": f"⚠️ {as_text(exc, 600)}"})
                return history, "", None, answered_by_md()
            history.append({"role": "assistant", "content": reply(prediction, name)})
            return history, "", prediction.scores, f"Answered by **{as_text(name)}**"

        def answered_by_md():
            model = backend.server.model
            return (f"Serving **{as_text(model.name)}**" if model else
                    f"⚠️ {as_text(backend.server.error or 'the model is loading…', 600)}")

        def classify_file(path):
            if not path:
                return None, "Upload a .csv or .txt file first."
            try:
                result = classify_rows(backend, read_tweets(Path(path)))
            except UserError as exc:
                return None, f"⚠️ {exc}"  # a Textbox: shown as text
            out = Path(tempfile.mkdtemp(prefix="predictions-")) / f"{Path(path).stem[:60]}-sentiment.csv"
            result.to_csv(out, index=False)
            skipped = int((result["error"] != "").sum())
            return str(out), f"Classified {len(result) - skipped:,} tweets" + (f", skipped {skipped}" * bool(skipped))

        def on_retrain(profile: Optional[gr.OAuthProfile], *values):
            result = backend.train(dict(zip(SETTINGS, values)), profile)
            return ("✅ " if result["accepted"] else "⚠️ ") + as_text(result["message"], 600)

        def on_stop(profile: Optional[gr.OAuthProfile]):
            result = backend.stop(profile)
            return ("⏹ " if result["accepted"] else "⚠️ ") + as_text(result["message"], 600)

        def on_push(profile: Optional[gr.OAuthProfile]):
            result = backend.push_again(profile)
            return ("⏳ " if result["accepted"] else "⚠️ ") + as_text(result["message"], 600)

        def poll(seen):
            """The live view; plots and results only when something changed since this page's last poll."""
            status, events = backend.job.status(), backend.job.events()
            key = (status.get("run_id"), status["state"], len(events), (status.get("push") or {}).get("state"))
            if key == seen:
                return (progress_html(status),) + (gr.skip(),) * 9 + (seen,)
            loss, val = curves(events)
            metrics, push = status.get("metrics"), status.get("push")
            return (progress_html(status), gr.Row(visible=bool(len(loss) or len(val))), loss, val,
                    event_log(events), gr.Column(visible=bool(metrics or push)), before_after(metrics),
                    confusion(metrics), data_report_md(status.get("data_report")),
                    push_md(push, status.get("hub_model_id") or defaults.hub_model_id), key)

        def show_runs():
            done = [r.id for r in list_runs(backend.runs_dir) if r.is_complete]
            return runs_table(backend.runs_dir), gr.Dropdown(choices=done, value=done[0] if done else None)

        def show_run(run_id):
            if not run_id:
                return gr.Column(visible=False), None, None, None, ""
            run = Run(backend.runs_dir / run_id)
            loss, val = curves(run.history())
            return gr.Column(visible=True), loss, val, before_after(run.metrics), model_card(run)

        def on_serve(run_id, profile: Optional[gr.OAuthProfile]):
            if not run_id:
                return "Pick a run first.", *show_runs()
            return as_text(backend.serve(run_id, profile), 600), *show_runs()

        def on_serve_newest(profile: Optional[gr.OAuthProfile]):
            return as_text(backend.serve(None, profile), 600), *show_runs()

        private = {"api_visibility": "private"}
        chat_out = [chatbot, message, label, answered_by]
        message.submit(chat, [message, chatbot], chat_out, **private)
        examples.load_input_event.then(chat, [message, chatbot], chat_out, **private)

        def on_explain(text):
            try:
                ex, name = backend.explain(text)
            except UserError:
                return None, None, None, ""  # the chat reply says why
            return (gr.HighlightedText(ex.highlighted(), label=f"Why {ex.label}: “{ex.span}” carries it "
                                       f"(red: for the label, purple: against)"),
                    {"text": text, "label": ex.label, "model": name}, None, "")

        def on_correct(last, right):
            if not last:
                return "Classify a tweet first."
            if not right:
                return "Pick the right label first."
            try:
                return "✅ " + as_text(backend.correct(last["text"], last["label"], right, last["model"]), 600)
            except UserError as exc:
                return f"⚠️ {as_text(exc, 600)}"

        explain_out = [why, last_reply, right_label, correct_note]
        message.submit(on_explain, message, explain_out, **private)
        examples.load_input_event.then(on_explain, message, explain_out, **private)
        correct_button.click(on_correct, [last_reply, right_label], correct_note, **private)
        batch_button.click(classify_file, upload, [download, batch_note], api_name="classify_file")
        retrain.click(on_retrain, inputs, action_note, **private)
        stop.click(on_stop, None, action_note, **private)
        push_button.click(on_push, None, action_note, **private)

        seen = gr.State(None)
        live = [progress, plots_box, loss_plot, eval_plot, log_box, result_box, scores, matrix, report, pushed, seen]
        # polls skip the queue, so that open pages never fill it up for real requests
        gr.Timer(POLL_SECONDS).tick(poll, seen, live, queue=False, show_progress="hidden", **private)
        demo.load(poll, seen, live, **private).then(answered_by_md, None, answered_by, **private)

        runs_tab.select(show_runs, None, [table, picked], **private)
        picked.change(show_run, picked, [run_box, run_loss, run_eval, run_scores, card], **private)
        serve_button.click(on_serve, picked, [serve_note, table, picked], **private)
        newest_button.click(on_serve_newest, None, [serve_note, table, picked], **private)

        add_api(backend)
    return demo


def setting_input(field: dataclasses.Field, value):
    """A form input for one config field, with the field's own help text."""
    help_text, label = field.metadata.get("help", ""), field.name.replace("_", " ")
    if field.type in (bool, "bool"):
        return gr.Checkbox(value=value, label=label, info=help_text)
    if field.metadata.get("parse") is parse_size:
        return gr.Number(value=value, label=f"{label} (0 = all)", info=help_text, precision=0, minimum=0)
    if field.type in (int, "int"):
        return gr.Number(value=value, label=label, info=help_text, precision=0)
    if field.type in (float, "float"):
        return gr.Number(value=value, label=label, info=help_text)
    return gr.Textbox(value=value, label=label, info=help_text)


# --- the named API ----------------------------------------------------------------------------------
def add_api(backend: Backend) -> None:
    """/classify, /train, /status, /stop, /push: gradio_client drives everything through these."""

    def classify(text: str) -> dict:
        """One tweet → its label, the three probabilities (summing to 1) and the model that answered."""
        try:
            prediction, name = backend.classify(text)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None  # a message, not a bug
        return {"label": prediction.label, "probabilities": prediction.scores, "model": name}

    def status() -> dict:
        """The training job: state (idle/running/done/failed/stopped), run_id, step, total_steps, epoch,
        eta_s, message; the test metrics, data report and Hub push result once a run has ended."""
        return backend.job.status()

    def stop(profile: Optional[gr.OAuthProfile]) -> dict:
        """Stop the running job at its next step; the model that serves keeps serving."""
        return backend.stop(profile)

    def push(profile: Optional[gr.OAuthProfile]) -> dict:
        """Push the last finished run to the Hub repo again (HUB_MODEL_ID), e.g. after a failed push."""
        return backend.push_again(profile)

    def train(profile: Optional[gr.OAuthProfile], *values) -> dict:
        """Start fine-tuning in the background; every parameter is a TrainConfig field, all optional
        (unset = the default). → {accepted, message}: refused while a job runs or for bad settings."""
        names = [name for name in inspect.signature(train).parameters if name != "profile"]
        return backend.train(dict(zip(names, values)), profile)

    _config_signature(train)
    gr.api(classify, api_name="classify")
    gr.api(train, api_name="train", concurrency_limit=None)
    gr.api(status, api_name="status", concurrency_limit=None)
    gr.api(stop, api_name="stop", concurrency_limit=None)
    gr.api(push, api_name="push", concurrency_limit=None)

    def explain_tweet(text: str) -> dict:
        """One tweet → label, probabilities, words (each word's score: how much the label's probability
        falls without it), span (the words that carry the label, with span_start/span_end) and model."""
        try:
            ex, name = backend.explain(text)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None  # a message, not a bug
        return {**ex.to_dict(), "model": name}

    def correct(text: str, model_label: str, corrected_label: str, model: str = "") -> dict:
        """Store a person's correction: the tweet, the label the model gave, the right one, and the model
        that answered. The next retrain learns from it (include_corrections). → {saved, message}"""
        try:
            return {"saved": True, "message": backend.correct(text, model_label, corrected_label, model)}
        except UserError as exc:
            return {"saved": False, "message": str(exc)}

    gr.api(explain_tweet, api_name="explain")
    gr.api(correct, api_name="correct")


_FIELD_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _config_signature(fn) -> None:
    """Give `fn(profile, *values)` one optional, typed parameter per TrainConfig field, so that the API
    (and its docs) takes the config's own names, with the config the one place that lists them."""
    params = [inspect.Parameter("profile", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    hints = {"profile": Optional[gr.OAuthProfile], "return": dict}
    for f in dataclasses.fields(TrainConfig):
        if f.name in API_EXCLUDED:
            continue
        kind = _FIELD_TYPES.get(f.type, f.type) if isinstance(f.type, str) else f.type
        hints[f.name] = Optional[int | str] if f.metadata.get("parse") is parse_size else Optional[kind]
        params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None))
    fn.__signature__ = inspect.Signature(params, return_annotation=dict)
    fn.__annotations__ = hints


# --- the server -------------------------------------------------------------------------------------
def create_app(defaults: TrainConfig | None = None, admin_users: list[str] | None = None,
               hub_api=None) -> tuple[FastAPI, gr.Blocks, Backend]:
    """The FastAPI app (GET /health, the Gradio app at /), its Blocks and its Backend. Settings default
    to the environment: BASE_MODEL, DATASET, RUNS_DIR, HUB_MODEL_ID, THREADS, ADMIN_USERS."""
    settings = Settings.from_env()
    defaults = defaults or TrainConfig.from_env()
    if admin_users is None:
        admin_users = sorted(settings.admins)
    backend = Backend(defaults, admin_users, hub_api=hub_api, settings=settings)
    demo = build_demo(backend)
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=CONCURRENCY)
    app = FastAPI(title="Tweet sentiment")
    app.get("/health")(backend.health)
    app = gr.mount_gradio_app(app, demo, path="/", max_file_size=MAX_UPLOAD_BYTES, ssr_mode=False,
                              theme=gr.themes.Soft(), css=CSS, footer_links=["api"])
    return app, demo, backend


def main() -> None:
    import datasets
    import uvicorn
    from transformers.utils import logging as hf_logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hf_logging.set_verbosity_error()  # the app's log says what happens; no per-load reports
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        app, _, backend = create_app()
    except UserError as exc:  # e.g. a bad THREADS value
        raise SystemExit(f"error: {exc}")
    host, port = backend.settings.host, int(backend.settings.port)
    log.info("runs in %s; base model %s; dataset %s; serving on http://%s:%d", backend.runs_dir,
             backend.defaults.base_model, backend.defaults.dataset, host, port)
    # open pages keep a heartbeat stream open: don't let them hold up a restart
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
