"""app.py through its named API with gradio_client, the app launched in-process (uvicorn in a thread)
with the tiny model and data: classify before any run, train, refuse a second train, poll to done,
classify with the new run, stop, restart on the same runs folder, bad inputs, the admin rule."""
from __future__ import annotations

import csv
import shutil
import time
from types import SimpleNamespace

import httpx
import pytest
from gradio_client import handle_file

from core.errors import UserError
from core.labels import LABELS
from core.runs import Run
from finetune.config import TrainConfig
from web import views
from web.backend import check_tweet
from web.batch import read_tweets
from web.limits import MAX_BATCH_ROWS
from tests.helpers import serve, tiny_defaults, wait_for_end


@pytest.fixture
def defaults(tiny_model, tiny_dataset, runs_dir):
    return tiny_defaults(tiny_model, tiny_dataset, runs_dir)


@pytest.fixture(scope="module")
def shared_app(tiny_model, tiny_dataset, tmp_path_factory):
    """One app for the tests that do not need a fresh one (no test here leaves a complete run)."""
    with serve(tiny_defaults(tiny_model, tiny_dataset, tmp_path_factory.mktemp("shared-app") / "runs")) as app:
        yield app


def assert_prediction(result: dict) -> None:
    assert result["label"] in LABELS
    assert set(result["probabilities"]) == set(LABELS)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_train_through_the_api_then_classify_with_the_new_run_and_after_a_restart(defaults, runs_dir):
    with serve(defaults) as (client, backend, url):
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert {"/classify", "/train", "/status", "/stop", "/push"} <= set(endpoints)
        train_params = {p["parameter_name"] for p in endpoints["/train"]["parameters"]}
        assert {"base_model", "dataset", "train_size", "test_size", "epochs", "learning_rate"} <= train_params
        assert "runs_dir" not in train_params

        before = client.predict(text="so happy today, love it", api_name="/classify")
        assert_prediction(before)
        assert "base model" in before["model"]  # few-shot before any run

        started = client.predict(train_size=60, test_size=30, epochs=1, api_name="/train")
        assert started["accepted"], started
        second = client.predict(epochs=2, api_name="/train")
        assert not second["accepted"] and "already running" in second["message"]

        status = wait_for_end(client)
        assert status["state"] == "done", status
        assert status["step"] == status["total_steps"] > 0
        assert {"accuracy", "f1_macro", "confusion_matrix"} <= set(status["metrics"]["test"])
        test, baseline = status["metrics"]["test"], status["metrics"]["baseline"]
        # the base model was scored the app's way (defaults: 2-shot) on the same 30 test tweets as the run
        assert baseline["method"] == "2-shot prompting" and baseline["n"] == test["n"] == 30
        assert ({k: c["support"] for k, c in baseline["per_class"].items()}
                == {k: c["support"] for k, c in test["per_class"].items()})
        assert sum(map(sum, baseline["confusion_matrix"])) == 30

        after = client.predict(text="so happy today, love it", api_name="/classify")
        assert_prediction(after)
        assert after["model"] == status["run_id"]
        health = httpx.get(url + "health").json()
        assert health["model_loaded"] and health["model"] == status["run_id"] and not health["job_running"]
        assert health["model_precision"] == "auto"  # fp32 at once, the faster formats measured meanwhile
        backend.server.model.ready.wait(120)
        health = httpx.get(url + "health").json()
        assert health["model_prepared"] and set(health["model_serving"]) == {"one tweet", "batches", "source"}

    with serve(defaults) as (client, backend, url):  # a restart: the same run serves
        assert client.predict(text="meeting at the office", api_name="/classify")["model"] == status["run_id"]
        again = client.predict(api_name="/status")
        assert again["state"] == "idle" and again["last_run"]["run_id"] == status["run_id"]


def test_stop_a_running_job_through_the_api(shared_app):
    client, backend, url = shared_app
    assert client.predict(epochs=50, train_size=120, api_name="/train")["accepted"]
    deadline = time.monotonic() + 60
    while (client.predict(api_name="/status").get("step") or 0) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.predict(api_name="/stop")["accepted"]
    status = wait_for_end(client)
    assert status["state"] == "stopped" and status["step"] < status["total_steps"]
    assert "base model" in client.predict(text="ok then", api_name="/classify")["model"]  # still the old one


BAD_TEXTS = [("", "empty"), ("   \n\t", "empty"), ("x" * 1_000_000, "limit is 2,000"), (None, "expected"),
             (42, "expected"), (["a", "b"], "expected"), ({"text": "hi"}, "expected")]
BAD_SETTINGS = [({"epochs": -1}, "epochs must be > 0"), ({"epochs": "many"}, "not a valid float"),
                ({"train_size": -5}, "size"), ({"learning_rate": 5}, "learning_rate"),
                ({"batch_size": -1}, "batch_size"), ({"max_length": 2}, "max_length"),
                ({"base_model": "/no/such/model"}, "not accepted from the web"),
                ({"dataset": "/no/such/data"}, "not accepted from the web"),
                ({"precision": "fp8"}, "precision"),
                ({"epochs": [1, 2]}, "epochs"), ({"group_by_length": "maybe"}, "true/false"),
                ({"base_model": "bad\x00name"}, "valid Hub id"), ({"dataset": "a b c"}, "valid Hub id")]


