"""The model card (README.md of a run and of its Hub repo), in the Hub's model-card format."""
from __future__ import annotations

from core.labels import LABELS

from .config import TrainConfig
from .events import data_report_text


def _pct(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def confusion_table(matrix: list[list[int]]) -> str:
    head = "| true \\ predicted | " + " | ".join(LABELS) + " |\n|---|" + "---|" * len(LABELS) + "\n"
    return head + "".join(f"| {LABELS[i]} | " + " | ".join(str(v) for v in row) + " |\n"
                          for i, row in enumerate(matrix))


def model_card(cfg: TrainConfig, metrics: dict, report: dict, history: list[dict]) -> str:
    test, base = metrics.get("test", {}), metrics.get("baseline", {})
    dataset_meta = f"datasets:\n- {cfg.dataset}\n" if cfg.dataset.count("/") == 1 else ""
    model_meta = f"base_model: {cfg.base_model}\n" if not cfg.base_model.startswith(("/", ".", "~")) else ""
    evals = [e for e in history if e.get("event") == "eval"]
    curve = "".join(f"| {e.get('epoch', 0):.2f} | {e.get('step')} | {_pct(e.get('eval_loss'))} | "
                    f"{_pct(e.get('eval_accuracy'))} | {_pct(e.get('eval_f1_macro'))} |\n" for e in evals)
    per_class = "".join(f"| {name} | {_pct(v['precision'])} | {_pct(v['recall'])} | {_pct(v['f1'])} | "
                        f"{v['support']} |\n" for name, v in test.get("per_class", {}).items())
    extra = "".join(f"\n{section}\n" for section in metrics.get("card_sections", []))
    return f"""---
library_name: transformers
pipeline_tag: text-classification
license: mit
{model_meta}{dataset_meta}tags:
- sentiment-analysis
- tweets
metrics:
- accuracy
- f1
model-index:
- name: {metrics.get('run_id', 'tweet-sentiment')}
  results:
  - task:
      type: text-classification
    dataset:
      name: {cfg.dataset}
      type: {cfg.dataset}
      split: test
    metrics:
    - type: accuracy
      value: {test.get('accuracy', 0):.4f}
    - type: f1
      name: macro-F1
      value: {test.get('f1_macro', 0):.4f}
---

# Tweet sentiment: {cfg.base_model} fine-tuned (run {metrics.get('run_id', '')})

Classifies a tweet as **negative**, **neutral** or **positive**. Fine-tuned from `{cfg.base_model}` with a
3-label sequence-classification head on `{cfg.dataset}`.

## Results on the test subset ({test.get('n', 0)} tweets)

| model | accuracy | macro-F1 |
|---|---|---|
| base model, {base.get('method', 'few-shot')} (before) | {_pct(base.get('accuracy'))} | {_pct(base.get('f1_macro'))} |
| **this model** (after) | **{_pct(test.get('accuracy'))}** | **{_pct(test.get('f1_macro'))}** |

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}
Confusion matrix:

{confusion_table(test.get('confusion_matrix', [[0] * 3] * 3))}
Validation during training:

| epoch | step | loss | accuracy | macro-F1 |
|---|---|---|---|---|
{curve}{extra}
## Data

{data_report_text(report)}

## Training

| setting | value |
|---|---|
| epochs | {cfg.epochs:g} |
| learning rate | {cfg.learning_rate:g} |
| batch size × accumulation | {cfg.batch_size} × {cfg.grad_accum} |
| max length | {cfg.max_length} tokens |
| precision | {metrics.get('precision', cfg.precision)} |
| seed | {cfg.seed} |
| training time | {metrics.get('train_seconds', '–')} s |

The checkpoint kept is the one with the best validation macro-F1 (step {metrics.get('best_checkpoint_step')}).

## Intended use and limits

For English tweets and similar short social-media posts. Three classes only; sarcasm, mixed feelings and
context outside the tweet are often misread. The training data are crowd-labelled tweets with known noise
(duplicates with conflicting labels were found and removed). Not for decisions about people.
"""
