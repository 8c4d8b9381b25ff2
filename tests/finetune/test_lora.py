"""LoRA runs: adapters and head trained, merged into a plain checkpoint that inference loads unchanged."""
import json

import pytest
import torch
from safetensors.torch import load_file

from finetune import data, train
from finetune.__main__ import parse_args
from finetune.config import ConfigError, TrainConfig
from core.errors import UserError
from core.model import load_causal_lm, load_tokenizer
from inference.classifier import Classifier


@pytest.fixture(scope="module")
def lora_run(tiny_model, tiny_dataset, tmp_path_factory):
    cfg = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), train_size=120, test_size=30,
                      epochs=2, batch_size=8, learning_rate=1e-2, few_shot_k=0, max_length=32, lora=True,
                      lora_r=4, runs_dir=str(tmp_path_factory.mktemp("lora-runs")))
    result = train.fine_tune(cfg)
    assert result.state == "done"
    return result


def test_lora_run_is_a_plain_checkpoint_that_inference_loads(lora_run):
    files = {p.name for p in lora_run.run_dir.iterdir()}
    assert "model.safetensors" in files and not files & {"adapter_config.json", "adapter_model.safetensors"}
    clf = Classifier.load(lora_run.run_dir, precision="fp32")  # eager: the torch model itself
    assert type(clf.model).__name__ == "GPT2ForSequenceClassification"
    # serving reproduces the run's own test accuracy: the merged weights are the ones that were tested
    test = lora_run.metrics["test"]
    splits, _ = data.prepare(TrainConfig.from_dict(json.loads((lora_run.run_dir / "train_config.json").read_text())))
    predictions = [p.label for p in clf.classify(splits["test"]["text"])]
    labels = ["negative", "neutral", "positive"]
    accuracy = sum(p == labels[l] for p, l in zip(predictions, splits["test"]["label"])) / len(predictions)
    assert accuracy == pytest.approx(test["accuracy"])


def test_only_adapted_layers_and_head_changed(lora_run, tiny_model):
    saved = load_file(lora_run.run_dir / "model.safetensors")
    base = load_causal_lm(str(tiny_model)).state_dict()
    changed = {k for k, v in saved.items() if k in base and not torch.equal(v, base[k])}
    assert changed and all("attn.c_attn.weight" in k for k in changed)  # peft's default target for GPT-2
    cfg = TrainConfig.from_dict(json.loads((lora_run.run_dir / "train_config.json").read_text()))
    initial = train.model_to_train(TrainConfig.from_dict({**cfg.to_dict(), "lora": False}), load_tokenizer(cfg.base_model))
    assert not torch.equal(saved["score.weight"], initial.score.weight)  # the head was trained (modules_to_save)
    assert lora_run.metrics["forgetting"]["tuned_perplexity"] > 0


def test_lora_options_come_from_the_config(tiny_config):
    cfg, _ = parse_args(["--lora", "--lora-r", "4", "--lora-alpha", "8", "--lora-target-modules", "c_attn,c_proj"])
    assert (cfg.lora, cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules) == (True, 4, 8, "c_attn,c_proj")
    with pytest.raises(ConfigError, match="lora_r"):
        tiny_config(lora=True, lora_r=0).validate()
    with pytest.raises(ConfigError, match="lora_dropout"):
        tiny_config(lora_dropout=1.5).validate()


def test_lora_with_unknown_target_modules_is_a_user_error(tiny_config):
    cfg = tiny_config(lora=True, lora_target_modules="no_such_layer")
    with pytest.raises(UserError, match="lora-target-modules"):
        train.model_to_train(cfg, load_tokenizer(cfg.base_model))
