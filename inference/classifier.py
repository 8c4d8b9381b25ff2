"""Classifying tweets: a fine-tuned run (local folder or Hub repo), or the base model by few-shot prompting.

    clf = Classifier.load("runs/20261126-101500-ab12")      # or a Hub repo id
    clf.classify(["I love this!", "meh"])                    # → [Prediction(label, scores), ...]

Batches are padded per batch (tweets sorted by length), run without autograd, and are safe to call
from several threads: calls that arrive while the model is busy share its next call (`Coalescer`).
Empty text is an `InputError`; text past the max length is truncated.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import model_info

import core.model
from core.errors import UserError
from core.fewshot import FewShotClassifier
from core.labels import LABELS
from core.model import (CHARS_PER_TOKEN_CAP, MAX_LENGTH, can_pack, check_source, keep_freed_memory,
                        load_classifier, load_tokenizer, predict_proba, release_freed_memory, set_threads,
                        shared_start_logits, torch_dtype, trained_max_length)
from core.runs import Run

from . import policy
from .coalesce import Coalescer
from .prepack import prepack
from .quantize import quantize_int8

log = logging.getLogger(__name__)

# tweets per forward pass in a batch call: gpt2-random in bf16 on AMX, 1,000 tweets sorted by tokens, the
# first call / a second one, two processes each: 32: 243-254 / 311-321 tweets/s, 64: 275-281 / 350-361,
# 96: 285-294 / 353-372, 128: 289-300 / 357-366; more than 64 buys 2-5% for more memory
# (RESULTS.md "Batches sorted by tokens")
BATCH_SIZE = 64


class InputError(UserError, ValueError):
    """A text that cannot be classified (e.g. empty); the message says what to do."""


@dataclass
class Prediction:
    label: str
    scores: dict            # label → probability, summing to 1

    @property
    def confidence(self) -> float:
        return self.scores[self.label]

    def to_dict(self) -> dict:
        return asdict(self)


def check_text(text) -> str:
    if not isinstance(text, str):
        raise InputError(f"expected text, got {type(text).__name__}")
    if not text.strip():
        raise InputError("the text is empty: type a tweet to classify")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. half an emoji: the tokenizer cannot take it
        raise InputError("the text holds characters that are not valid Unicode (half an emoji?): "
                         "retype or paste it again") from None
    return text


class SentimentModel:
    """What the app and the command line serve: a name, and texts → label probabilities."""

    name: str = ""
    kind: str = ""          # "fine-tuned" | "few-shot"

    def __init__(self):
        self._lock = threading.Lock()  # fast tokenizers are not thread-safe; 2 cores gain nothing from overlap
        self._batched = Coalescer(self.predict_proba, self._lock)  # requests that wait share a model call
        self.ready = threading.Event()  # set once every format it serves in is prepared
        self.ready.set()

    def serving(self) -> dict:
        """What answers one tweet and batches (for /health and the Classify tab)."""
        return {"one tweet": self.kind, "batches": self.kind}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def classify(self, texts: list[str] | str) -> list[Prediction]:
        single = isinstance(texts, str)
        texts = [check_text(t) for t in ([texts] if single else texts)]
        if not texts:
            return []
        probs = self._batched(texts)
        return [Prediction(LABELS[int(p.argmax())], {l: float(p[i]) for i, l in enumerate(LABELS)})
                for p in probs]

    def classify_variants(self, text: str, variants: list[str]) -> np.ndarray:
        """Probabilities of `text` (row 0) and of each variant of it (rows 1…), e.g. the text with one
        word left out: variants share their start with `text`, which a model may compute only once."""
        texts = [check_text(t) for t in [text, *variants]]
        with self._lock:
            return self.predict_proba_variants(texts[0], texts[1:])

    def predict_proba_variants(self, text: str, variants: list[str]) -> np.ndarray:
        return self.predict_proba([text, *variants])


class Classifier(SentimentModel):
    """A fine-tuned sequence classifier: a run folder or a Hub repo (safetensors only)."""

    kind = "fine-tuned"
    pack_variants = True    # False: classify_variants pads one row per variant (the slower reference)

    def __init__(self, model, tokenizer, name: str, source: str, max_length: int = MAX_LENGTH,
                 batch_size: int = BATCH_SIZE, precision: str = "fp32", threads: int = 1):
        super().__init__()
        self.model, self.tokenizer = model.eval(), tokenizer
        self.name, self.source = name, source
        self.max_length, self.batch_size = max_length, batch_size
        self.precision, self.threads = precision, threads  # one of policy.PRECISIONS
        self.route: policy.Route | None = None  # auto, once measured: what serves one tweet and batches

    @classmethod
    def load(cls, source: str | Path, precision: str = "auto", revision: str | None = None,
             threads: int = 0) -> "Classifier":
        """precision: auto (`inference.policy`: eager fp32 at once, then for one tweet and for batches the
        format that measures fastest here while keeping fp32's labels), fp32 / bf16 (eager torch; bf16's
        weights packed for oneDNN by `inference.prepack`), int8 (torch dynamic quantisation), onnx-fp32 /
        onnx-int8 / onnx-int8-block (ONNX Runtime, exported once and cached beside the weights;
        `inference.onnx_backend`). A named lossy format serves unchecked."""
        source, (name, revision) = str(source), _name(source, revision)
        if precision not in policy.PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(policy.PRECISIONS)}")
        threads = set_threads(threads)
        keep_freed_memory()
        tokenizer = load_tokenizer(source, revision=revision)

        def load_torch(dtype=torch.float32, serving=False):
            return load_classifier(source, tokenizer, revision=revision, dtype=dtype, serving=serving)

        model, served = _load_model(load_torch, source, "fp32" if precision == "auto" else precision, revision, threads)
        release_freed_memory()  # what loading converted and dropped (the kept heap is for batches)
        clf = cls(model, tokenizer, name, source, trained_max_length(tokenizer),
                  precision="auto" if precision == "auto" else served, threads=threads)
        if precision == "auto":  # the other formats timed in the background, fp32 answering meanwhile
            clf.ready.clear()
            policy.prepare_soon(clf, clf._candidates(load_torch, revision))
        return clf

    def _candidates(self, load_torch, revision: str | None) -> dict:
        """What `auto` times against eager fp32: name → a function that builds the format (→ its
        probabilities), for the formats this machine can run."""
        def proba(model):
            return lambda texts: predict_proba(model, self.tokenizer, texts, self.max_length, self.batch_size)

        def onnx(fmt):
            from .onnx_backend import onnx_model
            return lambda: proba(onnx_model(self.source, fmt, revision, self.threads))

        def bf16():
            model = load_torch(torch.bfloat16, serving=True)
            prepack(model)
            return proba(model)
        # bf16 is built (a second copy of the weights) only where a bf16 matrix product measures faster than
        # fp32's here: where it does not (most CPUs without AMX), bf16 cannot serve anything faster
        builders = {"bf16": bf16} if core.model.cpu_bf16_speedup() > 1.0 else {}
        if importlib.util.find_spec("onnxruntime") is not None:
            builders["onnx-int8"] = onnx("onnx-int8")
        return {name: builders[name] for name in policy.CANDIDATES if name in builders}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        route = self.route
        if route is not None:
            return (route.single if len(texts) == 1 else route.batch)(texts)
        return self.exact_proba(texts)

    def exact_proba(self, texts: list[str]) -> np.ndarray:
        """In the format the classifier was loaded in (fp32 under auto: the one that checks the others)."""
        return predict_proba(self.model, self.tokenizer, texts, self.max_length, self.batch_size)

    def serving(self) -> dict:
        """What serves one tweet and batches, and why (for /health and the Classify tab)."""
        if self.route is not None:
            return self.route.describe()
        how = self.precision if self.precision != "auto" else "fp32 (the other formats are being measured)"
        return {"one tweet": how, "batches": how}

    def predict_proba_variants(self, text: str, variants: list[str]) -> np.ndarray:
        """The text and its variants packed into causal forwards that compute their shared start once
        (`core.model.shared_start_logits`): the same probabilities as `predict_proba`, but a tweet
        with one word left out costs only the tokens after that word, about half the work for occlusion."""
        head = getattr(self.model, "score", None)  # decoder classifiers (gpt2, llama, …) read the last token
        if not (self.pack_variants and head is not None and can_pack(self.model)):
            return super().predict_proba_variants(text, variants)
        cap = self.max_length * CHARS_PER_TOKEN_CAP
        ids = self.tokenizer([t[:cap] for t in [text, *variants]], truncation=True,
                             max_length=self.max_length)["input_ids"]
        if not all(ids):
            return super().predict_proba_variants(text, variants)
        logits = shared_start_logits(self.model, head, ids[0], ids[1:])
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()


class FewShot(SentimentModel):
    """The base model by few-shot prompting: the classifier before any fine-tuned run exists."""

    kind = "few-shot"

    def __init__(self, base_model: str, examples: list[tuple[str, int]], calibration_texts: list[str] | None = None,
                 reason: str = "", name: str = ""):
        super().__init__()
        self.clf = FewShotClassifier.load(base_model, examples, calibration_texts)
        self.name = f"{name or base_model} (base model, {len(examples)}-shot)"
        self.source = base_model
        self.reason = reason  # why this model serves, when it is not the one configured (the bundled one)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.clf.predict_proba(texts)


def _name(source: str, revision: str | None) -> tuple[str, str | None]:
    """(the name that says what serves, the revision to load): a complete run's id, a folder's name, or a Hub
    repo at the commit it is at now (pinned, so that the name says exactly what serves)."""
    path = Path(source).expanduser()
    if (path / "status.json").exists():  # a run folder: only a complete one may serve
        run = Run(path)
        if not run.is_complete:
            if run.state == "done":
                check_source(source)  # says what is wrong with its checkpoint (e.g. pickle weights only)
            raise UserError(f"run {run.id} is not complete (state: {run.state}): pick a finished run")
        return run.id, revision
    if path.exists():
        return path.name, revision
    revision = revision or _hub_revision(source)
    return f"{source}@{(revision or 'main')[:8]}", revision


def _load_model(load_torch, source: str, precision: str, revision: str | None, threads: int):
    """(the model that serves in `precision`, that precision): eager fp32 when an ONNX format cannot be had."""
    if precision.startswith("onnx-"):  # the torch model is loaded only to export it
        return _onnx_or_eager(load_torch, source, precision, revision, threads)
    model = load_torch(torch_dtype(precision), serving=True)
    if precision == "int8":
        quantize_int8(model)
    elif precision == "bf16":
        prepack(model)
    return model, precision


def _onnx_or_eager(load_torch, source: str, precision: str, revision: str | None, threads: int):
    """(the ONNX Runtime stand-in for the model, precision), or (the eager model, "fp32") with a logged
    reason when it cannot be exported or run. Weights that cannot load at all stay a UserError."""
    from .onnx_backend import onnx_model

    try:
        return onnx_model(source, precision, revision, threads), precision
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the exporter or the runtime: serve eager
        reason = (str(exc).splitlines() or [""])[0][:200]
        log.warning("cannot serve %s through ONNX Runtime (%s: %s); serving it in eager fp32",
                    source, type(exc).__name__, reason)
        return load_torch(serving=True), "fp32"


def _hub_revision(repo_id: str) -> str | None:
    """The commit a Hub repo is at now; None when the Hub cannot be asked (loading then reports why)."""
    try:
        return model_info(repo_id, timeout=10).sha
    except Exception:
        return None
