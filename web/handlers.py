"""What each page event does: `handler(backend, *inputs)` → {component name: new value}, for the
components it changes and no others (app.py names the components and maps names to them, so that a
handler's outputs can never be miscounted). A handler that must know who asks takes the Caller
(web/roles.py) after the backend; whether they may ask at all is decided before (app.py `Wiring.on`).
Callable without a browser: the tests do."""
from __future__ import annotations

import logging
import secrets
import shutil
from pathlib import Path

import gradio as gr

from core.errors import UserError, first_line
from core.runs import Run
from finetune import corrections

from . import dataview, jobs, views
from .backend import Backend
from .batch import classify_file as write_predictions
from .limits import CHAT_MAX_TURNS, KEEP_UPLOADS
from .roles import Caller

log = logging.getLogger("app")


def chat(backend: Backend, text, history) -> dict:
    """One chat message, one model call: the reply, the probability bars, the Why highlights, and the
    label the person saw (kept for a correction) all come from the same explanation. The history the page
    sends back keeps its last CHAT_MAX_TURNS turns."""
    keep = 2 * (CHAT_MAX_TURNS - 1)  # messages of the earlier turns: this one adds two
    history = list(history or [])[-keep:] if keep else []
    if isinstance(text, str) and text.strip():
        history.append({"role": "user", "content": views.as_text(text)})
    cleared = {"message": "", "right_label": None, "correct_note": ""}
    try:
        ex, name = backend.explain(text)
    except UserError as exc:
        history.append({"role": "assistant", "content": f"⚠️ {views.as_text(exc, 600)}"})
        return {**cleared, "chatbot": history, "label": None, "why": None, "last_reply": None,
                "answered_by": views.serving_md(backend.model_info())}
    history.append({"role": "assistant", "content": views.reply(ex.label, ex.scores, name)})
    why = gr.HighlightedText(ex.highlighted(), label=f"Why {ex.label}: “{ex.span}” carries it "
                             f"(red: for the label, purple: against)")
    return {**cleared, "chatbot": history, "label": ex.scores, "why": why,
            "last_reply": {"text": ex.text, "label": ex.label, "model": name},
            "answered_by": f"Answered by **{views.as_text(name)}**"}


def correct(backend: Backend, caller: Caller, last: dict | None, right: str | None) -> dict:
    """Store the correction of the reply the person saw (the chat's last_reply)."""
    if not last:
        note = "Classify a tweet first."
    elif not right:
        note = "Pick the right label first."
    else:
        try:
            saved = backend.correct(caller, last["text"], last["label"], right, last["model"])
            note = "✅ " + views.as_text(saved, 600)
        except UserError as exc:
            note = f"⚠️ {views.as_text(exc, 600)}"
    return {"correct_note": note, "waiting": views.waiting_md(backend.runs_dir)}


def serving(backend: Backend) -> dict:
    return {"serving_note": views.serving_md(backend.model_info())}


def classify_file(backend: Backend, path) -> dict:
    if not path:
        return {"download": None, "batch_note": "Upload a .csv or .txt file first."}
    try:
        out, note = write_predictions(backend.model(), Path(path))
    except UserError as exc:
        return {"download": None, "batch_note": f"⚠️ {exc}"}  # a Textbox: shown as text
    return {"download": str(out), "batch_note": note}


def upload_dataset(backend: Backend, caller: Caller, path) -> dict:
    """A training file from the Train tab: copied into a folder of its own in the data folder (so that no
    upload replaces another), named as the dataset, previewed; the oldest uploads beyond KEEP_UPLOADS go."""
    if not path:
        return {}
    uploads = backend.data_dir / "uploads"
    target = uploads / secrets.token_hex(8) / Path(path).name
    target.parent.mkdir(parents=True)
    shutil.copyfile(path, target)
    for old in sorted(uploads.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP_UPLOADS:]:
        shutil.rmtree(old, ignore_errors=True)
    return {**preview_data(backend, caller, str(target)), "dataset": str(target),
            "action_note": f"📄 training on {views.as_text(target.name)} when you retrain"}