def test_bad_inputs_get_messages_and_the_server_stays_up(shared_app):
    client, backend, url = shared_app
    for text, words in BAD_TEXTS:
        with pytest.raises(Exception, match=words):
            client.predict(text=text, api_name="/classify")
    for settings, words in BAD_SETTINGS:
        result = client.predict(**settings, api_name="/train")
        assert not result["accepted"] and words in result["message"], (settings, result)
    for owners in ({"hub_model_id": "someone/else"}, {"hub_private": True}, {"runs_dir": "/tmp"}):
        with pytest.raises(TypeError, match="not a valid key-word argument"):  # not /train's parameters at all
            client.predict(**owners, api_name="/train")
    assert client.predict(api_name="/stop") == {"accepted": False, "message": "no training is running"}
    assert not client.predict(api_name="/push")["accepted"]

    markup = client.predict(text="<script>alert('x')</script> **bold** <b>hi</b>", api_name="/classify")
    assert_prediction(markup)  # classified as the text it is
    assert httpx.get(url + "health").json()["status"] == "ok"
    assert client.predict(api_name="/status")["state"] != "running"


def test_classify_a_file_of_tweets(shared_app, tmp_path):
    upload = tmp_path / "tweets.csv"
    upload.write_text('id,text\n1,I love this\n2,""\n3,"<b>markup</b>, commas"\n4,worst day ever\n')
    too_many = tmp_path / "many.txt"
    too_many.write_text("a tweet\n" * (MAX_BATCH_ROWS + 1))
    client, backend, url = shared_app
    path, note = client.predict(handle_file(str(upload)), api_name="/classify_file")
    rows = list(csv.DictReader(open(path)))
    assert [r["text"] for r in rows] == ["I love this", "", "<b>markup</b>, commas", "worst day ever"]
    assert rows[1]["error"] == "empty" and rows[1]["label"] == ""
    for row in rows[:1] + rows[2:]:
        assert row["label"] in LABELS
        assert sum(float(row[label]) for label in LABELS) == pytest.approx(1.0, abs=1e-5)
    assert "skipped 1" in note

    path, note = client.predict(handle_file(str(too_many)), api_name="/classify_file")
    assert path is None and "limit is 1,000" in note


def test_without_any_model_classify_says_what_to_set(defaults, runs_dir):
    nothing = TrainConfig(**{**defaults.to_dict(), "base_model": str(runs_dir / "no-model")})
    with serve(nothing) as (client, backend, url):
        with pytest.raises(Exception, match="BASE_MODEL"):
            client.predict(text="hello", api_name="/classify")
        health = httpx.get(url + "health").json()
        assert health["status"] == "ok" and not health["model_loaded"] and "no model" in health["model_error"]


def test_admin_users_guard_settings_stop_and_push(defaults):
    with serve(defaults, admin_users=["alice"]) as (client, backend, url):
        result = client.predict(epochs=2, api_name="/train")  # a setting of one's own: for admins
        assert not result["accepted"] and "sign in" in result["message"] and "epochs" in result["message"]
        assert "sign in" in client.predict(api_name="/stop")["message"]
        assert "sign in" in client.predict(api_name="/push")["message"]
        assert not backend.job.busy
    roles = backend.roles
    assert roles.refusal("serve", roles.caller(SimpleNamespace(username="alice"))) == ""
    assert "only alice" in roles.refusal("serve", roles.caller(SimpleNamespace(username="mallory")))


def test_views_of_a_finished_run(trained_run, runs_dir):
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    run = Run(runs_dir / trained_run.name)
    loss, scores = views.curves(run.history())
    assert len(loss) and set(scores["series"]) == {"accuracy", "macro-F1"}
    table = views.runs_table(runs_dir)
    assert table.loc[0, "run"] == run.id and "latest" in table.loc[0, ""]
    assert table.loc[0, "accuracy"] == round(run.metrics["test"]["accuracy"], 3)
    assert list(views.confusion(run.metrics).columns) == ["true \\ predicted", *LABELS]
    assert len(views.before_after(run.metrics)) == 2
    assert not views.model_card(run).startswith("---")
    assert "validation @ step" in views.event_log(run.history())


def test_tweet_checks():
    assert check_tweet("fine") == "fine"
    for text, words in [("\ud83d half an emoji", "not valid Unicode"), ("y" * 2_001, "limit is 2,000"),
                        (" ", "empty"), (b"bytes", "expected text")]:
        with pytest.raises(UserError, match=words):
            check_tweet(text)


def test_user_text_is_shown_as_text_never_as_markup():
    shown = views.as_text("<img src=x onerror=alert(1)> **bold** [link](http://x)")
    assert "<img" not in shown and "&lt;img" in shown
    assert "**" not in shown.replace("\\*", "") and "\\[link\\]" in shown
    assert views.as_text("y" * 500).endswith("…")


def test_csv_columns_are_found_by_name_or_refused(tmp_path):
    def read(name, content):
        path = tmp_path / name
        path.write_text(content)
        return read_tweets(path)

    assert read("a.csv", "ID,Tweet\n1,hello there\n2,bye now\n") == ["hello there", "bye now"]
    assert read("b.csv", "good morning all\nawful traffic\n") == ["good morning all", "awful traffic"]  # no header
    assert read("c.csv", "text\ngood morning all\n") == ["good morning all"]
    with pytest.raises(UserError, match="no text column .*id, stars"):
        read("d.csv", "id,stars\n1,5\n")
