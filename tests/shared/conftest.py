"""The suite on ../shared (the real dataset, the GPT-2 tokenizer, the offline stand-in models): skips when absent."""
import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = SHARED / "data" / "tweet_sentiment_extraction"
MODELS = Path(os.environ.get("OFFLINE_MODELS", Path.home() / ".cache" / "offline-models"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA / "train.jsonl").exists():
        pytest.skip("../shared/data is absent")
    return DATA


def offline_model(name: str) -> Path:
    path = MODELS / name
    if not (path / "config.json").exists():
        pytest.skip(f"{path} is absent: run ../shared/scripts/offline_models.py {name}")
    return path
