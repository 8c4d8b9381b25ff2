"""The catastrophic-forgetting meter: how much of the base model's general language ability the
fine-tuned backbone kept.

The base causal LM reads a short general-English text shipped with the project (general_english.txt,
written for it; no tweets) and we take its perplexity. Then the same LM gets the fine-tuned classifier's
backbone weights while keeping its own LM head, and reads the text again. A backbone that still models
English well keeps a perplexity near the base one; one that forgot shows a large rise.

    measure(base_model, classifier, tokenizer)  →  {"base_perplexity", "tuned_perplexity", "change", ...}
    python -m finetune.forgetting runs/<run-id>        # measure a finished run

It costs two forward passes over `MAX_TOKENS` tokens: a few seconds on a gpt2-size model.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from core.errors import UserError
from core.model import load_causal_lm, load_classifier, load_tokenizer
from core.runs import Run

TEXT = Path(__file__).with_name("general_english.txt")
MAX_TOKENS = 1024   # tokens of the text that are read: enough for a stable number, cheap on CPU
WINDOW = 256        # tokens per sequence (the text is cut into windows read as one batch)


def read_tokens(tokenizer, text: str | None = None, max_tokens: int = MAX_TOKENS) -> list[int]:
    text = TEXT.read_text() if text is None else text
    return tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]


@torch.inference_mode()
def perplexity(lm, ids: list[int], window: int = WINDOW) -> float:
    """exp(mean next-token cross-entropy) of `lm` over `ids`, read in windows of `window` tokens."""
    limit = getattr(lm.config, "max_position_embeddings", None) or getattr(lm.config, "n_positions", window)
    window = min(window, limit, len(ids))
    if window < 2:
        raise ValueError("the text is too short to measure a perplexity")
    n = len(ids) // window * window  # whole windows only: one batch, no padding
    batch = torch.tensor(ids[:n]).view(-1, window)
    return math.exp(lm.eval()(input_ids=batch, labels=batch).loss.item())


def backbone_lm(base_model: str, classifier, lm=None):
    """The base causal LM (`lm`, else loaded) with the classifier's backbone weights and the base
    model's own LM head."""
    if hasattr(classifier, "merge_and_unload"):  # a peft model: fold the adapters in first
        classifier = classifier.merge_and_unload()
    lm = lm if lm is not None else load_causal_lm(base_model)
    head = lm.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone())  # untie: keep the base head as it is
    lm.base_model.load_state_dict(classifier.base_model.state_dict())
    return lm


def measure(base_model: str, classifier, tokenizer, text: str | None = None, max_tokens: int = MAX_TOKENS) -> dict:
    """metrics.json["forgetting"]: the perplexities, their change and a one-line summary."""
    ids = read_tokens(tokenizer, text, max_tokens)
    lm = load_causal_lm(base_model)
    base = perplexity(lm, ids)
    tuned = perplexity(backbone_lm(base_model, classifier, lm), ids)
    change = tuned / base - 1
    amount = "little" if change < 0.1 else "some" if change < 1 else "much"
    return {"base_perplexity": round(base, 3), "tuned_perplexity": round(tuned, 3), "change": round(change, 4),
            "tokens": len(ids), "text": TEXT.name if text is None else "custom",
            "summary": f"{amount} forgetting: general-English perplexity {base:.1f} (base) → {tuned:.1f} "
                       f"(fine-tuned backbone, base LM head), {change:+.1%}"}


def card_section(forgetting: dict) -> str:
    return (f"## Forgetting\n\nLanguage-model perplexity on {forgetting['tokens']} tokens of a general-English "
            f"text (not tweets), read by the base model and by the fine-tuned backbone with the base model's "
            f"LM head: {forgetting['base_perplexity']:.1f} → {forgetting['tuned_perplexity']:.1f} "
            f"({forgetting['change']:+.1%}). A large rise means the backbone gave up general language "
            f"ability for the task (catastrophic forgetting); LoRA usually keeps more of it.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.forgetting", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder (or any fine-tuned classifier folder)")
    parser.add_argument("--base-model", help="the base model it was tuned from (default: from the run's config)")
    args = parser.parse_args(argv)
    try:
        base = args.base_model or Run(Path(args.run)).config.get("base_model")
        if not base:
            raise UserError(f"{args.run} has no train_config.json: pass --base-model")
        tokenizer = load_tokenizer(args.run)
        result = measure(base, load_classifier(args.run, tokenizer), tokenizer)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
