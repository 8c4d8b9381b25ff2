import json
import re
from pathlib import Path

from huggingface_hub import ModelCard

from core.runs import Run
from finetune.hub import push_run, scrub
from tests.helpers import FakeHub


def test_push_uploads_the_checkpoint_and_card(trained_run):
    hub = FakeHub()
    result = push_run(trained_run, "me/tweets", private=True, api=hub)
    assert result.state == "pushed" and result.url == "https://huggingface.co/me/tweets"
    assert hub.calls[0] == ("create_repo", "me/tweets", {"private": True, "exist_ok": True, "repo_type": "model"})
    upload = hub.calls[1][1]
    assert Path(upload["folder_path"]).name == trained_run.name and "*.safetensors" in upload["allow_patterns"]
    assert {"model.safetensors", "config.json", "README.md", "train_config.json"} <= {k[1] for k in hub.files}
    assert json.loads((trained_run / "push.json").read_text())["state"] == "pushed"
    assert not list(trained_run.parent.glob(".push-*"))  # the staged copy is gone


def test_pushed_reports_name_no_server_path_and_no_example_tweet(trained_run):
    hub = FakeHub()
    push_run(trained_run, "me/tweets", api=hub)
    local = str(trained_run.parent.parent)  # the server's folders
    for name in ("train_config.json", "data_report.json", "metrics.json", "history.jsonl"):
        body = hub.files[("me/tweets", name)].decode()
        assert local not in body and "/tmp/" not in body, name
    report = json.loads(hub.files[("me/tweets", "data_report.json")])
    assert "examples" not in report and report["dataset"] == "tweets"  # the folder's name, not its path
    config = json.loads(hub.files[("me/tweets", "train_config.json")])
    assert config["base_model"] == "tiny-gpt2" and config["epochs"] == Run(trained_run).config["epochs"]
    assert "examples" in Run(trained_run).data_report  # the local run keeps them


def test_failed_push_keeps_the_run_and_hides_the_token(trained_run, monkeypatch):
    token = "hf_" + "FAKEtoken" * 3 + "1234"  # built here, so no scanner mistakes it for a real one
    monkeypatch.setenv("HF_TOKEN", token)
    before = sorted(p.name for p in trained_run.iterdir())
    result = push_run(trained_run, "me/tweets", api=FakeHub(fail=ConnectionError(f"401 for token {token}")))
    assert result.state == "failed" and "ConnectionError" in result.message and token not in result.message
    assert sorted(p.name for p in trained_run.iterdir()) == sorted(set(before) | {"push.json"})
    assert push_run(trained_run, "me/tweets", api=FakeHub()).state == "pushed"   # push again works


def test_push_is_skipped_without_token_or_repo(trained_run, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert push_run(trained_run, "me/tweets").state == "skipped"
    assert "HF_TOKEN" in push_run(trained_run, "me/tweets").message
    assert push_run(trained_run, "").state == "skipped"


def test_scrub(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert scrub("bad token hf_abcdefghijklmnop!", None) == "bad token hf_***!"  # shaped like a Hub token
    assert scrub("short hf_abc stays", None) == "short hf_abc stays"            # too short to be one
    secret = "s3cr3t-not-hub-shaped"                                           # the server's token, any shape
    assert scrub(f"401 for {secret}; again {secret}", secret) == "401 for ***; again ***"
    monkeypatch.setenv("HF_TOKEN", secret)                                     # unnamed: the environment's
    assert secret not in scrub(f"echo {secret}") and scrub("nothing to hide") == "nothing to hide"


def test_the_pushed_card_names_no_local_path_and_has_the_metrics(trained_run, tiny_model, tiny_dataset):
    hub = FakeHub()
    assert push_run(trained_run, "me/tweets", api=hub).state == "pushed"
    card, metrics = hub.files[("me/tweets", "README.md")].decode(), Run(trained_run).metrics
    for path in (tiny_model, tiny_dataset, trained_run):  # local folders of this machine: never in a card
        assert str(path) not in card and str(Path(path).parent) not in card
    assert not re.search(r"(^|[\s`'\"(:])(/[\w.-]+/|~/|\.\./|\./)", card), "a path in the card"
    assert f"`{Path(tiny_model).name}`" in card  # named by its folder name instead
    data = ModelCard(card).data
    assert data.base_model is None and data.datasets is None  # local: not Hub ids
    results = {r.metric_type: r for r in data.eval_results}
    assert results["accuracy"].metric_value == round(metrics["test"]["accuracy"], 4)
    assert results["f1"].metric_value == round(metrics["test"]["f1_macro"], 4)
    assert results["accuracy"].dataset_split == "test" and results["accuracy"].dataset_name == Path(tiny_dataset).name
