import json
from finetune.hub import push_run, scrub
from tests.helpers import FakeHub


def test_push_uploads_the_checkpoint_and_card(trained_run):
    hub = FakeHub()
    result = push_run(trained_run, "me/tweets", private=True, api=hub)
    assert result.state == "pushed" and result.url == "https://huggingface.co/me/tweets"
    assert hub.calls[0] == ("create_repo", "me/tweets", {"private": True, "exist_ok": True, "repo_type": "model"})
    upload = hub.calls[1][1]
    assert upload["folder_path"] == str(trained_run) and "*.safetensors" in upload["allow_patterns"]
    assert json.loads((trained_run / "push.json").read_text())["state"] == "pushed"


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


def test_scrub():
    assert scrub("bad token hf_abcdefghijklmnop!", None) == "bad token hf_***!"
