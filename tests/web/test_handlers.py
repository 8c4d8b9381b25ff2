"""The page's handlers without a browser (web/handlers.py): one model call per chat message fills every
panel; the correction stores the label the person saw; the live view sends only what changed."""
from __future__ import annotations

import shutil

import pytest

from core.settings import Settings
from finetune import corrections
from finetune.config import TrainConfig
from web import handlers
from web.backend import OWNER, Backend


@pytest.fixture
def backend(trained_run, tiny_model, tiny_dataset, runs_dir):
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    defaults = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir))
    backend = Backend(defaults, settings=Settings())
    backend.model()  # loaded
    return backend


def test_one_chat_message_is_one_model_call_and_fills_every_panel(backend, monkeypatch, trained_run):
    model, calls = backend.server.model, []
    for name in ("classify", "classify_variants"):
        real = getattr(model, name)
        monkeypatch.setattr(model, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    out = handlers.chat(backend, "so happy and glad today", [])
    assert calls == ["classify_variants"]
    seen = out["last_reply"]
    assert seen == {"text": "so happy and glad today", "label": max(out["label"], key=out["label"].get),
                    "model": trained_run.name}
    assert out["message"] == "" and f"**{seen['label']}**" in out["chatbot"][-1]["content"]
    scored = [p["token"] for p in out["why"].value if p["class_or_confidence"] is not None]
    assert scored == "so happy and glad today".split()  # every word highlighted

    other = next(l for l in ("negative", "neutral", "positive") if l != seen["label"])
    saved = handlers.correct(backend, OWNER, seen, other)
    assert "1 correction\\(s\\) waiting" in saved["correct_note"] and "**1**" in saved["waiting"]  # Markdown-escaped
    [stored] = corrections.load(backend.runs_dir)
    assert (stored.model_label, stored.corrected_label) == (seen["label"], other)
    assert handlers.correct(backend, OWNER, None, other)["correct_note"] == "Classify a tweet first."


def test_a_bad_message_is_answered_in_words_and_clears_the_panels(backend):
    out = handlers.chat(backend, "   ", [])
    assert "empty" in out["chatbot"][-1]["content"] and out["why"] is None and out["last_reply"] is None


def test_the_live_view_sends_only_the_progress_when_nothing_changed(backend):
    first = handlers.live(backend, None)
    assert {"progress", "loss_plot", "scores", "seen"} <= set(first)
    assert set(handlers.live(backend, first["seen"])) == {"progress"}


def test_the_note_under_the_buttons_is_cleared_once_the_job_has_ended(backend, monkeypatch):
    real, state = backend.job.status, {"state": "running"}
    monkeypatch.setattr(backend.job, "status", lambda: {**real(), "run_id": "r1", **state})
    assert "action_note" not in handlers.live(backend, None)  # "started: …" stays while the job runs
    state["state"] = "done"
    ended = handlers.live(backend, None)
    assert ended["action_note"] == ""
    assert set(handlers.live(backend, ended["seen"])) == {"progress"}  # cleared once, not on every poll


def test_a_single_validation_point_is_drawn_over_the_runs_steps():
    from web import views

    events = [{"event": "log", "step": s, "loss": 1.0} for s in range(1, 9)] + [
        {"event": "eval", "step": 8, "eval_accuracy": 0.5, "eval_f1_macro": 0.4}]
    plot = handlers.validation_plot(*views.curves(events))
    assert plot.x_lim == [0, 9] and list(plot.value["data"][0][:2]) == [8, 0.5]  # the point, inside the axis
    assert handlers.validation_plot(*views.curves([])).empty  # nothing yet: an empty table, no axis
