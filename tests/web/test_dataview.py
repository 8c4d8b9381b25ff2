"""The Train tab's data views without a browser (web/dataview.py through web/handlers.py): an uploaded file
is previewed with its own columns before training; the label review lists suspects, and a person's keep,
relabel or exclude changes the next run's data report."""
from __future__ import annotations

import random
import re

import gradio as gr
import pytest

from core.settings import Settings
from finetune import corrections, exclusions
from finetune.config import TrainConfig
from finetune.train import prepare_data
from web import handlers
from web.backend import OWNER, Backend

LABELS_IN_FILE = ("negative", "Neutral", "POSITIVE")


@pytest.fixture
def backend(tiny_model, tiny_dataset, runs_dir, tmp_path):
    defaults = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir),
                           train_size=150)
    return Backend(defaults, settings=Settings(data_dir=str(tmp_path / "data")))


def latin1_csv(path, rows=60):
    """`id,tweet,sentiment` in Latin-1, string labels in mixed case: what a person exports from a spreadsheet."""
    rng = random.Random(0)
    words = "morning train rain lunch movie team game phone music city night coffee work friends".split()
    tweets = [f"café {' '.join(rng.sample(words, 4))} was {('awful', 'ok', 'great')[i % 3]}" for i in range(rows)]
    lines = ["id,tweet,sentiment"] + [f"{i},{t},{LABELS_IN_FILE[i % 3]}" for i, t in enumerate(tweets)]
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def test_an_uploaded_file_is_previewed_with_its_own_columns(backend, tmp_path):
    out = handlers.upload_dataset(backend, OWNER, str(latin1_csv(tmp_path / "mine.csv")))
    assert re.search(r"uploads/[0-9a-f]{16}/mine\.csv$", out["dataset"]) and r"mine\.csv" in out["action_note"]
    assert isinstance(out["text_column"], gr.Dropdown) and out["text_column"].value == "tweet"
    assert out["label_column"].value == "sentiment" and out["label_column"].choices == [
        ("id", "id"), ("tweet", "tweet"), ("sentiment", "sentiment")]
    rows = out["preview_rows"].value  # a gr.Dataframe update: headers and data
    assert rows["headers"] == ["id", "tweet", "sentiment"] and len(rows["data"]) == 5
    assert rows["data"][0][1].startswith("café ")  # decoded from Latin-1
    note = out["preview_note"]
    assert "60 rows" in note and "negative 20, neutral 20, positive 20" in note and "Data report" in note


def test_picking_a_column_that_is_not_text_says_what_is_wrong(backend, tmp_path):
    dataset = handlers.upload_dataset(backend, OWNER, str(latin1_csv(tmp_path / "mine.csv")))["dataset"]
    out = handlers.preview_data(backend, OWNER, dataset, "tweet", "id")
    assert out["preview_note"].startswith("⚠️") and not out["preview_rows"].visible
    note = out["preview_note"].replace("\\", "")  # the Markdown escapes
    assert "the label column 'id' holds values that are not sentiments" in note and "pick another label column" in note


def test_a_path_outside_the_app_folders_is_refused_without_saying_whether_it_exists(backend):
    for path in ("/etc/passwd", "/nope/data.csv"):
        out = handlers.preview_data(backend, OWNER, path)
        assert "other paths on the server are not accepted" in out["preview_note"]


def test_the_review_lists_suspects_and_each_decision_changes_the_next_data_report(backend, runs_dir):
    settings = dict(dataset="", text_column="", label_column="", base_model="", train_size=None)
    out = handlers.review_data(backend, *settings.values())
    assert out["review_note"].startswith("🔍") and "look mislabelled" in out["review_note"]
    choices = [value for _, value in out["suspect"].choices]
    assert len(choices) >= 3 and list(out["suspects"]["tweet"]) == choices
    cfg = TrainConfig.from_dict({**backend.defaults.to_dict(), "include_corrections": True})
    _, before = prepare_data(cfg)
    assert before.suspected_label_errors == len(exclusions.open_suspects(runs_dir)) > 0

    keep, relabel, drop = choices[:3]
    assert handlers.pick_suspect(backend, relabel)["review_label"] in ("negative", "neutral", "positive")
    suggested = handlers.pick_suspect(backend, relabel)["review_label"]
    assert "kept" in handlers.decide(backend, keep, None, "keep")["decide_note"]
    assert "relabelled" in handlers.decide(backend, relabel, suggested, "relabel")["decide_note"]
    last = handlers.decide(backend, drop, None, "exclude")
    assert "excluded" in last["decide_note"]
    assert not {keep, relabel, drop} & {value for _, value in last["suspect"].choices}  # decided: off the list
    assert handlers.decide(backend, drop, None, "exclude")["decide_note"].startswith("⚠️")  # already decided

    _, after = prepare_data(cfg)
    assert after.excluded_by_review == 1 and after.relabelled_by_corrections == 1
    assert after.suspected_label_errors == before.suspected_label_errors - 3
    assert [c.corrected_label for c in corrections.load(runs_dir)] == [suggested]
