"""Over- and underfitting, read from a run's history: the training loss logged between evaluations and
the validation loss at each evaluation.

    diagnose(Run(path).history())  →  {"verdict": "overfit" | "underfit" | "ok" | "unknown", ...}

- overfit: the validation loss reached its minimum and then rose (by more than `RISE`) while the training
  loss kept falling; `turned_epoch` is the epoch of that minimum, the point to stop at.
- underfit: at the end both losses are still high: at least `HIGH` × ln(3), the loss of a model that
  gives each of the three labels a third.
- ok: neither; unknown: no validation evaluations (validation_share = 0) to judge from.

The result is `metrics.json["fit_diagnosis"]` of every run (keys: verdict, summary, advice, evidence,
turned_epoch, points) and a section of its model card.
"""
from __future__ import annotations

import math

from core.labels import LABELS

CHANCE_LOSS = math.log(len(LABELS))  # cross-entropy of a uniform guess over the labels: 1.0986
HIGH = 0.85                          # "high" loss: at least this share of CHANCE_LOSS
RISE = 0.05                          # "rising" validation loss: at least 5 % above its minimum
FALLING = 0.02                       # "falling" training loss: at least 2 % below its value at the minimum


def curve(history: list[dict]) -> list[dict]:
    """One point per evaluation: epoch, step, validation loss, and the mean training loss logged since the
    previous evaluation (None when no training loss was logged in between)."""
    points, window = [], []
    for event in history:
        if event.get("event") == "log" and isinstance(event.get("loss"), (int, float)):
            window.append(float(event["loss"]))
        elif event.get("event") == "eval" and isinstance(event.get("eval_loss"), (int, float)):
            train_loss = sum(window) / len(window) if window else (points[-1]["train_loss"] if points else None)
            points.append({"epoch": event.get("epoch"), "step": event.get("step"),
                           "train_loss": None if train_loss is None else round(train_loss, 4),
                           "eval_loss": round(float(event["eval_loss"]), 4)})
            window = []
    return points


def diagnose(history: list[dict]) -> dict:
    """The verdict with its evidence and advice, in words; see the module docstring."""
    points = curve(history)
    if not points:
        return _result("unknown", "no validation evaluations to judge from",
                       "keep validation_share above 0 so that the run is evaluated while it trains", [], points)
    first, last = points[0], points[-1]
    best = min(points, key=lambda p: p["eval_loss"])
    evidence = [f"validation loss {_trend(points, 'eval_loss')}", f"training loss {_trend(points, 'train_loss')}"]

    if best is not last and last["eval_loss"] > best["eval_loss"] * (1 + RISE) and _falling(best, last):
        return _result(
            "overfit",
            f"overfit: the validation loss turned at epoch {best['epoch']:g} ({best['eval_loss']:.3f}) and rose "
            f"to {last['eval_loss']:.3f} while the training loss kept falling "
            f"({best['train_loss']:.3f} → {last['train_loss']:.3f})",
            f"train for about {best['epoch']:g} epoch(s) (the checkpoint kept is the best one by validation "
            f"macro-F1); or lower the learning rate, use more training tweets, or try --lora",
            evidence, points, turned_epoch=best["epoch"], turned_step=best["step"])

    high = HIGH * CHANCE_LOSS
    train_end = last["train_loss"] if last["train_loss"] is not None else last["eval_loss"]
    if last["eval_loss"] >= high and train_end >= high:
        still_falling = len(points) > 1 and last["eval_loss"] < first["eval_loss"] * (1 - FALLING)
        advice = ("the losses are still falling: train for more epochs or on more tweets" if still_falling else
                  "the losses are flat: raise the learning rate (e.g. ×3), train longer, or use a larger "
                  "pretrained base model")
        return _result(
            "underfit",
            f"underfit: validation loss {last['eval_loss']:.3f} and training loss {train_end:.3f} are near "
            f"{CHANCE_LOSS:.3f}, the loss of guessing each label with probability 1/3",
            advice, evidence, points)

    note = "" if len(points) > 1 else " (one evaluation: set evals_per_epoch >= 2 to judge overfitting)"
    return _result("ok", f"ok: validation loss {last['eval_loss']:.3f}, lowest {best['eval_loss']:.3f} at epoch "
                   f"{best['epoch']:g}; no sign of over- or underfitting{note}",
                   "nothing to fix; more training tweets usually help most", evidence, points)


def card_section(diagnosis: dict) -> str:
    """The model card's paragraph."""
    return (f"## Fit diagnosis: {diagnosis['verdict']}\n\n{diagnosis['summary'][0].upper()}"
            f"{diagnosis['summary'][1:]}.\n\nAdvice: {diagnosis['advice']}.")


def _result(verdict, summary, advice, evidence, points, turned_epoch=None, turned_step=None) -> dict:
    return {"verdict": verdict, "summary": summary, "advice": advice, "evidence": evidence,
            "turned_epoch": turned_epoch, "turned_step": turned_step, "points": points}


def _falling(best: dict, last: dict) -> bool:
    if best["train_loss"] is None or last["train_loss"] is None:
        return False
    return last["train_loss"] < best["train_loss"] * (1 - FALLING)


def _trend(points: list[dict], key: str) -> str:
    values = [p[key] for p in points if p[key] is not None]
    return "not logged" if not values else " → ".join(f"{v:.3f}" for v in values)
