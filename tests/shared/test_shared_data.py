"""The real dataset's known flaws are found and counted; the CLI runs on the shared stand-in model."""
import subprocess
import sys

from finetune.config import TrainConfig
from finetune.data import prepare
from core.runs import latest

from .conftest import offline_model


def test_data_report_on_the_full_dataset(shared_data):
    splits, report = prepare(TrainConfig(dataset=str(shared_data), train_size="all", test_size="all"))
    assert report.rows_in == {"train": 27481, "test": 3534}
    assert report.dropped_empty == 1
    assert report.duplicates_removed >= 70
    assert report.conflicting_labels == 7
    assert report.train_test_overlap >= 27
    assert report.sizes["test"] == 3534
    majority = max(report.label_counts["test"].values()) / report.sizes["test"]
    assert abs(majority - 0.405) < 0.005   # the majority-class baseline the issue quotes


def test_recipe_subsets(shared_data):
    splits, report = prepare(TrainConfig(dataset=str(shared_data), train_size=1000))  # the tutorial's sizes
    assert report.sizes["train"] == 1000 and report.sizes["test"] == 1000
    splits, report = prepare(TrainConfig(dataset=str(shared_data), train_size=1400))  # the one-click size before the budget
    assert report.sizes == {"train": 1400, "validation": 140, "test": 1000}


def test_cli_on_gpt2_tiny(shared_data, tmp_path):
    model = offline_model("gpt2-tiny")
    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "-m", "finetune", "--base-model", str(model), "--dataset", str(shared_data),
                          "--train-size", "200", "--test-size", "100", "--epochs", "1", "--runs-dir", str(runs)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    run = latest(runs)
    assert run.metrics["test"]["n"] == 100 and run.data_report["sizes"]["train"] == 200
    assert "baseline" in run.metrics
    out = subprocess.run([sys.executable, "-m", "inference", "--model", str(run.path), "I love this!"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.split()[0] in ("negative", "neutral", "positive")
