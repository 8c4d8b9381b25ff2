"""The fast paths give the same answers as the plain ones: int8 / bf16 classification against fp32,
length-grouped batches against random ones, frozen embeddings, the precision and thread choices, and
the benchmark's own measurements (what they count, not how fast anything is)."""
import numpy as np
import pytest
import torch
from transformers import DataCollatorWithPadding, Trainer

from core.errors import UserError
from finetune import data, train
from finetune.config import ConfigError
import core.model
from core.model import cpu_has_amx, granted_cores, load_classifier, load_tokenizer, resolve_precision

MEASURED_BF16_SPEEDUP = core.model.cpu_bf16_speedup  # bound at collection, before conftest patches it
from inference import ModelServer
from inference.classifier import Classifier

TWEETS = ["i love this so much", "awful terrible day", "going to work on the bus", "love", "meeting",
          "the worst monday at the office, so sad and angry", "great fun with my best friends today",
          "lunch at home", "i hate the bus", "thanks so much, wonderful"] * 3


@pytest.fixture(scope="module")
def fp32(trained_run):
    return Classifier.load(trained_run, precision="fp32")


def test_bf16_models_get_the_erf_gelu_that_the_tanh_form_approximates(tiny_model, tiny_config):
    tok = load_tokenizer(str(tiny_model))
    batch = tok(TWEETS[:5], padding=True, return_tensors="pt")
    fp32 = load_classifier(str(tiny_model), tok).eval()
    autocast = load_classifier(str(tiny_model), tok, bf16=True).eval()
    weights = load_classifier(str(tiny_model), tok, dtype=torch.bfloat16).eval()
    autocast.load_state_dict(fp32.state_dict())  # each load draws its own new head
    assert fp32.config.activation_function == "gelu_pytorch_tanh"  # fp32: the same function, one kernel
    assert autocast.config.activation_function == weights.config.activation_function == "gelu"
    with torch.inference_mode():
        reference = fp32(**batch).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tanh_bf16, erf_bf16 = fp32(**batch).logits.float(), autocast(**batch).logits.float()
    rounding = (tanh_bf16 - reference).abs().max()  # what bf16 itself changes
    assert (erf_bf16 - reference).abs().max() <= rounding + 1e-4
    assert train.model_to_train(tiny_config(precision="bf16"), tok).config.activation_function == "gelu"
    assert train.model_to_train(tiny_config(precision="fp32"), tok).config.activation_function == "gelu_pytorch_tanh"


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_fast_precisions_agree_with_fp32(trained_run, fp32, precision):
    fast = Classifier.load(trained_run, precision=precision)
    assert fast.precision == precision
    if precision == "int8":  # the body's linear layers are quantised, the head is not
        kinds = {type(m).__module__ for m in fast.model.base_model.modules() if "Linear" in type(m).__name__}
        assert kinds and all("quantized" in k for k in kinds)
        assert type(fast.model.score) is torch.nn.Linear
    want, got = fp32.predict_proba(TWEETS), fast.predict_proba(TWEETS)
    assert (want.argmax(1) == got.argmax(1)).mean() >= 0.9
    assert np.abs(want - got).max() < 0.1
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)


def test_training_builds_eager_attention_and_serving_sdpa(trained_run, tiny_model, tiny_config, monkeypatch):
    """On the CPU: eager attention to train (SDPA's backward is slow on tweets), SDPA to serve (no
    backward; one tweet about 10% sooner); on a GPU both SDPA."""
    tok = load_tokenizer(str(tiny_model))
    assert train.model_to_train(tiny_config(), tok).config._attn_implementation == "eager"
    served = Classifier.load(trained_run, precision="bf16")
    assert served.model.config._attn_implementation == "sdpa"
    assert (served.predict_proba(TWEETS).argmax(1) == Classifier.load(trained_run, precision="fp32")
            .predict_proba(TWEETS).argmax(1)).mean() >= 0.9
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert core.model.attention_kernel() is None and core.model.attention_kernel(serving=True) is None


