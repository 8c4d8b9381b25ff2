"""HF_TOKEN never shows: not in output, logs, exceptions, run folders or model cards, even when the Hub
answers with an error that quotes it."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import huggingface_hub
import pytest

from finetune import __main__ as cli
from finetune import data, hub, train
from core.errors import UserError
from tests.helpers import FakeHub, serve, wait_for_end

TOKEN = "hf_" + "CANARYtoken" + "0123456789abcdefGHIJ"  # fake; built so no scanner takes it for real
SECRET = "CANARYtoken0123456789"  # the part that must not show in any form


def _assert_clean(text: str, where: str) -> None:
    assert SECRET not in text, f"the token leaked into {where}"


def _assert_folder_clean(folder: Path) -> int:
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), f"the token leaked into {path}"
    return len(files)


@pytest.fixture
def leaky_hubs(monkeypatch) -> list[FakeHub]:
    """huggingface_hub.HfApi (what push_run builds from HF_TOKEN) replaced by Hubs that fail the way a
    careless server or proxy might: quoting the token back. Returns the Hubs made, each with its token."""
    made = []

    def leaky_hub(token=None, **kwargs) -> FakeHub:
        made.append(FakeHub(PermissionError(f"401 Unauthorized: token {token} cannot write to this repo\n"
                                            f"headers: Authorization: Bearer {token}"), token=token))
        return made[-1]

    monkeypatch.setattr(huggingface_hub, "HfApi", leaky_hub)
    return made


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return TOKEN


def test_train_and_push_with_a_failing_hub_never_shows_the_token(token, leaky_hubs, tiny_model, tiny_dataset,
                                                                 runs_dir, capsys, caplog):
    argv = ["--base-model", str(tiny_model), "--dataset", str(tiny_dataset), "--train-size", "60",
            "--test-size", "30", "--epochs", "1", "--batch-size", "8", "--max-length", "32",
            "--few-shot-k", "0", "--no-measure-forgetting", "--runs-dir", str(runs_dir), "--evals-per-epoch", "2",
            "--early-stopping-patience", "0",  # a resumable checkpoint before the last step, for the Hub's branch
            "--push-to-hub", "someone/tweet-sentiment"]
    with caplog.at_level(logging.DEBUG):
        code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 3, out.err  # trained, push failed
    # the token was in play: the resumable checkpoints' client during training, then the run's push
    assert [h.token for h in leaky_hubs] == [token, token] and not any(h.uploads for h in leaky_hubs)
    [said] = [line for line in out.out.splitlines() if line.startswith("hub: ")]
    # the why, in one line: the Hub's own first line with the token scrubbed out, not its second line
    assert said.startswith("hub: failed someone/tweet-sentiment the push to someone/tweet-sentiment failed")
    assert "[PermissionError: 401 Unauthorized: token *** cannot write to this repo]" in said
    assert "headers" not in out.out + out.err
    for text, where in ((out.out, "stdout"), (out.err, "stderr"), (caplog.text, "the logs")):
        _assert_clean(text, where)
    run_dir = next(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert (run_dir / "README.md").exists() and (run_dir / hub.PUSH_RESULT).exists()
    assert _assert_folder_clean(runs_dir) > 5

    # the exception's own text, when push_run is called directly (the app's "push again")
    result = hub.push_run(run_dir, "someone/tweet-sentiment", api=huggingface_hub.HfApi(token=token))
    assert result.state == "failed" and "***" in result.message
    _assert_clean(result.message, "the push result")
    _assert_clean((run_dir / hub.PUSH_RESULT).read_text(), "push.json")


def test_a_hub_error_quoting_the_token_while_loading_data_is_scrubbed(token, tiny_config, runs_dir, monkeypatch):
    def leaky_load_dataset(name, *args, **kwargs):
        raise OSError(f"401 Client Error for {name}: invalid token {token}")
    monkeypatch.setattr(data, "load_dataset", leaky_load_dataset)
    with pytest.raises(UserError) as caught:
        train.fine_tune(tiny_config(dataset="someone/private-tweets"))
    _assert_clean(str(caught.value), "the error message")
    assert "cannot load dataset" in str(caught.value)


def test_a_failure_mid_run_quoting_the_token_is_scrubbed_in_the_run_folder(token, tiny_config, runs_dir,
                                                                           monkeypatch):
    def leaky_tokenize(*args, **kwargs):
        raise RuntimeError(f"remote tokenizer refused token {token}")
    monkeypatch.setattr(train.data, "tokenize", leaky_tokenize)
    with pytest.raises(RuntimeError):
        train.fine_tune(tiny_config())
    (failed,) = [p for p in runs_dir.iterdir() if p.name.endswith(".partial")]
    assert "failed" in (failed / "status.json").read_text()
    _assert_folder_clean(runs_dir)


def test_scrub_hides_the_token_and_anything_shaped_like_one(token):
    from core.errors import first_line, scrub

    assert scrub(f"a {token} b") == "a *** b"
    assert scrub("x hf_abcdefghijklmnop y", token=None) == "x hf_*** y"
    assert SECRET not in first_line(ValueError(f"bad {token}\nsecond line"))


def test_the_app_never_shows_the_token(token, leaky_hubs, tiny_model, tiny_dataset, runs_dir, capsys, caplog):
    """Train and push through the app's API with a Hub that quotes the token back; then read every
    answer a browser or a script could get, the server's output and the runs folder."""
    import httpx

    from finetune.config import TrainConfig

    defaults = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir),
                           train_size=60, test_size=30, epochs=1, batch_size=8, max_length=32, few_shot_k=0,
                           measure_forgetting=False, hub_model_id="someone/tweet-sentiment")
    with caplog.at_level(logging.DEBUG), serve(defaults) as (client, backend, url):
        assert client.predict(api_name="/train")["accepted"]
        status = wait_for_end(client)
        deadline = time.monotonic() + 30
        while (status.get("push") or {}).get("state") in (None, "pushing") and time.monotonic() < deadline:
            time.sleep(0.2)
            status = client.predict(api_name="/status")
        assert status["state"] == "done" and status["push"]["state"] == "failed", status
        assert client.predict(api_name="/push")["accepted"]  # "push again": fails the same way
        time.sleep(1)
        answers = [json.dumps(status), json.dumps(client.predict(api_name="/status")),
                   httpx.get(url + "health").text, httpx.get(url).text, httpx.get(url + "config").text,
                   json.dumps(client.predict("hello", api_name="/classify"))]
    assert leaky_hubs and {h.token for h in leaky_hubs} == {token} and not any(h.uploads for h in leaky_hubs)
    out = capsys.readouterr()
    for i, text in enumerate(answers):
        _assert_clean(text, f"answer {i}")
    _assert_clean(out.out + out.err, "the server's output")
    _assert_clean(caplog.text, "the server's logs")
    _assert_folder_clean(runs_dir)