def preview_data(backend: Backend, caller: Caller, dataset, text_column="", label_column="") -> dict:
    """The dataset's first rows, size, class balance and data report, and its columns to pick from."""
    hidden = gr.Dataframe(value=None, visible=False)
    try:
        p = dataview.preview(backend, caller, dataset, text_column, label_column)
    except UserError as exc:
        return {"preview_note": f"⚠️ {views.as_text(exc, 600)}", "preview_rows": hidden}
    except Exception as exc:  # a file nobody foresaw: say so, keep serving
        log.exception("could not preview %s", dataset)
        return {"preview_note": f"⚠️ cannot read it: {type(exc).__name__}: {views.as_text(first_line(exc))}",
                "preview_rows": hidden}
    return {"preview_note": dataview.preview_md(p), "preview_rows": gr.Dataframe(dataview.preview_table(p), visible=True),
            "text_column": gr.Dropdown(choices=p["columns"], value=p["text_column"]),
            "label_column": gr.Dropdown(choices=p["columns"], value=p["label_column"])}


def preview_dataset(backend: Backend, caller: Caller, dataset) -> dict:
    """Another dataset named: its columns guessed afresh, then previewed."""
    return preview_data(backend, caller, dataset)


def review_data(backend: Backend, dataset, text_column, label_column, base_model, train_size) -> dict:
    """Rank the next retrain's training rows by how likely their label is wrong (`finetune.review`)."""
    settings = dict(dataset=dataset, text_column=text_column, label_column=label_column, base_model=base_model,
                    train_size=train_size)
    try:
        note = "🔍 " + dataview.run_review(backend, settings)
    except UserError as exc:
        note = f"⚠️ {views.as_text(exc, 600)}"
    return {"review_note": note, **suspects(backend)}


def suspects(backend: Backend) -> dict:
    """The open suspects of the last label review, as a table and as the list to pick one from."""
    return {"suspects": dataview.suspects_table(backend.runs_dir), "review_label": None,
            "suspect": gr.Dropdown(choices=dataview.suspect_choices(backend.runs_dir), value=None)}


def pick_suspect(backend: Backend, text) -> dict:
    return {"review_label": dataview.suggested(backend.runs_dir, text) if text else None}


def decide(backend: Backend, text, label, action: str) -> dict:
    """Keep, relabel or exclude the picked suspect; the list then shows the ones still open."""
    try:
        note = "✅ " + views.as_text(dataview.decide(backend, text, action, label), 600)
    except UserError as exc:
        return {"decide_note": f"⚠️ {views.as_text(exc, 600)}"}
    return {"decide_note": note, "waiting": views.waiting_md(backend.runs_dir), **suspects(backend)}


def pending(backend: Backend) -> dict:
    """The corrections waiting for an admin's decision: a table, and the picker (nothing picked)."""
    n = len(corrections.pending(backend.runs_dir))
    return {"pending": dataview.pending_table(backend.runs_dir),
            "pending_pick": gr.Dropdown(choices=dataview.pending_choices(backend.runs_dir), value=None),
            "corrections_note": f"{n} correction(s) wait for a decision." if n else "No correction waits for a decision."}


def pick_all_pending(backend: Backend) -> dict:
    return {"pending_pick": gr.Dropdown(value=[i for _, i in dataview.pending_choices(backend.runs_dir)])}


def decide_corrections(backend: Backend, caller: Caller, ids, decision: str) -> dict:
    """Accept or reject the picked corrections; the table then shows the ones still waiting."""
    try:
        note = "✅ " + views.as_text(dataview.decide_corrections(backend, caller, ids or [], decision), 600)
    except UserError as exc:
        return {"corrections_note": f"⚠️ {views.as_text(exc, 600)}"}
    return {**pending(backend), "corrections_note": note, "waiting": views.waiting_md(backend.runs_dir)}


def _note(result: dict, icon: str) -> str:
    return (icon if result["accepted"] else "⚠️ ") + views.as_text(result["message"], 600)


def retrain(backend: Backend, caller: Caller, names, values) -> dict:
    return {"action_note": _note(backend.train(dict(zip(names, values)), caller), "✅ ")}


