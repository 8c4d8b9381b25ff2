"""Paths from the web stay inside: through the Train tab and the /train API, `dataset` and `base_model`
are a Hub id, an uploaded file, or a path under the app's data or runs folder; anything else is refused
with one message that does not say whether the path exists. (The command line takes any path:
tests/finetune/test_cli.py trains on the fixtures' temporary folders and reports a missing path as missing.)"""
from __future__ import annotations

import os
import shutil

import pytest

from core.errors import UserError
from finetune.config import TrainConfig
from tests.helpers import serve, tiny_defaults, wait_for_end
from web import handlers
from web.backend import OWNER
from web.paths import WebPaths

OUTSIDE = ["/etc/shadow", "/nope", "/etc", "../../etc/passwd", "~/.bashrc", "/root/.cache/huggingface/token",
           "../shared/data", "./app.py"]


def test_paths_outside_are_refused_with_one_message_existing_or_not(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    (data / "sub").mkdir(parents=True)
    runs.mkdir()
    (data / "sub" / "tweets.csv").write_text("text,label\nhi,1\n")
    (data / "escape.csv").symlink_to("/etc/hostname")  # inside by name, outside once resolved
    paths = WebPaths(data, runs)
    messages = set()
    for value in OUTSIDE + [str(data / "escape.csv"), "escape.csv", str(data / ".." / "runs" / ".." / "x.csv"),
                            str(tmp_path), "bad\x00name.csv"]:
        with pytest.raises(UserError) as refused:
            paths.check("dataset", value)
        messages.add(str(refused.value))
    assert messages == {paths.refusal("dataset")}  # the same words for what exists and what does not
    assert "/etc" not in paths.refusal("dataset")
    inside = str((data / "sub" / "tweets.csv").resolve())
    assert paths.check("dataset", "sub/tweets.csv") == inside  # a name in the data folder
    assert paths.check("dataset", inside) == inside
    assert paths.check("dataset", str(runs)) == str(runs.resolve())
    assert paths.check("dataset", "mteb/tweet_sentiment_extraction") == "mteb/tweet_sentiment_extraction"
    assert paths.check("base_model", "gpt2") == "gpt2"  # Hub ids: the Hub check comes later


def test_the_train_api_and_tab_refuse_outside_paths_and_take_the_data_folder(tiny_model, tiny_dataset, runs_dir,
                                                                               tmp_path):
    defaults = tiny_defaults(tiny_model, tiny_dataset, runs_dir)
    with serve(defaults) as (client, backend, url):
        answers = {}
        for name in ("dataset", "base_model"):
            for value in ("/etc/shadow", "/nope", str(tiny_dataset / "train.jsonl")):
                result = client.predict(**{name: value}, api_name="/train")
                assert not result["accepted"], (name, value, result)
                answers.setdefault(name, set()).add(result["message"])
        assert all(len(messages) == 1 for messages in answers.values()), answers
        assert "exist" not in " ".join(answers["dataset"]) and not backend.job.busy

        # the server's own defaults (paths anywhere, set by whoever runs it) stay usable from the form
        assert backend.web_settings({"dataset": str(tiny_dataset), "base_model": str(tiny_model)}) == {
            "dataset": str(tiny_dataset), "base_model": str(tiny_model)}

        # the Train tab: an uploaded file lands in the data folder and becomes the dataset
        upload = tmp_path / "my tweets.jsonl"
        shutil.copyfile(tiny_dataset / "train.jsonl", upload)
        shown = handlers.upload_dataset(backend, OWNER, str(upload))
        assert shown["dataset"].startswith(str(backend.data_dir)) and os.path.exists(shown["dataset"])
        # a folder in the data folder, named as the API would: accepted, trained on, done
        shutil.copytree(tiny_dataset, backend.data_dir / "tweets")
        started = client.predict(dataset="tweets", train_size=30, test_size=20, few_shot_k=0,
                                 measure_forgetting=False, api_name="/train")
        assert started["accepted"], started
        status = wait_for_end(client)
        assert status["state"] == "done", status
        assert status["data_report"]["dataset"] == str((backend.data_dir / "tweets").resolve())


def test_data_dir_defaults_under_the_runs_folder_and_follows_the_setting(tiny_model, tiny_dataset, runs_dir, tmp_path):
    from core.settings import Settings
    from web.backend import Backend

    defaults = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir))
    assert Backend(defaults, settings=Settings()).data_dir == runs_dir / "_data"
    mine = tmp_path / "mine"
    backend = Backend(defaults, settings=Settings(data_dir=str(mine)))
    (mine).mkdir()
    (mine / "t.csv").write_text("text,label\nhi,1\n")
    assert backend.web_settings({"dataset": "t.csv"}) == {"dataset": str((mine / "t.csv").resolve())}
    with pytest.raises(UserError, match="not accepted from the web"):
        backend.web_settings({"dataset": str(tiny_dataset / "test.jsonl")})
