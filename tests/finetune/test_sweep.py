"""The hyperparameter sweep: chooses on validation only, never reads the test split."""
import json

import pytest

from finetune import data, sweep
from finetune.__main__ import main
from finetune.config import ConfigError


class Untouchable:
    """Stands in for the test split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the sweep touched the test split ({name})")

    def __getitem__(self, key):
        raise AssertionError(f"the sweep read the test split ({key!r})")

    def __len__(self):
        raise AssertionError("the sweep measured the test split")


@pytest.fixture
def no_test_split(monkeypatch):
    prepare = data.prepare

    def poisoned(cfg, extra_train=None, **kwargs):
        splits, report = prepare(cfg, extra_train=extra_train)
        dict.__setitem__(splits, "test", Untouchable())
        return splits, report

    monkeypatch.setattr(data, "prepare", poisoned)


def test_sweep_chooses_on_validation_without_touching_test(tiny_config, no_test_split):
    cfg = tiny_config(train_size=90, max_length=24)
    events = []
    result = sweep.search(cfg, sweep.parse_grid("learning_rate=1e-4,5e-3 epochs=1"), on_event=events.append)
    assert [r["learning_rate"] for r in result.rows] == [1e-4, 5e-3]
    assert all(0 <= r["val_accuracy"] <= 1 and r["val_loss"] > 0 for r in result.rows)
    best = max(result.rows, key=lambda r: r["val_f1_macro"])
    assert result.best == best and result.best_config.learning_rate == best["learning_rate"]
    assert "| learning_rate | epochs | val_accuracy |" in result.table()
    assert result.table().count("**") == 2 * len(result.table().splitlines()[0].split("|")[1:-1])
    assert any(e["event"] == "trial" for e in events) and any(e["event"] == "eval" for e in events)
    saved = json.loads(sweep.save(result, cfg.runs_dir).read_text())
    assert saved["chosen_on"] == "validation" and saved["best"] == result.best
    assert not list(sweep.Path(cfg.runs_dir).glob("2*"))  # trials leave no run folders behind


def test_parse_grid_and_its_errors(tiny_config):
    assert sweep.parse_grid("learning-rate=1e-5,2e-5; epochs=1") == {"learning_rate": ["1e-5", "2e-5"],
                                                                     "epochs": ["1"]}
    with pytest.raises(ConfigError, match="cannot sweep 'dataset'"):
        sweep.parse_grid("dataset=a,b")
    with pytest.raises(ConfigError, match="name=value1,value2"):
        sweep.parse_grid("epochs")
    with pytest.raises(ConfigError, match="learning_rate"):
        sweep.trial_configs(tiny_config(), {"learning_rate": ["2"]})
    with pytest.raises(ConfigError, match="not a valid"):
        sweep.trial_configs(tiny_config(), {"batch_size": ["many"]})


def test_sweep_needs_a_validation_split(tiny_config):
    with pytest.raises(sweep.UserError, match="validation"):
        sweep.search(tiny_config(validation_share=0), {"epochs": ["1"]})


def test_cli_sweep_then_train_best_tests_once(tiny_model, tiny_dataset, runs_dir, capsys):
    argv = ["--base-model", str(tiny_model), "--dataset", str(tiny_dataset), "--train-size", "90",
            "--test-size", "30", "--batch-size", "8", "--max-length", "24", "--few-shot-k", "0",
            "--no-measure-forgetting", "--runs-dir", str(runs_dir), "--quiet",
            "--sweep", "learning_rate=1e-4,5e-3", "--sweep-train-best"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "chosen on the validation split" in out and "training the best setting: learning_rate=" in out
    runs = [p for p in runs_dir.iterdir() if not p.name.startswith("_")]
    assert len(runs) == 1  # the best setting, trained once and tested once
    chosen = json.loads(next(runs_dir.glob("_sweeps/*.json")).read_text())["best"]["learning_rate"]
    assert json.loads((runs[0] / "train_config.json").read_text())["learning_rate"] == chosen


def test_cli_bad_grid_is_one_line_error(capsys):
    assert main(["--sweep", "colour=red"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot sweep 'colour'")