def test_serving_precision_is_auto_unless_asked(trained_run, runs_dir, monkeypatch):
    import shutil

    from core.settings import Settings
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    assert ModelServer(runs_dir).precision == "auto"  # tests/inference/test_policy.py: what auto serves
    monkeypatch.setenv("SERVING_PRECISION", "int8")   # read at the entry point (Settings), passed down
    assert ModelServer(runs_dir).precision == "auto"
    assert ModelServer(runs_dir, precision=Settings.from_env().serving_precision).get().precision == "int8"


def test_amx_detection_reads_cpu_flags(monkeypatch):
    monkeypatch.setattr("core.model.Path.read_text", lambda self, *a, **k: "flags\t: avx512f avx512_bf16")
    assert cpu_has_amx() is False  # AVX-512-BF16 alone is not AMX (whether bf16 pays is measured)
    monkeypatch.setattr("core.model.Path.read_text", lambda self, *a, **k: "flags\t: amx_bf16 amx_tile")
    assert cpu_has_amx() is True

    def unreadable(self, *a, **k):
        raise OSError("no /proc here")
    monkeypatch.setattr("core.model.Path.read_text", unreadable)
    assert cpu_has_amx() is False


def test_bf16_speedup_is_measured_once_per_process(monkeypatch):
    calls = []

    def gflops(dtype, device="cpu", n=4096, seconds=2.0):
        calls.append(dtype)
        return {torch.bfloat16: 683.0, torch.float32: 164.0}[dtype]
    monkeypatch.setattr("core.model.matmul_gflops", gflops)
    MEASURED_BF16_SPEEDUP.cache_clear()
    try:
        assert MEASURED_BF16_SPEEDUP() == pytest.approx(683 / 164) and MEASURED_BF16_SPEEDUP() > 4
        assert calls == [torch.bfloat16, torch.float32]  # the second answer came from the cache
    finally:
        MEASURED_BF16_SPEEDUP.cache_clear()
    monkeypatch.undo()
    assert core.model.matmul_gflops(torch.float32, n=64, seconds=0.01) > 0  # the real probe measures


def test_precision_on_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr("core.model.cpu_bf16_speedup", lambda: 6.8)
    # measured on an H200: fp32 beats bf16 autocast on tweet-sized batches, so auto picks fp32 on CUDA
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16" and resolve_precision("fp16") == "fp16"


def test_granted_cores_fall_back_to_affinity(monkeypatch):
    monkeypatch.setitem(core.model.GRANTED, "cpu_cores", "not a number")
    assert granted_cores() == len(__import__("os").sched_getaffinity(0))
    monkeypatch.setitem(core.model.GRANTED, "cpu_cores", "2.0")
    assert granted_cores() == 2


def _trainer(tiny_config, **overrides):
    cfg = tiny_config(**overrides)
    tok = load_tokenizer(cfg.base_model)
    splits, _ = data.prepare(cfg)
    tokenized = data.tokenize(splits, tok, cfg.max_length)["train"]
    args = train.training_arguments(cfg, cfg.runs_dir, len(tokenized), has_validation=False)
    trainer = Trainer(model=load_classifier(cfg.base_model, tok), args=args, train_dataset=tokenized,
                      processing_class=tok, data_collator=DataCollatorWithPadding(tok))
    return trainer, tokenized


def _padding_share(trainer, tokenized) -> float:
    masks = [batch["attention_mask"] for batch in trainer.get_train_dataloader()]
    return 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def test_length_grouping_sees_every_tweet_once_per_epoch_with_less_padding(tiny_config):
    trainer, tokenized = _trainer(tiny_config, group_by_length=True, batch_size=8)
    sampler = trainer._get_train_sampler()
    assert type(sampler).__name__ == "LengthGroupedSampler"
    epochs = [list(sampler) for _ in range(2)]
    for order in epochs:
        assert sorted(order) == list(range(len(tokenized)))  # a permutation: each tweet exactly once
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    lengths = tokenized["length"]

    def spread(order):  # mean (longest - shortest) tweet in a batch, in tokens
        return np.mean([max(lengths[i] for i in order[s:s + 8]) - min(lengths[i] for i in order[s:s + 8])
                        for s in range(0, len(order), 8)])
    shuffled = torch.randperm(len(tokenized), generator=torch.Generator().manual_seed(0)).tolist()
    assert spread(epochs[0]) < spread(shuffled) / 2  # similar lengths share a batch ...
    # ... so that per-batch padding leaves less of each batch padding than random batches do
    random_trainer, _ = _trainer(tiny_config, group_by_length=False, batch_size=8)
    assert _padding_share(trainer, tokenized) < _padding_share(random_trainer, tokenized)


