"""The over/underfitting diagnosis, on crafted histories and on a real run's metrics and card."""
import json

import pytest

from finetune.diagnosis import CHANCE_LOSS, card_section, curve, diagnose


def history(train_losses, eval_losses, logs_per_eval=2):
    """Events as train.fine_tune logs them: a few training-loss logs, then one evaluation, per epoch."""
    events = []
    for epoch, (train, val) in enumerate(zip(train_losses, eval_losses), start=1):
        for _ in range(logs_per_eval):
            events.append({"event": "log", "epoch": epoch - 0.5, "step": epoch * 10 - 5, "loss": train})
        events.append({"event": "eval", "epoch": float(epoch), "step": epoch * 10, "eval_loss": val,
                       "eval_accuracy": 0.7})
    return events


def test_overfit_names_the_epoch_where_validation_loss_turned():
    result = diagnose(history([0.9, 0.6, 0.4, 0.2, 0.1], [0.80, 0.62, 0.60, 0.70, 0.85]))
    assert result["verdict"] == "overfit"
    assert result["turned_epoch"] == 3.0 and result["turned_step"] == 30
    assert "epoch 3" in result["summary"] and "rose" in result["summary"]
    assert "about 3 epoch" in result["advice"]
    assert result["evidence"][0] == "validation loss 0.800 → 0.620 → 0.600 → 0.700 → 0.850"


def test_rising_validation_loss_with_flat_training_loss_is_not_overfitting():
    # the training loss is not falling any more: noise, not memorisation
    result = diagnose(history([0.5, 0.5, 0.5], [0.55, 0.5, 0.6]))
    assert result["verdict"] == "ok"


def test_underfit_when_both_losses_stay_near_chance():
    flat = diagnose(history([1.10, 1.09, 1.09], [1.10, 1.10, 1.09]))
    assert flat["verdict"] == "underfit"
    assert "flat" in flat["advice"] and "learning rate" in flat["advice"]
    falling = diagnose(history([1.20, 1.10, 1.00], [1.20, 1.10, 1.00]))
    assert falling["verdict"] == "underfit" and "still falling" in falling["advice"]
    # "high" is judged against the loss of a uniform guess: 0.85 × ln 3 = 0.934, and both losses must be high
    assert CHANCE_LOSS == pytest.approx(1.0986, abs=1e-4)
    assert diagnose(history([0.94, 0.94], [0.94, 0.94]))["verdict"] == "underfit"
    assert diagnose(history([0.92, 0.92], [0.92, 0.92]))["verdict"] == "ok"
    assert diagnose(history([0.94, 0.94], [0.92, 0.92]))["verdict"] == "ok"
    assert diagnose(history([0.92, 0.92], [0.94, 0.94]))["verdict"] == "ok"


def test_ok_run_and_single_evaluation():
    assert diagnose(history([0.9, 0.6, 0.5], [0.7, 0.55, 0.5]))["verdict"] == "ok"
    single = diagnose(history([0.6], [0.55]))
    assert single["verdict"] == "ok" and "evals_per_epoch" in single["summary"]
    assert diagnose(history([1.1], [1.1]))["verdict"] == "underfit"


def test_unknown_without_validation_and_curve_points():
    assert diagnose([{"event": "log", "loss": 0.5}])["verdict"] == "unknown"
    points = curve(history([0.9, 0.6], [0.8, 0.7], logs_per_eval=3))
    assert points == [{"epoch": 1.0, "step": 10, "train_loss": 0.9, "eval_loss": 0.8},
                      {"epoch": 2.0, "step": 20, "train_loss": 0.6, "eval_loss": 0.7}]


def test_card_section_says_verdict_and_advice():
    text = card_section(diagnose(history([0.9, 0.6, 0.4, 0.2], [0.8, 0.6, 0.7, 0.9])))
    assert text.startswith("## Fit diagnosis: overfit") and "Advice:" in text


def test_every_run_carries_the_diagnosis_in_metrics_and_card(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["fit_diagnosis"]["verdict"] in ("overfit", "underfit", "ok")
    assert len(metrics["fit_diagnosis"]["points"]) >= 2
    assert "## Fit diagnosis" in (trained_run / "README.md").read_text()
