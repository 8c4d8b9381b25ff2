import json
import threading

import pytest

from finetune import train
from core.errors import UserError
from core.runs import Run, latest, list_runs


def test_run_folder_is_complete(trained_run):
    run = Run(trained_run)
    assert run.is_complete and not trained_run.name.endswith(".partial")
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_config.json", "metrics.json",
            "history.jsonl", "data_report.json", "README.md", "status.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)   # safetensors only
    assert "_checkpoints" not in names
    config = json.loads((trained_run / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["pad_token_id"] is not None
    m = run.metrics
    assert set(m["test"]) >= {"accuracy", "f1_macro", "per_class", "confusion_matrix"}
    assert m["test"]["n"] == 60 and sum(map(sum, m["test"]["confusion_matrix"])) == 60
    assert m["baseline"]["k"] == 2 and 0 <= m["baseline"]["accuracy"] <= 1
    assert m["test"]["accuracy"] > 0.6, "the tiny model should learn the fixture's word-level sentiment"
    report = run.data_report
    for key in ("rows_in", "dropped_empty", "duplicates_removed", "conflicting_labels", "train_test_overlap",
                "label_counts"):
        assert key in report
    assert set(report["label_counts"]) == {"train", "validation", "test"}


def test_history_and_card(trained_run):
    events = Run(trained_run).history()
    kinds = [e["event"] for e in events]
    assert "log" in kinds and kinds.count("eval") >= 2 and kinds[-1] == "done"
    assert all("loss" in e for e in events if e["event"] == "log")
    card = (trained_run / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: text-classification" in card
    assert "Confusion matrix" in card and "Intended use" in card and "(before)" in card


def test_best_checkpoint_is_kept(trained_run):
    m = Run(trained_run).metrics
    evals = [e for e in Run(trained_run).history() if e["event"] == "eval"]
    best = max(evals, key=lambda e: e["eval_f1_macro"])
    assert m["best_checkpoint_step"] == best["step"]


def test_events_reach_the_listener(tiny_config):
    events = []
    result = train.fine_tune(tiny_config(), on_event=events.append)
    assert result.state == "done"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total_steps"] > 0
    assert any(e.get("eta_s") is not None for e in progress)
    assert all(e["run_id"] == result.run_id for e in events)


def test_runs_of_different_sizes_share_one_baseline_measurement(tiny_config, runs_dir, monkeypatch):
    from finetune import baseline
    measured = []
    real = baseline.FewShotClassifier.load
    monkeypatch.setattr(baseline.FewShotClassifier, "load", lambda *a, **k: measured.append(1) or real(*a, **k))
    small = train.fine_tune(tiny_config(train_size=40, measure_forgetting=False))
    large = train.fine_tune(tiny_config(train_size=72, measure_forgetting=False))
    assert Run(small.run_dir).data_report["sizes"]["train"] != Run(large.run_dir).data_report["sizes"]["train"]
    assert Run(large.run_dir).metrics["baseline"] == Run(small.run_dir).metrics["baseline"]
    assert measured == [1] and len(list((runs_dir / "_cache").glob("baseline-*.json"))) == 1  # the cache held


def test_stop_flag_ends_training_and_keeps_latest(tiny_config, runs_dir):
    first = train.fine_tune(tiny_config())
    stop = threading.Event()

    def stop_at_step_2(event):
        if event["event"] == "progress" and event["step"] >= 2:
            stop.set()

    result = train.fine_tune(tiny_config(epochs=20), on_event=stop_at_step_2, stop=stop)
    assert result.state == "stopped"
    status = Run(result.run_dir).status
    assert status["state"] == "stopped" and status["step"] < status["total_steps"]
    assert result.run_dir.name.endswith(".partial") and not (result.run_dir / "model.safetensors").exists()
    assert latest(runs_dir).id == first.run_id


def test_crash_mid_run_leaves_latest_unchanged(tiny_config, runs_dir):
    first = train.fine_tune(tiny_config())

    def crash(event):
        if event["event"] == "eval":
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        train.fine_tune(tiny_config(), on_event=crash)
    assert latest(runs_dir).id == first.run_id
    failed = [r for r in list_runs(runs_dir) if r.state == "failed"]
    assert len(failed) == 1 and "power cut" in failed[0].status["message"]


def test_bad_settings_fail_before_any_run_folder(tiny_config, runs_dir, tmp_path):
    with pytest.raises(UserError, match="epochs"):
        train.fine_tune(tiny_config(epochs=-1))
    with pytest.raises(UserError, match="not a model folder"):
        train.fine_tune(tiny_config(base_model=str(tmp_path)))
    with pytest.raises(UserError, match="no column"):
        train.fine_tune(tiny_config(label_column="stars"))
    assert list_runs(runs_dir) == []
