"""Loading models and tokenizers: from a local folder or the Hub, safetensors only, with the labels
and the pad token that sequence classification needs. Training, the baseline and inference all load
through here, so every model gets the same fixes and the same one-line errors."""
from __future__ import annotations

import functools
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .labels import LABELS
from .errors import UserError, first_line, is_offline_error, looks_like_path, offline_hint

PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def check_source(name: str) -> None:
    """Fail early, in words, on a path that is not a model folder or one that holds pickle weights only."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise UserError(f"{name} is not a model folder (no config.json): pass a folder saved with "
                            f"save_pretrained, a run folder, or a Hub model id")
        files = {p.name for p in path.iterdir()}
        if not any(f.endswith(".safetensors") or f == "model.safetensors.index.json" for f in files):
            if files & set(PICKLE_WEIGHTS):
                raise UserError(f"{name} holds only pickle weights (pytorch_model.bin), which can run code when "
                                f"loaded: convert it to safetensors (model.save_pretrained(dir)) and try again")
            raise UserError(f"{name} has no model weights (*.safetensors)")
    elif looks_like_path(name):
        raise UserError(f"model path {name} does not exist")


# transformers' loading patches process-wide state while it builds a model (the meta device, torch.linspace,
# the init functions), so two loads at once, or a load beside another thread's training, can leave
# parameters on the meta device: every load in this process takes this lock (the app loads in the background)
LOADS = threading.RLock()


@contextmanager
def _loading(what: str, name: str):
    """One load at a time (LOADS); the Hub libraries' many exceptions as one line that says what to do."""
    try:
        with LOADS:
            yield
    except UserError:
        raise
    except Exception as exc:
        if not Path(name).expanduser().exists() and is_offline_error(exc):
            raise UserError(offline_hint(what, name)) from None
        raise UserError(f"cannot load {what} {name!r}: {first_line(exc)}") from None


def load_tokenizer(name: str, revision: str | None = None):
    from transformers import AutoTokenizer

    check_source(name)
    with _loading("tokenizer", name):
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    if tokenizer.pad_token is None:  # GPT-2 has none: pad with EOS, as the recipe does
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


MAX_LENGTH = 128  # tokens per tweet where a checkpoint does not say; longer ones are truncated


def trained_max_length(tokenizer) -> int:
    """The max length the run was trained with (its tokenizer's model_max_length, saved with the weights, so
    a run served from a folder or the Hub truncates tweets where training did; another checkpoint's is its
    model's context); MAX_LENGTH where the tokenizer has none (transformers' "no limit" sentinel)."""
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 100_000 else MAX_LENGTH


# the same function in fewer kernels: gpt2's gelu_new is the tanh form of GELU written op by op (pow, mul,
# add, tanh, each a pass over the activations, forward and backward), which torch has as one kernel
# (RESULTS.md "Training levers, the one-click run and serving on AMX")
FUSED_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}
# where the model computes in bf16: the tanh form of GELU as the exact (erf) GELU it approximates. They
# differ by at most 4.7e-4, under bf16's rounding: 91% of bf16 outputs are the same bits, the rest one
# unit apart. torch's CPU kernel for the tanh form is 4-5x slower (bf16, 32 x 24 x 3072: forward 2.6 ms
# against 0.5, backward 2.7 against 1.1), a fifth of a bf16 gpt2 forward
# (RESULTS.md "Dropout, the embeddings and GELU in bf16")
BF16_ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}


def attention_kernel(serving: bool = False) -> str | None:
    """The attention implementation to build models with: to train on the CPU "eager" (plain matmul +
    softmax), which on tweets (tens of tokens) beats SDPA's flash kernel, whose backward took 17% of a gpt2
    training step; to serve, and on a GPU, None (transformers' default, SDPA): without a backward it
    classifies one tweet in bf16 about 10% sooner than eager (gpt2-random 17.1 → 15.2 ms, a smollm2 run
    31.1 → 28.0; batches within noise; RESULTS.md "Weights packed once")."""
    return None if serving or torch.cuda.is_available() else "eager"


