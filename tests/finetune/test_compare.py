"""The few-shot vs fine-tuning table: every row on the same test subset, produced by one command."""
import json

from finetune import compare
from finetune.config import TrainConfig


def test_rows_share_one_test_subset_and_match_the_run(tiny_model, tiny_dataset, trained_run, tmp_path):
    cfg = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), test_size=60, train_size=0,
                      runs_dir=str(tmp_path))
    rows = compare.compare(cfg, [0, 2], [str(trained_run)])
    assert rows[0]["method"].startswith("majority class (")
    assert [r["method"] for r in rows[1:3]] == ["zero-shot prompting", "2-shot prompting"]
    assert all("calibrated on" in r["prompt"] and "uncalibrated" in r for r in rows[1:3])
    assert {r["n"] for r in rows} == {60}
    # the fixture's test split has 20 tweets of each label: the majority class gets a third right
    majority = ["negative", "neutral", "positive"].index(rows[0]["method"][16:-1])
    assert rows[0]["accuracy"] == 1 / 3 and [row[majority] for row in rows[0]["confusion_matrix"]] == [20] * 3
    # re-evaluating the run on the same subset reproduces the run's own test metrics
    run_metrics = json.loads((trained_run / "metrics.json").read_text())
    assert run_metrics["precision"] == "fp32"  # the session's runs too: the same on a CPU with AMX
    run_metrics = run_metrics["test"]
    assert rows[-1]["method"].startswith("fine-tuned on ")
    assert rows[-1]["accuracy"] == run_metrics["accuracy"] and rows[-1]["confusion_matrix"] == run_metrics["confusion_matrix"]
    text = compare.table(rows)
    assert text.splitlines()[0] == ("| method (test subset: 60 tweets) | accuracy | macro-F1 | "
                                    "uncalibrated accuracy / macro-F1 |")
    raw = rows[1]["uncalibrated"]
    assert f"| {raw['accuracy']:.3f} / {raw['f1_macro']:.3f} |" in text.splitlines()[3]
    assert len(text.splitlines()) == 2 + len(rows)


def test_cli_prints_the_table_and_writes_json(tiny_model, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert compare.main(["--base-model", str(tiny_model), "--dataset", str(tiny_dataset), "--test-size", "30",
                         "--k", "0", "--runs-dir", str(tmp_path), "--json", str(out)]) == 0
    assert "| zero-shot prompting (plain prompt, calibrated on 100 unlabelled tweets) |" in capsys.readouterr().out
    assert [r["method"] for r in json.loads(out.read_text())][1] == "zero-shot prompting"


def test_cli_bad_run_folder_is_one_line_error(tiny_model, tiny_dataset, tmp_path, capsys):
    assert compare.main(["--base-model", str(tiny_model), "--dataset", str(tiny_dataset), "--k",
                         "--runs", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")  # checked before any model is evaluated