def budget_hint(backend: Backend, names, values) -> dict:
    """The Train tab's line on what the next run trains on, for the settings in the form (none while a
    setting is one a retrain would refuse: Retrain says why)."""
    try:
        return {"budget_note": views.budget_md(backend.config(dict(zip(names, values))))}
    except UserError:
        return {"budget_note": ""}


def stop(backend: Backend) -> dict:
    return {"action_note": _note(backend.stop(), "⏹ ")}


def resume(backend: Backend) -> dict:
    """The Train tab's Resume: the newest interrupted or stopped run that can resume."""
    return {"action_note": _note(backend.resume(None), "⏯ ")}


def resume_picked(backend: Backend, run_id) -> dict:
    """The Runs tab's Resume: the run picked in its list of runs that can resume."""
    note = _note(backend.resume(run_id), "⏯ ") if run_id else "Pick a run to resume first."
    return {"serve_note": note, **show_runs(backend)}


def push(backend: Backend) -> dict:
    return {"action_note": _note(backend.push_again(), "⏳ ")}


def live(backend: Backend, seen) -> dict:
    """The Train tab's live view; plots and results only when something changed since this page's last poll,
    and the note under the buttons cleared once the job it spoke of has ended (its result shows instead)."""
    status, events = backend.job.status(), backend.job.events()
    key = (status.get("run_id"), status["state"], len(events), (status.get("push") or {}).get("state"),
           tuple((p["run_id"], p["checkpoint_step"]) for p in status["resumable"]))
    if key == seen:
        return {"progress": views.progress_html(status)}
    loss, val = views.curves(events)
    metrics, push_result = status.get("metrics"), status.get("push")
    return {"progress": views.progress_html(status), "plots_box": gr.Row(visible=bool(len(loss) or len(val))),
            "loss_plot": loss, "eval_plot": validation_plot(loss, val), "log_box": views.event_log(events),
            "result_box": gr.Column(visible=bool(metrics or push_result)), "scores": views.before_after(metrics),
            "matrix": views.confusion(metrics), "report": views.data_report_md(status.get("data_report")),
            "pushed": views.push_md(push_result, status.get("hub_model_id") or backend.defaults.hub_model_id),
            "resume_button": gr.Button(visible=bool(status["resumable"])), "resume_note": views.resume_md(status),
            "seen": key, **({"action_note": ""} if status["state"] in jobs.ENDED else {})}


def validation_plot(loss, val):
    """The validation points over the run's steps (0 to a little past the last one, so that the last point
    shows whole): a one-epoch run's single point would otherwise get an axis of its own, ticked "8.000000"."""
    last = max([*loss["step"], *val["step"]], default=0)
    return gr.ScatterPlot(value=val, x_lim=[0, last + max(1, round(last / 20))]) if last else val


def show_runs(backend: Backend) -> dict:
    done, unfinished = views.finished_runs(backend.runs_dir), views.resumable_runs(backend.job.status())
    return {"table": views.runs_table(backend.runs_dir), "clicks_plot": views.clicks(backend.runs_dir),
            "picked": gr.Dropdown(choices=done, value=done[0] if done else None),
            "resume_box": gr.Row(visible=bool(unfinished)),
            "resume_pick": gr.Dropdown(choices=unfinished, value=unfinished[0][1] if unfinished else None)}


def show_run(backend: Backend, run_id) -> dict:
    if not run_id:
        return {"run_box": gr.Column(visible=False), "run_loss": None, "run_eval": None, "run_scores": None,
                "card": ""}
    run = Run(backend.runs_dir / run_id)
    loss, val = views.curves(run.history())
    return {"run_box": gr.Column(visible=True), "run_loss": loss, "run_eval": validation_plot(loss, val),
            "run_scores": views.before_after(run.metrics), "card": views.model_card(run)}


def serve(backend: Backend, run_id) -> dict:
    """Pin a run (None: the newest) as the one Classify serves."""
    note = views.as_text(backend.serve(run_id), 600) if run_id else "Pick a run first."
    return {"serve_note": note, **show_runs(backend), **serving(backend)}


def serve_newest(backend: Backend) -> dict:
    return {"serve_note": views.as_text(backend.serve(None), 600), **show_runs(backend), **serving(backend)}


def waiting(backend: Backend) -> dict:
    return {"waiting": views.waiting_md(backend.runs_dir)}