def load_classifier(name: str, tokenizer, revision: str | None = None, dtype=torch.float32, fast_kernels: bool = True,
                    bf16: bool = False, serving: bool = False):
    """A 3-label sequence classifier with labels written into its config and pad_token_id set (the fix
    the recipe lacked: without it a padded batch classifies the wrong token or fails), built with the
    fastest kernels that compute the same function here (`FUSED_ACTIVATIONS`, `attention_kernel` (to train,
    or with `serving` to serve in eager torch), and `BF16_ACTIVATIONS` when it computes in bf16: `bf16`
    (autocast) or bf16 weights; `fast_kernels=False`: transformers' defaults, as the benchmarks' baselines
    use them)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    check_source(name)
    with _loading("model", name):
        config = AutoConfig.from_pretrained(name, revision=revision, num_labels=len(LABELS),
                                            id2label=dict(enumerate(LABELS)),
                                            label2id={l: i for i, l in enumerate(LABELS)})
        faster = {**FUSED_ACTIVATIONS, **(BF16_ACTIVATIONS if bf16 or dtype == torch.bfloat16 else {})}
        activation = getattr(config, "activation_function", None)
        if fast_kernels and activation in faster:
            config.activation_function = faster[activation]
        model = AutoModelForSequenceClassification.from_pretrained(
            name, revision=revision, config=config, use_safetensors=True, dtype=dtype,
            attn_implementation=attention_kernel(serving) if fast_kernels else None)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_causal_lm(name: str, revision: str | None = None, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    check_source(name)
    with _loading("model", name):
        return AutoModelForCausalLM.from_pretrained(name, revision=revision, use_safetensors=True, dtype=dtype)


CHARS_PER_TOKEN_CAP = 16  # text beyond max_length × this many characters is never tokenised


@torch.inference_mode()
def predict_proba(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32, pooled: bool = False):
    """(n, 3) label probabilities of a sequence classifier: tweets tokenized once, truncated to
    `max_length` tokens and sorted by their number of tokens so that similar lengths share a batch, each
    batch padded to its longest. (Sorted by characters, 1,000 test tweets in batches of 64 were padded
    to 26,064 tokens for 18,140 real ones; by tokens to 19,464, and gpt2 in bf16 classifies 29% more
    tweets a second.) With
    `pooled`, → (probabilities, (n, hidden) sentence embeddings: the mean of the last hidden states over
    each tweet's tokens), from the same forward pass."""
    import numpy as np

    cap = max_length * CHARS_PER_TOKEN_CAP
    ids = tokenizer([t[:cap] for t in texts], truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    probs, embeddings = np.zeros((len(texts), len(LABELS)), dtype=np.float32), None
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(model.device)
        out = model(**batch, output_hidden_states=pooled)
        probs[idx] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
        if pooled:
            mask = batch["attention_mask"].unsqueeze(-1).to(out.hidden_states[-1].dtype)
            mean = ((out.hidden_states[-1] * mask).sum(1) / mask.sum(1)).float().cpu().numpy()
            embeddings = np.zeros((len(texts), mean.shape[1]), dtype=np.float32) if embeddings is None else embeddings
            embeddings[idx] = mean
    return (probs, embeddings) if pooled else probs


PACK_TOKENS = 1024  # tokens per packed forward (shared_start_logits); the mask is this squared


def can_pack(model) -> bool:
    """Whether `shared_start_logits` can run this model: a decoder whose body takes position ids and
    whose attention takes a custom 4D mask (others are run row by row)."""
    import inspect

    return (model.config._attn_implementation in ("sdpa", "eager") and not model.config.is_encoder_decoder
            and "position_ids" in inspect.signature(model.base_model.forward).parameters)


@torch.inference_mode()
def shared_start_logits(model, head, base: list[int], rows: list[list[int]]) -> torch.Tensor:
    """`head` on the last hidden state of `base` (row 0) and of each row, rows that share their start
    with `base` (a prompt and its tweets, a tweet and itself less one word): one causal forward per pack
    of about PACK_TOKENS tokens instead of one padded row each. A pack is base's tokens, then each row's
    tokens after the start it shares with base, masked to see only that shared start and themselves,
    at the positions they would have alone: the same numbers as row by row, for a fraction of the work.

    model: a transformers decoder (`model.base_model` is its body); head: its `score` or `lm_head`."""
    segments = [(shared, row[shared:]) for row in rows for shared in [_shared_start(base, row)]]
    if not all(rows) or not base:
        raise ValueError("every row needs at least one token")
    out, pack = [], []
    for segment in segments + [None]:  # None: flush the last pack
        if segment is None or (pack and len(base) + sum(len(t) for _, t in pack) + len(segment[1]) > PACK_TOKENS):
            logits = _forward_pack(model, head, base, pack)
            out.append(logits if not out else logits[1:])  # base's own row: from the first pack
            pack = []
        if segment is not None:
            pack.append(segment)
    return torch.cat(out)


def _forward_pack(model, head, base: list[int], segments: list[tuple[int, list[int]]]) -> torch.Tensor:
    n = len(base) + sum(len(tail) for _, tail in segments)
    ids, positions = list(base), list(range(len(base)))
    see = torch.zeros(n, n, dtype=torch.bool)
    see[:len(base), :len(base)] = torch.ones(len(base), len(base), dtype=torch.bool).tril()
    last = [len(base) - 1]
    for shared, tail in segments:
        at, k = len(ids), len(tail)
        ids += tail
        positions += range(shared, shared + k)
        see[at:at + k, :shared] = True
        see[at:at + k, at:at + k] = torch.ones(k, k, dtype=torch.bool).tril()
        last.append(at + k - 1 if k else shared - 1)  # no tail: the row is base's start
    device, dtype = model.device, model.dtype
    mask = torch.zeros(1, 1, n, n, dtype=dtype).masked_fill(~see, torch.finfo(dtype).min)
    hidden = model.base_model(input_ids=torch.tensor([ids], device=device),
                              position_ids=torch.tensor([positions], device=device),
                              attention_mask=mask.to(device), use_cache=False).last_hidden_state
    return head(hidden[0, last])


def _shared_start(a: list[int], b: list[int]) -> int:
    """How many tokens b shares with a from the start."""
    k = 0
    for x, y in zip(a, b):
        if x != y:
            break
        k += 1
    return k


GRANTED = {"cpu_cores": ""}  # CPU_CORES as an entry point read it (`grant_cores`); the environment is not read here


def grant_cores(cpu_cores: str) -> None:
    """At an entry point: the cores this container is granted (Settings.cpu_cores: CPU_CORES, set on Spaces)."""
    GRANTED["cpu_cores"] = cpu_cores


def granted_cores() -> int:
    """The cores this process may use: those granted at the entry point (`grant_cores`), else the affinity mask."""
    value = GRANTED["cpu_cores"]
    if value:
        try:
            return max(1, int(float(value)))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int = 0) -> int:
    """Use `threads` CPU threads (0 = the granted cores); returns the number set."""
    n = threads or granted_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


MMAP_THRESHOLD = 64 << 20   # bytes: blocks below it come from the heap and are reused
TRIM_THRESHOLD = 1 << 30    # bytes of free heap kept before any is handed back to the kernel


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep the memory that a forward pass frees, for the next one. By default it
    maps each large block afresh and unmaps it when freed, so every batch's activations page-fault in
    again (until its adaptive threshold has grown past them). gpt2-random in bf16 on AMX, a first
    1,000-tweet call: 291–297 tweets/s by default, 321–330 with this (RESULTS.md "Batches sorted by
    tokens"). Process-wide; False where the C library is not glibc (nothing changes there)."""
    libc = _glibc()
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(libc and libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD) and libc.mallopt(m_trim_threshold, TRIM_THRESHOLD))


def release_freed_memory() -> bool:
    """Hand the free heap back to the kernel once (glibc's malloc_trim), e.g. what a model load freed:
    kept memory is for the next batch, not for the weights that loading converted and dropped (170 MB
    for gpt2 in bf16). True when some was released; False elsewhere than glibc."""
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0))


