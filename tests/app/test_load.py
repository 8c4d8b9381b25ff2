"""Load: many concurrent gradio_client clients classify through /classify, idle and while a training job
runs; every request is answered. Past the queue limit a request is turned away at once with "busy,
try again" (Gradio's "Queue is full! Please try again."), and the server keeps serving. Counts are
small so that the test takes seconds; `python -m scripts.load_test` runs the same with bigger ones."""
from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

import app as app_module
from finetune.config import TrainConfig
from scripts.load_test import RestClient, client, quick_training, run_load, start_training, stop_and_wait
from tests.helpers import serve


@pytest.fixture
def defaults(tiny_model, tiny_dataset, runs_dir, trained_run):
    runs_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    return TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir),
                       train_size=120, test_size=30, epochs=1, batch_size=8, learning_rate=5e-3, few_shot_k=0,
                       max_length=32)


def test_concurrent_clients_are_all_answered_idle_and_while_training(defaults, trained_run):
    with serve(defaults) as (_, backend, url):
        idle = run_load(url, clients=6, requests=12, timeout=60, deadline=120)
        print("idle:", idle)
        assert idle["answered"] == 12 and idle["failed"] == 0, idle["errors"]
        for via in ("json-api", "rest"):  # the JSON API, and /classify through Gradio's REST call API
            other = run_load(url, clients=6, requests=12, timeout=60, deadline=120, via=via)
            assert other["answered"] == 12 and other["failed"] == 0, (via, other["errors"])
        with pytest.raises(RuntimeError, match="the text is empty"):  # the app's own message comes through
            RestClient(url, timeout=30).classify("")

        before = start_training(url, quick_training(epochs=100, train_size=200, early_stopping_patience=0), wait_steps=1)
        busy = run_load(url, clients=6, requests=12, timeout=60, deadline=120)
        after = client(url).predict(api_name="/status")
        print("while training:", busy, "steps", before["step"], "→", after.get("step"))
        assert busy["answered"] == 12 and busy["failed"] == 0, busy["errors"]
        assert after["state"] == "running" and after["step"] > before["step"]  # training went on too
        assert backend.server.model.name == trained_run.name  # the previous run served throughout
        print(f"stopped in {stop_and_wait(url, timeout=60)} s")
        assert not backend.job.busy


def test_beyond_the_queue_limit_a_request_is_told_busy_retry_and_the_server_stays_up(defaults, monkeypatch):
    monkeypatch.setattr(app_module, "QUEUE_MAX_SIZE", 2)
    monkeypatch.setattr(app_module, "CONCURRENCY", 1)
    monkeypatch.setattr(app_module, "CLASSIFY_CONCURRENCY", 1)
    with serve(defaults) as (_, backend, url):
        holding, release = threading.Event(), threading.Event()
        real = backend.classify

        def slow(text):  # every request holds the one worker until released: the queue fills up
            holding.set()
            release.wait(timeout=60)
            return real(text)
        backend.classify = slow

        rush = client(url)
        jobs = [rush.submit("so happy today", api_name="/classify")]
        # the rest come once the first holds the worker (sent together, two could both sit in the queue)
        assert holding.wait(timeout=30), "the first request never reached the worker"
        jobs += [rush.submit("so happy today", api_name="/classify") for _ in range(5)]
        # one request runs (and is held), two wait in the queue: the other three are refused at once
        deadline = time.monotonic() + 30
        while sum(job.done() for job in jobs) < 3:
            assert time.monotonic() < deadline, "requests beyond the queue limit were not refused"
            time.sleep(0.05)
        time.sleep(0.5)  # nothing else can finish while the worker is held
        refused, waiting = [j for j in jobs if j.done()], [j for j in jobs if not j.done()]
        assert len(refused) == 3 and len(waiting) == 3
        for job in refused:
            assert isinstance(job.exception(), QueueError) and "Queue is full! Please try again." in str(job.exception())
        release.set()
        for job in waiting:  # every request that was let in is answered
            assert job.result(timeout=60)["label"]
        backend.classify = real
        # a retry after the rush is answered, and the server is healthy
        assert client(url).predict("so happy today", api_name="/classify")["label"]
        assert httpx.get(url + "health").json()["status"] == "ok"


def test_an_error_in_one_request_does_not_disturb_concurrent_ones(defaults):
    with serve(defaults) as (_, backend, url):
        good_client, bad_client = client(url), client(url)
        good = [good_client.submit("great day", api_name="/classify") for _ in range(4)]
        bad = [bad_client.submit("", api_name="/classify") for _ in range(4)]
        for job in good:
            assert job.result(timeout=60)["label"]
        for job in bad:
            with pytest.raises(AppError, match="empty"):
                job.result(timeout=60)


def test_gradio_clients_share_one_verifying_tls_context(monkeypatch):
    """gradio_client opens an httpx client per request; given one context, none builds its own from the
    CA bundle again (what used up the load test's CPU), and certificates are still checked."""
    import ssl

    import gradio_client

    from scripts import load_test

    made = []
    monkeypatch.setattr(gradio_client, "Client", lambda url, **kwargs: made.append(kwargs) or kwargs)
    client("http://127.0.0.1:1"), client("http://127.0.0.1:2")
    context = load_test.tls_context()
    assert [kwargs["ssl_verify"] for kwargs in made] == [context, context]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert httpx.Client(verify=context)._transport._pool._ssl_context is context  # httpx uses it as it is