def test_embeddings_stay_fixed_by_default(tiny_config, tiny_model):
    from safetensors.torch import load_file
    from finetune.config import TrainConfig

    assert TrainConfig.freeze_embeddings  # the product's default (tiny_config trains them: conftest)
    result = train.fine_tune(tiny_config(few_shot_k=0, freeze_embeddings=TrainConfig.freeze_embeddings))
    assert result.state == "done"
    tok = load_tokenizer(str(tiny_model))
    base = load_classifier(str(tiny_model), tok)
    trained = load_file(result.run_dir / "model.safetensors")
    wte = next(k for k in trained if k.endswith("wte.weight"))
    torch.testing.assert_close(trained[wte], base.transformer.wte.weight.detach(), atol=0, rtol=0)
    block = next(k for k in trained if k.endswith("h.0.mlp.c_fc.weight"))
    assert not torch.equal(trained[block], base.transformer.h[0].mlp.c_fc.weight.detach())  # the rest trained


def test_dropout_knob_sets_every_dropout_while_training(tiny_config, tiny_model):
    tok = load_tokenizer(str(tiny_model))
    batch = tok(["so happy today", "this is awful"], return_tensors="pt", padding=True)

    def two_passes(rate):
        model = train.model_to_train(tiny_config(dropout=rate), tok).train()
        return model, model(**batch).logits, model(**batch).logits

    model, first, second = two_passes(0.0)  # the default: a training step is deterministic
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert model.config.resid_pdrop == 0.1  # the saved config keeps the base model's rate
    model, first, second = two_passes(0.1)  # gpt2's own rate: masks differ from pass to pass
    assert not torch.equal(first, second)


@pytest.mark.parametrize("bf16_speedup, precision", [(0.8, "fp32"), (6.8, "bf16")])
def test_bench_training_counts_tweets_tokens_and_memory(tiny_model, tiny_dataset, monkeypatch, bf16_speedup,
                                                        precision):
    from bench.training import flops_per_token, measure

    monkeypatch.setattr("core.model.cpu_bf16_speedup", lambda: bf16_speedup)  # auto's answer on either CPU

    ours = measure("ours", str(tiny_model), str(tiny_dataset), "cpu", steps=2, warmup=1,
                   overrides={"batch_size": 8, "max_length": 32})
    recipe = measure("recipe", str(tiny_model), str(tiny_dataset), "cpu", steps=1, warmup=1)
    assert ours["tweets"] == 16 and recipe["tweets"] == 1 and ours["precision"] == precision
    assert 0 <= ours["padding_share"] < recipe["padding_share"] < 1  # the recipe pads to the model's limit
    assert ours["tweets_per_s"] > 0 and ours["peak_rss_mb"] > 100 and ours["optimizer"] == "adamw_torch_fused"
    assert ours["warmup_steps"] == 1 and ours["warmup_s"] > 0 and len(ours["step_seconds"]) == 3  # warm-up + 2
    model = load_classifier(str(tiny_model), load_tokenizer(str(tiny_model)))
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    assert flops_per_token(model) == 6 * (sum(p.numel() for p in model.parameters()) - embeddings)


