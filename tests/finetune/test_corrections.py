"""People's corrections: the append-only store, concurrent writers, torn lines, retrains, the Hub copy."""
from __future__ import annotations

import json
import multiprocessing
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from huggingface_hub import CommitScheduler

from finetune import corrections, data
from core.errors import UserError
from tests.helpers import FakeHub, serve


def _add_many(runs_dir, who: str, n: int) -> None:
    for i in range(n):
        corrections.add(runs_dir, f"{who} tweet {i} " + "x" * (i * 37 % 300), "positive", "negative", run_id=who)


def test_add_and_load_keep_every_field(tmp_path):
    c = corrections.add(tmp_path, "my boss is bullying me", "positive", 0, run_id="20261126-101500-ab12")
    assert (c.model_label, c.corrected_label, c.run_id) == ("positive", "negative", "20261126-101500-ab12")
    assert datetime.fromisoformat(c.time).tzinfo is not None
    assert corrections.load(tmp_path) == [c]
    assert json.loads(corrections.path(tmp_path).read_text())["text"] == "my boss is bullying me"


@pytest.mark.parametrize("kwargs, words", [
    (dict(text="  ", model_label="positive", corrected_label="negative"), "text"),
    (dict(text="hi", model_label="positive", corrected_label="angry"), "negative, neutral, positive"),
    (dict(text="hi", model_label="neutral", corrected_label="NEUTRAL"), "already said neutral"),
])
def test_bad_corrections_are_refused_in_words(tmp_path, kwargs, words):
    with pytest.raises(UserError, match=words):
        corrections.add(tmp_path, **kwargs)
    assert corrections.load(tmp_path) == []


