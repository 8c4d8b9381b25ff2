"""Few-shot prompting of a base language model: a classifier before any fine-tuning.

k labelled training tweets go into a prompt, then the tweet to classify; the prediction is the label
whose word ("negative", "neutral", "positive") the language model finds likeliest as the next token.
k = 0 is zero-shot. An instruct model is prompted in its own chat template (each example a user turn
and the assistant's answer); a base LM without one (gpt2) in plain text ("Tweet: ...\nSentiment: ...").

Raw, a small model says one label to nearly every tweet, so the probabilities are calibrated (batch
calibration): divided by their mean over unlabelled tweets (`calibration_texts`, ~100 training tweets)
and normalised again, so that no label is favoured before the tweet is read. Without such tweets the
mean over content-free inputs ("", "N/A") is used (contextual calibration; weaker).
Training reports it as every run's "before"; serving answers with it until a fine-tuned run exists.
"""
from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import torch

from .labels import LABELS
from .model import can_pack, load_causal_lm, load_tokenizer, shared_start_logits

INSTRUCTION = "Classify the sentiment of each tweet as negative, neutral or positive."
MAX_TWEET_TOKENS = 96
CALIBRATION_TWEETS = 100
CONTENT_FREE = ["", "N/A"]
ANSWER = "Sentiment:"  # how an answer starts, in both prompt forms; the label word follows after a space
_SLOT = "\uffffTWEET\uffff"  # where the tweet goes in a rendered chat prompt


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


def calibration_texts(rows: list[tuple[str, int]], n: int = CALIBRATION_TWEETS, seed: int = 42,
                      exclude: list[tuple[str, int]] = ()) -> list[str]:
    """n training tweets (their labels unused) to calibrate on, seeded, the prompt's examples left out."""
    skip = {t for t, _ in exclude}
    texts = [t for t, _ in rows if t not in skip and t.strip()]
    return random.Random(seed).sample(texts, min(n, len(texts)))


def builtin_calibration() -> list[str]:
    """The unlabelled tweets written for this project (core/calibration_tweets.txt): what serving
    calibrates on when no training tweets are at hand."""
    lines = (Path(__file__).with_name("calibration_tweets.txt")).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def _line(text: str) -> str:
    return " ".join(text.split())


def build_prefix(examples: list[tuple[str, int]]) -> str:
    """The plain-text prompt (for a model without a chat template) up to the tweet to classify."""
    shots = "".join(f"Tweet: {_line(t)}\n{ANSWER} {LABELS[l]}\n\n" for t, l in examples)
    return f"{INSTRUCTION}\n\n{shots}Tweet: "


def build_chat(tokenizer, examples: list[tuple[str, int]]) -> tuple[str, str]:
    """The chat prompt as (text before the tweet, text after it): the instruction as the system turn,
    each example a user turn and the assistant's answer ("Sentiment: positive"), then the tweet and the
    assistant's turn begun with "Sentiment:" (on SmolLM2-135M-Instruct, 600 test tweets, zero-shot,
    calibrated: 0.57 accuracy, against 0.47 when the answer is the bare label word)."""
    messages = [{"role": "system", "content": INSTRUCTION}]
    for text, label in examples:
        messages += [{"role": "user", "content": f"Tweet: {_line(text)}"},
                     {"role": "assistant", "content": f"{ANSWER} {LABELS[label]}"}]
    messages.append({"role": "user", "content": f"Tweet: {_SLOT}"})
    head, tail = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True).split(_SLOT)
    return head, tail + ANSWER


