"""What the page shows, as plain values: Markdown and HTML snippets, tables and curves. User text is
always shown as text, never as markup (`as_text`). No Gradio here: these are called by the handlers
(web/handlers.py) and the tests alike."""
from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path

import gradio as gr
import pandas as pd
import yaml
from huggingface_hub import ModelCard

from core.labels import LABELS
from core.runs import Run, latest, list_runs, read_dict, serving
from finetune import budget, corrections
from finetune.events import budget_text, data_report_text, duration, event_text
from finetune.hub import PUSH_RESULT

EMOJI = {"negative": "😠", "neutral": "😐", "positive": "😊"}
STATE_ICON = {"idle": "💤", "running": "⏳", "done": "✅", "failed": "❌", "stopped": "⏹️"}
RUN_COLUMNS = ["run", "", "state", "base model", "click", "tweets (all clicks)", "train/val/test", "accuracy",
               "macro-F1", "baseline acc.", "agrees with people", "Hub"]
NOT_FINE_TUNED = "base model, not fine-tuned yet: retrain in the Train tab"


def as_text(text, limit: int = 300) -> str:
    """Text for a Markdown view: shortened, HTML escaped and Markdown escaped, so it shows as typed."""
    text = str(text)
    text = text if len(text) <= limit else text[:limit] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~>])", r"\\\1", html.escape(text, quote=False))


def reply(label: str, scores: dict, model_name: str) -> str:
    """The chat's answer to one tweet: the label, the three probabilities and the model that answered."""
    shares = " · ".join(f"{name} {scores[name]:.0%}" for name in LABELS)
    return f"{EMOJI[label]} **{label}**  \n{shares}  \n_{as_text(model_name)}_"


def serving_md(info: dict) -> str:
    """What serves and how good it is (Backend.model_info()), for the top of the Classify tab."""
    if not info.get("loaded"):
        return f"⚠️ {as_text(info.get('error') or 'the model is loading…', 600)}"
    if info.get("kind") == "few-shot":
        quality = NOT_FINE_TUNED
    elif info.get("test_accuracy") is not None:
        quality = f"fine-tuned, test accuracy {info['test_accuracy']:.1%}"
        if info.get("test_f1_macro") is not None:
            quality += f", macro-F1 {info['test_f1_macro']:.3f}"
    else:
        quality = "fine-tuned (no test metrics with it)"
    reason = f"  \nℹ️ {as_text(info['reason'], 600)}" if info.get("reason") else ""
    return f"Serving **{as_text(info['name'])}**: {quality}{reason}{formats_md(info.get('serving') or {})}"


def formats_md(serving: dict) -> str:
    """Which format answers one tweet and which a batch, with the figures that chose them (a fine-tuned run)."""
    if set(serving) < {"one tweet", "batches"} or serving["one tweet"] == serving["batches"] == "few-shot":
        return ""
    why = f" ({as_text(serving['source'])} on this machine)" if serving.get("source") else ""
    return (f"  \n<small>⚙️ one tweet: {as_text(serving['one tweet'], 300)}; batches: "
            f"{as_text(serving['batches'], 300)}{why}</small>")


def progress_html(status: dict) -> str:
    state, step, total = status["state"], status.get("step") or 0, status.get("total_steps") or 0
    share = 1.0 if state == "done" else (step / total if total else 0.0)
    line = f"{STATE_ICON.get(state, '')} {state}"
    if status.get("run_id"):
        line += f" · run {status['run_id']}"
    if total:
        line += f" · step {step}/{total} · epoch {status.get('epoch') or 0:.2f}"
    if state == "running" and status.get("budget_s"):
        line += f" · {budget_text(status)}"
    if state == "running" and status.get("eta_s") is not None:
        line += f" · ETA {duration(status['eta_s'])}"
    return (f'<div class="job-bar"><div style="width:{100 * share:.1f}%"></div></div>'
            f'<p class="job-line">{html.escape(line)}</p>'
            f'<p class="job-msg">{html.escape(status.get("message") or "")}</p>')


def budget_md(cfg) -> str:
    """Before the click: how many tweets the next run trains on (from the last speed measurement)."""
    return f"⏱️ {as_text(budget.hint(cfg), 600)}"


def resume_md(status: dict) -> str:
    """How far the newest run that can resume got, and where Resume continues it ("" when none can)."""
    points = status.get("resumable") or []
    if not points:
        return ""
    p = points[0]
    got = f" at step {p['step']}/{p['total_steps']}" if p.get("step") and p.get("total_steps") else ""
    more = f" ({len(points) - 1} more in the Runs tab)" if len(points) > 1 else ""
    return (f"⏸ Run **{as_text(p['run_id'])}** was {as_text(p['state'])}{got}: **Resume** continues it from its "
            f"checkpoint at step {p['checkpoint_step']}, with the settings and data it started with{more}.")


def resumable_runs(status: dict) -> list[tuple[str, str]]:
    """(label, run id) for each run that can resume, for a dropdown."""
    return [(f"{p['run_id']} ({p['state']}, resumes at step {p['checkpoint_step']}/{p.get('total_steps') or '?'})",
             p["run_id"]) for p in status.get("resumable") or []]