def test_many_threads_writing_at_once_lose_nothing(tmp_path):
    threads = [threading.Thread(target=_add_many, args=(tmp_path, f"t{k}", 40)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = corrections.path(tmp_path).read_text().splitlines()
    assert len(lines) == 320 and all(json.loads(line)["text"] for line in lines)  # no torn or merged lines
    texts = {c.text.split(" x")[0].rstrip() for c in corrections.load(tmp_path)}
    assert texts == {f"t{k} tweet {i}" for k in range(8) for i in range(40)}


def test_many_processes_writing_at_once_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(tmp_path, f"p{k}", 30)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert len(corrections.load(tmp_path)) == 120
    assert len(corrections.path(tmp_path).read_text().splitlines()) == 120


def test_a_torn_last_line_is_skipped_and_the_next_add_stands_alone(tmp_path):
    first = corrections.add(tmp_path, "worst day ever", "positive", "negative")
    with open(corrections.path(tmp_path), "a") as f:
        f.write('{"text": "half a line from a cra')  # a crash mid-write
    assert corrections.load(tmp_path) == [first]
    second = corrections.add(tmp_path, "so happy today", "neutral", "positive")
    assert corrections.load(tmp_path) == [first, second]


def test_training_rows_keep_the_latest_label_of_a_tweet(tmp_path):
    corrections.add(tmp_path, "Meh  day", "positive", "negative")
    corrections.add(tmp_path, "other tweet", "positive", "neutral")
    corrections.add(tmp_path, "meh day", "negative", "neutral")  # corrected again, differently
    assert corrections.training_rows(tmp_path) == [("other tweet", 1), ("meh day", 1)]


def _fake_run(runs_dir: Path, run_id: str, started: datetime, include: bool) -> None:
    path = runs_dir / run_id
    path.mkdir(parents=True)
    (path / "status.json").write_text(json.dumps({"state": "done", "started": started.isoformat()}))
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    (path / "train_config.json").write_text(json.dumps({"include_corrections": include}))


def test_waiting_and_since_last_run_count_from_the_newest_run(tmp_path):
    old = corrections.add(tmp_path, "old one", "positive", "negative")
    _fake_run(tmp_path, "20261126-100000-aaaa", datetime.now(timezone.utc), include=True)
    new = corrections.add(tmp_path, "new one", "positive", "negative")
    assert corrections.waiting(tmp_path) == [new]
    assert corrections.since_last_run(tmp_path) == [new]
    _fake_run(tmp_path, "20261126-110000-bbbb", datetime.now(timezone.utc), include=False)
    assert corrections.waiting(tmp_path) == [new]         # the newest run did not learn from them
    assert corrections.since_last_run(tmp_path) == []
    assert corrections.agreement([old, new], ["negative", "neutral"]) == {"n": 2, "agree": 1, "accuracy": 0.5}


def test_a_retrain_learns_corrections_but_never_validates_or_tests_on_them(tiny_config, runs_dir, tiny_dataset):
    from finetune import train

    test_tweet = json.loads((tiny_dataset / "test.jsonl").read_text().splitlines()[0])["text"]
    new = ["sad sad broken day", "glad thanks for the fun", "meeting at the office monday"]
    for text, right in zip(new, ["negative", "positive", "neutral"]):
        corrections.add(runs_dir, text, "neutral" if right != "neutral" else "positive", right)
    corrections.add(runs_dir, test_tweet, "neutral", "negative")  # a test tweet must stay out of training

    cfg = tiny_config()
    splits, report = data.prepare(cfg, extra_train=corrections.training_rows(runs_dir))
    plain, _ = data.prepare(tiny_config(include_corrections=False))
    assert report.corrections_added == 3
    assert set(new) <= set(splits["train"]["text"])
    for split in ("validation", "test"):
        assert splits[split]["text"] == plain[split]["text"]  # unchanged by the corrections
        assert not set(new) & set(splits[split]["text"])

    result = train.fine_tune(cfg)
    assert result.state == "done"
    assert json.loads((result.run_dir / "data_report.json").read_text())["corrections_added"] == 3
    judged = result.metrics["corrections"]
    assert judged["n"] == 4 and 0 <= judged["agree"] <= 4
    card = (result.run_dir / "README.md").read_text()
    assert "added 3 from people's corrections" in card and "learned from 3 correction(s)" in card
    assert corrections.waiting(runs_dir) == []

    off = train.fine_tune(tiny_config(include_corrections=False))
    assert off.state == "done" and "corrections" not in off.metrics  # none since the previous run
    assert json.loads((off.run_dir / "data_report.json").read_text())["corrections_added"] == 0


def test_push_then_pull_restores_the_corrections_on_a_fresh_machine(tmp_path):
    hub, space, repo = FakeHub(), tmp_path / "space", "me/tweet-corrections"
    made = [corrections.add(space, f"tweet {i}", "positive", "negative") for i in range(3)]
    pushed = corrections.push(space, repo, api=hub)
    assert pushed.state == "pushed" and pushed.repo_id == "me/tweet-corrections"
    assert hub.calls[0] == ("create_repo", "me/tweet-corrections",
                            {"repo_type": "dataset", "private": True, "exist_ok": True})

    restarted = tmp_path / "restarted"  # a Space restart: the runs folder is empty
    assert corrections.pull(restarted, repo, api=hub).state == "pulled"
    assert corrections.load(restarted) == made

    corrections.add(restarted, "made after the pull", "neutral", "positive")
    assert corrections.pull(restarted, repo, api=hub).state == "skipped"  # a local file is never overwritten
    assert len(corrections.load(restarted)) == 4


def test_a_burst_of_corrections_goes_to_the_hub_in_one_push_and_none_is_left_behind(tmp_path):
    hub = FakeHub()
    soon = corrections.PushSoon(tmp_path, delay=0.3, api=hub, repo_id="me/tweet-corrections")
    try:
        for i in range(5):  # five clicks in a row: one scheduler, one upload carrying all five
            corrections.add(tmp_path, f"tweet {i}", "positive", "negative")
            soon()
        assert not any(c[0] == "upload_file" for c in hub.calls)  # nothing yet: waiting for the burst to end
        deadline = time.monotonic() + 10
        while len(soon.results) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert isinstance(soon.scheduler, CommitScheduler)
        assert [c[0] for c in hub.calls].count("upload_file") == 1
        assert hub.files[("me/tweet-corrections", corrections.FILE)].count(b"\n") == 5

        time.sleep(0.7)  # more looks without a change: no more commits
        assert [c[0] for c in hub.calls].count("upload_file") == 1 and len(soon.results) == 1

        corrections.add(tmp_path, "a later one", "neutral", "positive")  # after the push: a push of its own
        soon()
        while len(soon.results) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [c[0] for c in hub.calls].count("upload_file") == 2 and soon.results[-1].state == "pushed"
        assert hub.files[("me/tweet-corrections", corrections.FILE)].count(b"\n") == 6
        assert [c[0] for c in hub.calls].count("create_repo") == 1
    finally:
        soon.stop()


def test_a_failing_hub_is_explained_not_raised(tmp_path):
    soon = corrections.PushSoon(tmp_path, delay=0.3, api=FakeHub(fail="Hub down"), repo_id="me/tweet-corrections")
    corrections.add(tmp_path, "a tweet", "positive", "negative")
    soon()
    deadline = time.monotonic() + 10
    while not soon.results and time.monotonic() < deadline:
        time.sleep(0.05)
    assert soon.results[0].state == "failed" and "ConnectionError" in soon.results[0].message
    assert soon.scheduler is None  # the next correction tries again
    soon.repo_id = ""  # an app without HUB_DATASET_ID
    soon()
    while len(soon.results) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert soon.results[1].state == "skipped" and "HUB_DATASET_ID" in soon.results[1].message


def test_push_and_pull_report_instead_of_raising(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    corrections.add(tmp_path, "a tweet", "positive", "negative")
    assert "HUB_DATASET_ID" in corrections.push(tmp_path).message
    assert "HF_TOKEN" in corrections.push(tmp_path, "me/c").message  # no client, no token: no network call
    assert corrections.pull(tmp_path / "empty", "me/c", api=FakeHub()).state == "skipped"  # nothing there yet

    token = "hf_" + "s3cr3t" * 5
    monkeypatch.setenv("HF_TOKEN", token)
    failed = corrections.push(tmp_path, "me/c", api=FakeHub(fail=f"auth failed for {token}"))
    assert failed.state == "failed" and token not in failed.message and "ConnectionError" in failed.message
    assert corrections.load(tmp_path)[0].text == "a tweet"  # the local file is untouched


def test_the_app_explains_replies_and_stores_corrections(trained_run, tiny_model, tiny_dataset, tmp_path):
    import shutil

    from web import views
    from finetune.config import TrainConfig

    runs = tmp_path / "runs"
    run = shutil.copytree(trained_run, runs / trained_run.name)
    defaults = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs))
    with serve(defaults) as (client, backend, url):
        why = client.predict(text="so happy and glad today", api_name="/explain")
        assert [w["word"] for w in why["words"]] == "so happy and glad today".split()
        assert why["span"] and why["model"] == run.name and why["label"] in ("negative", "neutral", "positive")
        other = next(l for l in ("negative", "neutral", "positive") if l != why["label"])
        saved = client.predict(text="so happy and glad today", model_label=why["label"], corrected_label=other,
                               model=why["model"], api_name="/correct")
        assert saved["saved"] and "1 correction(s) waiting" in saved["message"]
        refused = client.predict(text="meh", model_label="neutral", corrected_label="neutral", api_name="/correct")
        assert not refused["saved"] and "pick the label it should have said" in refused["message"]
    [stored] = corrections.load(runs)
    assert (stored.text, stored.model_label, stored.corrected_label, stored.run_id) == (
        "so happy and glad today", why["label"], other, run.name)
    assert "**1** correction(s) from the chat are waiting" in views.waiting_md(runs)

    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "corrections": {"n": 4, "agree": 3, "accuracy": 0.75}}))
    assert views.runs_table(runs)["agrees with people"].tolist() == ["75% of 4"]