def test_bench_serving_and_table(tiny_model, tiny_dataset):
    from bench.__main__ import table
    from bench.serving import measure

    ours = measure("ours", str(tiny_model), str(tiny_dataset), "cpu", "int8", latency_tweets=3, batch_tweets=20,
                   agreement_tweets=20, agreement_model=None)
    pipe = measure("pipeline", str(tiny_model), str(tiny_dataset), "cpu", "fp32", latency_tweets=3, batch_tweets=10,
                   agreement_tweets=0, agreement_model=None)
    assert ours["precision"] == "int8" and ours["batch_tweets"] == 20 and ours["agreement_tweets"] == 20
    assert 0.9 <= ours["agreement"] <= 1 and "agreement" not in pipe
    train_row = {"tweets_per_s": 2.0, "gflops": 1.0, "peak_rss_mb": 500.0, "precision": "fp32", "warmup_s": 3.0,
                 "warmup_steps": 3, "step_s": 0.5, "timed_steps": 8}
    report = {"training": {"ours": train_row, "plain": {**train_row, "tweets_per_s": 1.0},
                           "recipe": {**train_row, "tweets_per_s": 0.01}},
              "serving": {"ours": ours, "pipeline": pipe}, "peak_gflops": {"fp32": 100.0, "bf16": 50.0},
              "levers": {"batch 32": {**train_row, "tweets_per_s": 3.0}, "x": {"error": "unknown setting"}},
              "machine": {"cpu": "test cpu", "cores_granted": 2, "amx": False, "torch": torch.__version__,
                          "bf16_speedup": 4.2},
              "model": "tiny", "quick": True, "seconds": 1.0, "train_peak_fraction": 0.01,
              "train_bf16_peak_fraction": 0.02, "infer_latency_ratio": 0.5, "infer_batch_speedup": 2.0}
    text = table(report)
    assert "200.00x" in text and "2.00x" in text and "1.50x" in text and "n/a" in text
    assert "train warm-up: first 3 steps" in text and "3.0s (2.0x a timed step)" in text
    assert "(2 cores, AMX no, bf16 4.2x fp32)" in text.splitlines()[0]