def calibrate(probs: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """Each row divided by the mean label probabilities `mean`, normalised to sum to 1."""
    if mean is None:
        return probs
    scaled = probs / mean
    return scaled / scaled.sum(axis=1, keepdims=True)


def _first_tokens(tokenizer, words: list[str]) -> list[int] | None:
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    return ids if len(set(ids)) == len(words) else None


class FewShotClassifier:
    """Scores the three label words after a few-shot prompt; `predict_proba` → (n, 3) calibrated
    probabilities (`calibrated=False`: the model's own). `calibration_texts`: unlabelled tweets whose
    mean label probabilities divide every answer's; none given: content-free inputs. `chat`: prompt in
    the tokenizer's chat template (default: when it has one)."""

    def __init__(self, model, tokenizer, examples: list[tuple[str, int]],
                 calibration_texts: list[str] | None = None, chat: bool | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.examples = examples
        self.chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat
        self.prefix, tail = build_chat(tokenizer, examples) if self.chat else (build_prefix(examples), "\n" + ANSWER)
        ids = _first_tokens(tokenizer, [" " + w for w in LABELS])
        if ids is None:
            raise ValueError("the tokenizer maps the label words to the same first token")
        self.label_token_ids = ids
        self._prefix_ids = tokenizer(self.prefix, add_special_tokens=False)["input_ids"]
        self._tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
        self._prefix_cache = None  # the examples' keys and values, computed on the first single tweet
        texts = list(calibration_texts or [])
        self.calibration_source = f"{len(texts)} unlabelled tweets" if texts else "content-free inputs"
        self.calibration = self.predict_proba(texts or CONTENT_FREE, calibrated=False).mean(axis=0)

    @classmethod
    def load(cls, base_model: str, examples: list[tuple[str, int]], calibration_texts: list[str] | None = None,
             dtype=torch.float32) -> "FewShotClassifier":
        tokenizer = load_tokenizer(base_model)
        return cls(load_causal_lm(base_model, dtype=dtype), tokenizer, examples, calibration_texts)

    @property
    def method(self) -> str:
        k = len(self.examples)
        return f"{k}-shot prompting" if k else "zero-shot prompting"

    @property
    def details(self) -> str:
        how = "chat template" if self.chat else "plain prompt"
        return f"{how}, calibrated on {self.calibration_source}"

    def _after_cached_prefix(self, encoded: list[int]) -> np.ndarray:
        """One prompt's label probabilities, the examples' keys and values taken from a cache made once
        (a copy each call, so concurrent calls do not share it), and only the label words' rows of the
        head: for the bundled SmolLM2 with 4 examples (a 142-token prefix) one tweet takes 68 ms, against
        171 ms packed with its prefix (RESULTS.md "Weights packed once")."""
        body, head = self.model.base_model, self.model.get_output_embeddings()
        if self._prefix_cache is None:
            self._prefix_cache = body(input_ids=torch.tensor([self._prefix_ids]), use_cache=True).past_key_values
        rest = torch.tensor([encoded[len(self._prefix_ids):]])
        hidden = body(input_ids=rest, past_key_values=copy.deepcopy(self._prefix_cache), use_cache=True).last_hidden_state
        ids = torch.tensor(self.label_token_ids)  # only the label words' rows of the vocabulary's head
        logits = torch.nn.functional.linear(hidden[:, -1], head.weight[ids], None if head.bias is None else head.bias[ids])
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def _encode(self, text: str) -> list[int]:
        tweet = self.tokenizer(_line(text), add_special_tokens=False)["input_ids"][:MAX_TWEET_TOKENS]
        return self._prefix_ids + tweet + self._tail_ids

    def predict_proba(self, texts: list[str], batch_size: int = 16, pack: bool = True,
                      calibrated: bool = True) -> np.ndarray:
        """Probabilities of the three labels per text; `calibrated=False`: as the model gives them."""
        probs = self._label_probs(texts, batch_size, pack)
        return calibrate(probs, self.calibration) if calibrated else probs

    @torch.inference_mode()
    def _label_probs(self, texts: list[str], batch_size: int, pack: bool) -> np.ndarray:
        """Every prompt starts with the same examples, so by default they are computed once per pack of
        prompts (`model.shared_start_logits`: the same numbers, several times faster); pack=False pads
        one full prompt per row (the reference)."""
        encoded = [self._encode(t) for t in texts]
        if pack and len(encoded) == 1:  # what a visitor's message is: only its own tokens computed
            return self._after_cached_prefix(encoded[0])
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