def _glibc():
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision name (fp32, bf16, fp16); fp32 for any other (int8 and the ONNX
    formats load their weights in fp32 first)."""
    return DTYPES.get(precision, torch.float32)


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown CPU"


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX tiles (Intel Sapphire Rapids and later): said beside every figure measured
    here (benchmarks, a run's speed); nothing is chosen by it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


# bf16 trains by default on a CPU whose bf16 matrix products run at least this many times as fast as fp32's
BF16_PAYS = 1.5


def matmul_gflops(dtype: torch.dtype, device: str = "cpu", n: int = 4096, seconds: float = 2.0) -> float:
    """Best GFLOP/s of an n×n @ n×n product over repeats filling about `seconds`."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b  # warm-up: kernels chosen, memory touched
    sync()
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        a @ b
        sync()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 2 * n**3 / best / 1e9


@functools.cache
def cpu_bf16_speedup() -> float:
    """How many times fp32's speed a bf16 matrix product runs at on this CPU, measured once per process
    (about 0.3 s). The CPU's flags do not tell: measured at n=2048 on 2 cores, AMX 6.8x (2,333 against
    345 GFLOP/s), AVX-512-BF16 without AMX on an AMD EPYC 4.2x (683 against 164), CPUs without bf16
    instructions below 1."""
    return matmul_gflops(torch.bfloat16, n=1024, seconds=0.1) / matmul_gflops(torch.float32, n=1024, seconds=0.15)


def resolve_precision(precision: str) -> str:
    """`auto` → the fastest format measured for tweet-sized batches: bf16 autocast on a CPU whose bf16
    matrix products are at least BF16_PAYS times fp32's (`cpu_bf16_speedup`), else fp32. bf16 autocast
    kept fp32's accuracy within a point (RESULTS.md, "Training levers").

    On an H200, bf16 autocast trained gpt2 3.4-9x slower than fp32 on batches of 16-32 tweets (two
    measurements, README "Speed"), so CUDA gets fp32 too; bf16 and fp16 stay explicit choices. An
    explicit choice the hardware lacks (fp16 without CUDA) falls back to fp32."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if not cuda and cpu_bf16_speedup() >= BF16_PAYS else "fp32"
    if precision == "fp16" and not cuda:
        return "fp32"
    return precision
