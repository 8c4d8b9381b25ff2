"""The command lines as users run them: subprocesses, local folders, one-line errors."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from core.runs import latest

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def cli(*args, timeout=300, cwd=ROOT):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


def tiny_args(tiny_model, tiny_dataset, runs_dir):
    return ["--base-model", str(tiny_model), "--dataset", str(tiny_dataset), "--train-size", "60", "--test-size", "20",
            "--epochs", "1", "--batch-size", "8", "--few-shot-k", "0", "--max-length", "32", "--runs-dir", str(runs_dir)]


def test_finetune_then_inference(tiny_model, tiny_dataset, runs_dir):
    out = cli("-m", "finetune", *tiny_args(tiny_model, tiny_dataset, runs_dir))
    assert out.returncode == 0, out.stderr
    run = latest(runs_dir)
    assert f"run folder: {run.path}" in out.stdout
    assert "before (base model, zero-shot prompting): accuracy" in out.stdout and "after" in out.stdout
    assert "step" in out.stderr and "Traceback" not in out.stderr
    out = cli("-m", "inference", "--model", str(run.path), "I love this!", "--json")
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout)
    assert line["label"] in line["scores"] and abs(sum(line["scores"].values()) - 1) < 1e-4
    assert line["model"] == run.id
    assert not list(run.path.glob("serving/onnx-int8-*"))  # one call: no int8 export for single tweets
    out = cli("-m", "inference", "--runs-dir", str(runs_dir), "good day", "", "bad day")   # latest run by default
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2  # the empty one is skipped, with a warning
    assert "skipped 1 empty text" in out.stderr
    out = cli("-m", "inference", "--runs-dir", str(runs_dir), " ")
    assert out.returncode == 2 and "give tweets" in out.stderr


@pytest.mark.parametrize("change, words", [
    (["--base-model", "{tmp}"], "not a model folder"),
    (["--base-model", "openai-community/no-such-model"], "local folder"),
    (["--dataset", "someone/no-such-dataset"], "local folder"),
    (["--text-column", "tweet"], "no column 'tweet'"),
    (["--epochs", "-2"], "epochs must be > 0"),
    (["--batch-size", "-1"], "batch_size must be >= 0"),
    (["--train-size", "lots"], "not a whole number"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_model, tiny_dataset, runs_dir, tmp_path, capsys, change, words):
    from finetune.__main__ import main

    args = tiny_args(tiny_model, tiny_dataset, runs_dir) + [c.format(tmp=tmp_path) for c in change]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert latest(runs_dir) is None


def test_bad_input_as_a_user_sees_it_no_traceback(tiny_model, tiny_dataset, runs_dir, tmp_path):
    out = cli("-m", "finetune", *tiny_args(tiny_model, tiny_dataset, runs_dir), "--base-model", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"error: {tmp_path} is not a model folder (no config.json): pass a "
                                               f"folder saved with save_pretrained, a run folder, or a Hub model id"]


def test_inference_bad_input(tmp_path):
    out = cli("-m", "inference", "--model", str(tmp_path), "hello")
    assert out.returncode == 2 and "not a model folder" in out.stderr and "Traceback" not in out.stderr
    out = cli("-m", "inference", "--runs-dir", str(tmp_path), "hello")
    assert out.returncode == 2 and "no complete run" in out.stderr


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_torchrun_two_processes_on_cpu(tiny_model, tiny_dataset, runs_dir):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = subprocess.run([torchrun, "--nproc-per-node", "2", "-m", "finetune",
                          *tiny_args(tiny_model, tiny_dataset, runs_dir)],
                         capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [p for p in runs_dir.iterdir() if not p.name.startswith("_")]
    assert len(runs) == 1 and latest(runs_dir).path == runs[0]       # one run folder, written by rank 0
    assert out.stdout.count("run folder:") == 1
    assert latest(runs_dir).metrics["test"]["n"] == 20


def test_every_documented_flag_spelling_reaches_the_config(monkeypatch, tmp_path, capsys):
    """The flags the README and scripts use, through main(): training and the sweep are stood in for."""
    import finetune.__main__ as cli_main
    from finetune import train
    from finetune.sweep import SweepResult

    seen = {}

    def fake_fine_tune(cfg, on_event=None, stop=None):
        seen["cfg"], seen["quiet"] = cfg, on_event is None
        return train.RunResult("done", tmp_path, "run-1", {"test": {"accuracy": 0.5, "f1_macro": 0.4}})

    def fake_search(cfg, grid, on_event=None):
        seen["grid"] = grid
        return SweepResult(names=["learning_rate"], rows=[{"learning_rate": 1e-4, "val_accuracy": 0.5,
                                                               "val_f1_macro": 0.4, "val_loss": 1.0,
                                                               "train_seconds": 1.0}], configs=[cfg])

    monkeypatch.setattr(cli_main.train, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(cli_main.sweep, "search", fake_search)
    monkeypatch.setattr(cli_main.sweep, "save", lambda result, runs_dir: tmp_path / "sweep.json")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert cli_main.main(["--base-model", "some/model", "--dataset", "some/data", "--runs-dir", str(tmp_path),
                          "--train-size", "500", "--test-size", "all", "--no-group-by-length", "--lora",
                          "--no-measure-forgetting", "--precision", "bf16", "--few-shot-k", "0",
                          "--learning-rate", "5e-5", "--hub-model-id", "me/tweets"]) == 0
    cfg = seen["cfg"]
    assert (cfg.base_model, cfg.dataset, cfg.runs_dir, cfg.hub_model_id) == ("some/model", "some/data", str(tmp_path),
                                                                           "me/tweets")
    assert (cfg.train_size, cfg.test_size, cfg.group_by_length, cfg.lora, cfg.measure_forgetting) == (
        500, 0, False, True, False)
    assert (cfg.precision, cfg.few_shot_k, cfg.learning_rate, seen["quiet"]) == ("bf16", 0, 5e-5, False)
    assert "hub: skipped" in capsys.readouterr().out  # no token here: the push says why

    assert cli_main.main(["--train-size", "all", "--sweep", "learning_rate=1e-4,2e-4", "--sweep-train-best",
                          "--quiet", "--runs-dir", str(tmp_path)]) == 0
    assert seen["grid"] == {"learning_rate": ["1e-4", "2e-4"]} and seen["quiet"] and seen["cfg"].train_size == 0
    assert "training the best setting: learning_rate=0.0001" in capsys.readouterr().out
    assert cli_main.main(["--sweep", "--runs-dir", str(tmp_path)]) == 0  # the default grid, table only
    assert "epochs" in seen["grid"] and "training the best" not in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--precision", "fp8"], "invalid choice: 'fp8'"),
    (["--learning-rate", "fast"], "invalid float value"),
    (["--test-size", "-3"], "must be a whole number >= 0"),
    (["--no-such-flag"], "unknown option"),
])
def test_bad_flags_are_one_line_and_exit_2(argv, words, capsys):
    from finetune.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and len(err.strip().splitlines()) == 1, err