def test_bench_fewshot_times_packed_and_padded_prompts_alike(tiny_model, tiny_dataset, monkeypatch):
    from types import SimpleNamespace

    import bench.fewshot
    from core.fewshot import FewShotClassifier

    # a clock that only the classifier moves: a padded pass of the 12 tweets "takes" 0.3 s, a packed one
    # 0.1 s, so that the figures must come out exactly (timings of ms on the tiny model would say nothing)
    now, predict = [0.0], FewShotClassifier.predict_proba

    def timed_predict(self, texts, batch_size=16, pack=True, **kwargs):
        now[0] += (0.1 if pack else 0.3) * len(texts) / 12
        return predict(self, texts, batch_size, pack, **kwargs)

    monkeypatch.setattr(FewShotClassifier, "predict_proba", timed_predict)
    monkeypatch.setattr(bench.fewshot, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    out = bench.fewshot.measure(str(tiny_model), str(tiny_dataset), k=3, n=12)
    assert out["k"] == 3 and out["tweets"] == 12
    assert out["padded_s"] == pytest.approx(0.3) and out["packed_s"] == pytest.approx(0.1)  # warm-up not timed
    assert out["speedup"] == 3.0  # padded over packed: above 1 when packing pays
    assert out["same_label"] == 1.0 and out["max_abs_diff"] < 1e-4  # the same maths, faster


def test_frozen_lowest_blocks_stay_unchanged(tiny_config, tiny_model):
    """freeze_layers=1: the embeddings and block 0 keep the base weights; block 1 and the head train."""
    from safetensors.torch import load_file

    result = train.fine_tune(tiny_config(freeze_layers=1, few_shot_k=0, measure_forgetting=False))
    assert result.state == "done"
    base = load_classifier(str(tiny_model), load_tokenizer(str(tiny_model))).state_dict()
    trained = load_file(result.run_dir / "model.safetensors")
    unchanged = {name: torch.equal(trained[name], base[name]) for name in
                 ("transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.mlp.c_fc.weight",
                  "transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_fc.weight", "score.weight")}
    assert unchanged == {"transformer.wte.weight": True, "transformer.wpe.weight": True,
                         "transformer.h.0.mlp.c_fc.weight": True, "transformer.h.0.attn.c_attn.weight": True,
                         "transformer.h.1.mlp.c_fc.weight": False, "score.weight": False}


def test_freeze_layers_is_checked(tiny_config):
    with pytest.raises(UserError, match="below the model's 2 blocks"):
        train.model_to_train(tiny_config(freeze_layers=2), load_tokenizer(tiny_config().base_model))
    with pytest.raises(ConfigError, match="LoRA already keeps"):
        tiny_config(freeze_layers=1, lora=True).validate()


def test_bench_serving_measures_both_paths_of_auto(tiny_model, tiny_dataset):
    """Under auto a tweet alone and a tweet in a batch may take different formats: the agreement is the
    worse of the two paths, and the report names what served each and how often a lossy one was checked."""
    from bench.__main__ import agreement_paths
    from bench.serving import measure

    ours = measure("ours", str(tiny_model), str(tiny_dataset), "cpu", None, latency_tweets=3,
                   batch_tweets=20, agreement_tweets=20, agreement_model=None)
    assert ours["precision"] == "auto" and set(ours["serving"]) >= {"one tweet", "batches"}
    assert ours["agreement"] == min(ours["agreement_batch"], ours["agreement_one_by_one"]) >= 0.9
    assert all(0 <= v <= 1 for k, v in ours.items() if k.startswith("rechecked_share_"))
    assert agreement_paths(ours).startswith(f"in one call {100 * ours['agreement_batch']:.1f}%, one by one")


def test_bench_main_runs_each_case_and_divides_ours_by_the_baselines(monkeypatch, tmp_path):
    """`python -m bench --quick` with its workers stubbed: every case is asked for once, and the figures
    are ours over the baselines of the same run."""
    import json

    import bench.__main__ as bench_main
    import bench.peak

    asked = []
    train_row = {"tweets_per_s": 2.0, "gflops": 25.0, "peak_rss_mb": 500.0, "precision": "bf16", "warmup_s": 3.0,
                 "warmup_steps": 3, "step_s": 0.5, "timed_steps": 8}
    serve_row = {"latency_ms": 10.0, "batch_tweets_per_s": 50.0, "peak_rss_mb": 900.0, "serve_extra_mb": 300.0,
                 "agreement": 1.0, "agreement_tweets": 200, "precision": "bf16", "batch_tweets": 1000}

    def worker(module, args, timeout=0):
        asked.append((module, args[0]))
        assert args[args.index("--model") + 1] == ("a-fine-tuned-run" if module == "serving" else bench_main.default_model())
        if module == "training":
            return {**train_row, "tweets_per_s": {"ours": 2.0, "plain": 0.5, "recipe": 0.01}[args[0]]}
        return {**serve_row, "latency_ms": 10.0 if args[0] == "ours" else 40.0,
                "batch_tweets_per_s": 50.0 if args[0] == "ours" else 5.0}

    monkeypatch.setattr(bench_main, "run_worker", worker)
    monkeypatch.setattr(bench.peak, "peaks", lambda device, quick: {"fp32": 50.0, "bf16": 100.0})
    monkeypatch.setattr(bench_main, "default_serving_model", lambda: "a-fine-tuned-run")  # serving: what users serve
    assert bench_main.main(["--quick", "--json", str(tmp_path / "b.json")]) == 0
    assert asked == [("training", "ours"), ("training", "plain"), ("training", "recipe"),
                     ("serving", "ours"), ("serving", "pipeline")]
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["serving_model"] == "a-fine-tuned-run"
    assert report["machine"]["bf16_speedup"] == 1.0  # conftest's answer: the one precision auto follows
    assert (report["train_speedup_vs_plain"], report["train_speedup_vs_recipe"]) == (4.0, 200.0)
    assert (report["train_peak_fraction"], report["infer_latency_ratio"], report["infer_batch_speedup"]) == \
        (0.25, 0.25, 10.0)