def curves(events: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(loss, validation metrics) as long tables for the plots: step, value, series."""
    loss = [{"step": e["step"], "value": e["loss"], "series": "train loss"} for e in events
            if e.get("event") == "log" and "loss" in e]
    loss += [{"step": e["step"], "value": e["eval_loss"], "series": "validation loss"} for e in events
             if e.get("event") == "eval" and "eval_loss" in e]
    loss += resume_marks(events, [row for row in loss if row["series"] == "train loss"])
    scores = [{"step": e["step"], "value": e[key], "series": name} for e in events if e.get("event") == "eval"
              for key, name in (("eval_accuracy", "accuracy"), ("eval_f1_macro", "macro-F1")) if key in e]
    columns = ["step", "value", "series"]
    return pd.DataFrame(loss, columns=columns), pd.DataFrame(scores, columns=columns)


def resume_marks(events: list[dict], train_loss: list[dict]) -> list[dict]:
    """A point on the loss curve where a run resumed: at the train loss logged last before that step."""
    marks = []
    for e in events:
        if e.get("event") == "resumed":
            before = [row["value"] for row in train_loss if row["step"] <= e["step"]]
            marks.append({"step": e["step"], "value": before[-1] if before else None, "series": "resumed here"})
    return [m for m in marks if m["value"] is not None]


def event_log(events: list[dict], last: int = 200) -> str:
    """The events as plain text lines, newest first."""
    lines = [f"{datetime.fromtimestamp(e.get('time', 0)):%H:%M:%S}  {e.get('event', ''):<8} {event_text(e)}"
             for e in events[-last:]]
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
        return ("**Hub:** not pushed: no Hub repo set (HUB_MODEL_ID)" if not repo
                else f"**Hub:** not pushed to {as_text(repo)} yet")
    state, repo = push.get("state"), as_text(push.get("repo_id", ""))
    if state == "pushed":
        return f"**Hub:** ✅ pushed to [{repo}]({push.get('url')}) — {as_text(push.get('message', ''))}"
    icon = {"pushing": "⏳", "skipped": "⏭️", "failed": "❌"}.get(state, "")
    return f"**Hub:** {icon} {state} {repo} — {as_text(push.get('message', ''))}"


def runs_table(runs_dir: Path) -> pd.DataFrame:
    """One row per run, newest first, with the newest complete one and the one serving marked."""
    newest, served = latest(runs_dir), serving(runs_dir)
    rows = []
    for run in list_runs(runs_dir):
        cfg, metrics, report = run.config, run.metrics, run.data_report
        test, base = metrics.get("test", {}), metrics.get("baseline", {})
        lineage = metrics.get("lineage") or {}
        marks = " ".join(mark for mark, on in (("⭐ latest", newest is not None and run.id == newest.id),
                                               ("▶ serving", served is not None and run.id == served.id),
                                               ("✋ kept: no better", run.is_complete and not run.promoted)) if on)
        rows.append({"run": run.id, "": marks, "state": run.state,
                     "base model": Path(cfg.get("base_model", "")).name,
                     "click": lineage.get("clicks"), "tweets (all clicks)": lineage.get("tweets_seen"),
                     "train/val/test": "/".join(str(v) for v in (report.get("sizes") or {}).values()),
                     "accuracy": _round(test.get("accuracy")),
                     "macro-F1": _round(test.get("f1_macro")), "baseline acc.": _round(base.get("accuracy")),
                     "agrees with people": agreement_cell(metrics.get("corrections")),
                     "Hub": read_dict(run.path / PUSH_RESULT).get("state", "")})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def clicks(runs_dir: Path) -> gr.ScatterPlot:
    """Test accuracy per click of each chain of runs (finetune.lineage), for the Runs tab's plot: click, the
    chain's tweets and training minutes so far, accuracy, and the chain (named by its first run); the
    accuracy axis spans the runs' own range, so that a point's gain shows."""
    runs = {r.id: r for r in list_runs(runs_dir) if r.is_complete and r.metrics.get("lineage")}
    rows = []
    for run in runs.values():
        first, lineage = run, run.metrics["lineage"]
        while (parent := runs.get(first.metrics["lineage"].get("parent") or "")) is not None:
            first = parent
        rows.append({"click": lineage["clicks"], "tweets": lineage.get("tweets_seen", 0),
                     "minutes": round(lineage.get("train_seconds", 0) / 60, 1),
                     "accuracy": run.metrics["test"]["accuracy"], "chain": f"from {first.id}"})
    frame = pd.DataFrame(sorted(rows, key=lambda r: (r["chain"], r["click"])),
                         columns=["click", "tweets", "minutes", "accuracy", "chain"])
    low, high = (frame["accuracy"].min(), frame["accuracy"].max()) if rows else (0.0, 1.0)
    return gr.ScatterPlot(frame, y_lim=[max(0.0, low - 0.02), min(1.0, high + 0.02)])


def finished_runs(runs_dir: Path) -> list[str]:
    return [r.id for r in list_runs(runs_dir) if r.is_complete]


def agreement_cell(judged: dict | None) -> str:
    """How often a run agrees with the corrections people made since the previous run."""
    return f"{judged['accuracy']:.0%} of {judged['n']}" if judged and judged.get("n") else ""


def waiting_md(runs_dir: Path) -> str:
    """How many corrections the next retrain learns from, and how many wait for an admin's review."""
    items = corrections.load(runs_dir)
    n, pending = len(corrections.waiting(runs_dir, items)), sum(c.status == corrections.PENDING for c in items)
    review = f" {pending} more wait for an admin's review (*Review corrections*)." if pending else ""
    if not n:
        return "No corrections from the chat are waiting." + review
    return (f"📝 **{n}** correction(s) from the chat are waiting: the next retrain learns from them "
            f"(untick *include corrections* in Settings to leave them out).{review}")


def _round(x):
    return None if x is None else round(x, 3)


def model_card(run: Run) -> str:
    """The run's model card without its YAML header (the Hub shows that as metadata)."""
    try:
        return ModelCard((run.path / "README.md").read_text()).text
    except (OSError, yaml.YAMLError):
        return "_no model card: the run did not finish_"
