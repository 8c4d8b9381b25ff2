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
    (["--batch-size", "0"], "batch_size must be >= 1"),
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
