"""The model card (README.md of a run and of its Hub repo): `huggingface_hub.ModelCard` from the Jinja
template card_template.md, its metadata a `ModelCardData` with the test metrics in `model-index`
(`EvalResult`). The sections on the fit diagnosis, forgetting and corrections come from their own
modules, rendered from the run's metrics. A card goes to the Hub, so a base model or dataset given as a
local path is named by its folder or file name only."""
from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from core.errors import looks_like_path
from core.labels import LABELS

from . import corrections, diagnosis, forgetting
from .config import TrainConfig
from .events import data_report_text

TEMPLATE = Path(__file__).with_name("card_template.md")


def hub_id(source: str) -> str | None:
    """`source` when it is a Hub repo id, None when it is a local path."""
    return None if looks_like_path(source) or Path(source).expanduser().exists() else source


def public_name(source: str) -> str:
    """A Hub id as it is; a local path as its last part (no /tmp/..., ~/.cache/..., ../shared/...)."""
    return source if hub_id(source) else Path(source).expanduser().name or source


def card_data(cfg: TrainConfig, metrics: dict) -> ModelCardData:
    """The card's YAML: tags, base model and dataset (when on the Hub), and `model-index` with test
    accuracy and macro-F1."""
    test, dataset = metrics.get("test", {}), public_name(cfg.dataset)
    results = [EvalResult(task_type="text-classification", dataset_type=dataset, dataset_name=dataset,
                          dataset_split="test", metric_type=kind, metric_name=name, metric_value=round(value, 4))
               for kind, name, value in (("accuracy", "accuracy", test.get("accuracy", 0.0)),
                                         ("f1", "macro-F1", test.get("f1_macro", 0.0)))]
    return ModelCardData(
        library_name="transformers", pipeline_tag="text-classification", license="mit",
        base_model=hub_id(cfg.base_model), datasets=[cfg.dataset] if hub_id(cfg.dataset) else None,
        tags=["sentiment-analysis", "tweets"], metrics=["accuracy", "f1"],
        model_name=metrics.get("run_id") or "tweet-sentiment", eval_results=results)


def sections(metrics: dict, report: dict) -> list[str]:
    """The card's sections that a run has: fit diagnosis, forgetting, people's corrections."""
    out = []
    if metrics.get("fit_diagnosis"):
        out.append(diagnosis.card_section(metrics["fit_diagnosis"]))
    if metrics.get("forgetting") and "error" not in metrics["forgetting"]:
        out.append(forgetting.card_section(metrics["forgetting"]))
    if metrics.get("corrections"):
        out.append(corrections.card_section(metrics["corrections"], report.get("corrections_added", 0)))
    return out


def model_card(cfg: TrainConfig, metrics: dict, report: dict, history: list[dict]) -> str:
    """The card's text (front matter and markdown)."""
    test = metrics.get("test", {})
    card = ModelCard.from_template(
        card_data(cfg, metrics), template_path=str(TEMPLATE), cfg=cfg, run_id=metrics.get("run_id", ""),
        base_name=public_name(cfg.base_model), dataset_name=public_name(cfg.dataset), test=test,
        baseline=metrics.get("baseline", {}), labels=list(LABELS),
        confusion=test.get("confusion_matrix") or [[0] * len(LABELS)] * len(LABELS),
        evals=[e for e in history if e.get("event") == "eval"], sections=sections(metrics, report),
        resumed=[e for e in history if e.get("event") == "resumed"],
        data_report=data_report_text(report), precision=metrics.get("precision", cfg.precision),
        train_seconds=metrics.get("train_seconds", "–"), best_step=metrics.get("best_checkpoint_step"),
        lineage=metrics.get("lineage"), promotion=metrics.get("promotion"))
    return str(card)
