"""Few-shot prompting of a base language model: a classifier before any fine-tuning.

k labelled training tweets go into a prompt, then the tweet to classify; the prediction is the label
whose word (" negative", " neutral", " positive") the language model finds likeliest as the next token.
k = 0 is zero-shot. Training reports it as every run's "before"; serving answers with it until a
fine-tuned run exists.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from .labels import LABELS
from .model import can_pack, load_causal_lm, load_tokenizer, shared_start_logits

INSTRUCTION = "Classify the sentiment of each tweet as negative, neutral or positive.\n\n"
MAX_TWEET_TOKENS = 96


def pick_examples(rows: list[tuple[str, int]], k: int, seed: int = 42) -> list[tuple[str, int]]:
    """k examples, the labels taken in turn (negative, neutral, positive, ...), short tweets preferred."""
    rng = random.Random(seed)
    by_label = {i: [r for r in rows if r[1] == i and 0 < len(r[0]) <= 140] for i in range(len(LABELS))}
    for pool in by_label.values():
        rng.shuffle(pool)
    picked = []
    for i in range(k):
        pool = by_label[i % len(LABELS)]
        if pool:
            picked.append(pool.pop())
    rng.shuffle(picked)
    return picked


def _line(text: str) -> str:
    return " ".join(text.split())


def build_prefix(examples: list[tuple[str, int]]) -> str:
    return INSTRUCTION + "".join(f"Tweet: {_line(t)}\nSentiment: {LABELS[l]}\n\n" for t, l in examples)


class FewShotClassifier:
    """Scores the three label words after a few-shot prompt; `predict_proba` → (n, 3) probabilities."""

    def __init__(self, model, tokenizer, examples: list[tuple[str, int]]):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.examples = examples
        self.prefix = build_prefix(examples)
        self.label_token_ids = [tokenizer(" " + name, add_special_tokens=False)["input_ids"][0] for name in LABELS]
        if len(set(self.label_token_ids)) != len(LABELS):
            raise ValueError("the tokenizer maps the label words to the same first token")
        self._prefix_ids = tokenizer(self.prefix, add_special_tokens=False)["input_ids"]

    @classmethod
    def load(cls, base_model: str, examples: list[tuple[str, int]], dtype=torch.float32) -> "FewShotClassifier":
        tokenizer = load_tokenizer(base_model)
        return cls(load_causal_lm(base_model, dtype=dtype), tokenizer, examples)

    def _encode(self, text: str) -> list[int]:
        tweet = self.tokenizer(_line(text), add_special_tokens=False)["input_ids"][:MAX_TWEET_TOKENS]
        tail = self.tokenizer("\nSentiment:", add_special_tokens=False)["input_ids"]
        head = self.tokenizer("Tweet: ", add_special_tokens=False)["input_ids"]
        return self._prefix_ids + head + tweet + tail

    @torch.inference_mode()
    def predict_proba(self, texts: list[str], batch_size: int = 16, pack: bool = True) -> np.ndarray:
        """Probabilities of the three labels per text. Every prompt starts with the same examples, so
        by default they are computed once per pack of prompts (`model.shared_start_logits`: the same
        numbers, several times faster); pack=False pads one full prompt per row (the reference)."""
        encoded = [self._encode(t) for t in texts]
        if pack and encoded and can_pack(self.model):
            logits = shared_start_logits(self.model, self.model.get_output_embeddings(), self._prefix_ids, encoded)
            return torch.softmax(logits[1:, self.label_token_ids].float(), dim=-1).cpu().numpy()
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))  # little padding per batch
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        probs = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, :len(encoded[i])] = 1
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            last = mask.sum(dim=1) - 1
            scores = logits[torch.arange(len(idx)), last][:, self.label_token_ids].float()
            probs[idx] = torch.softmax(scores, dim=-1).numpy()
        return probs
