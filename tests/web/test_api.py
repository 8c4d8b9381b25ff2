"""The JSON HTTP API (web/api.py) on the app's own server: POST /api/classify, GET /api/model, docs at
/docs; errors as JSON with their status (422, 413, 503, 429), never a traceback."""
from __future__ import annotations

import asyncio
import json
import shutil
import threading

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.labels import LABELS
from core.runs import Run
from finetune.config import TrainConfig
from inference import NoModel
from inference.classifier import Prediction
from tests.helpers import serve
from web.api import json_api
from web.limits import MAX_BATCH_ROWS


@pytest.fixture(scope="module")
def served(trained_run, tiny_model, tiny_dataset, tmp_path_factory):
    runs = tmp_path_factory.mktemp("api") / "runs"
    shutil.copytree(trained_run, runs / trained_run.name)
    defaults = TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs))
    with serve(defaults) as (client, backend, url):
        yield url, Run(runs / trained_run.name)


def assert_classification(result: dict, model: str) -> None:
    assert result["label"] in LABELS and result["model"] == model
    assert set(result["probabilities"]) == set(LABELS)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)


def test_classify_one_text_and_a_batch_and_say_what_serves(served):
    url, run = served
    one = httpx.post(url + "api/classify", json={"text": "so happy and glad today"})
    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    assert_classification(one.json(), run.id)
    texts = ["so happy and glad today", "awful sad day", "meeting at the office"]
    many = httpx.post(url + "api/classify", json={"texts": texts}).json()
    assert many["model"] == run.id and len(many["results"]) == 3
    for result in many["results"]:
        assert_classification(result, run.id)
    # a batch answers each text as it would alone (padding changes the last float digits only)
    alone = one.json()
    assert many["results"][0]["label"] == alone["label"]
    assert many["results"][0]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)

    info = httpx.get(url + "api/model").json()
    assert info == {"name": run.id, "kind": "fine-tuned", "test_accuracy": run.metrics["test"]["accuracy"],
                    "test_f1_macro": run.metrics["test"]["f1_macro"], "reason": ""}
    schema = httpx.get(url + "openapi.json").json()
    assert {"/api/classify", "/api/model"} <= set(schema["paths"])
    assert {"413", "429", "503", "422"} <= set(schema["paths"]["/api/classify"]["post"]["responses"])
    assert httpx.get(url + "docs").status_code == 200


BAD_BODIES = [  # (raw body, status, words in the JSON detail)
    ("not json", 422, "JSON"), ("{}", 422, 'either "text"'), ('{"text": 5}', 422, "string"),
    ('{"text": "a", "texts": ["b"]}', 422, 'either "text"'), ('{"text": "hi", "extra": 1}', 422, "Extra"),
    ('{"texts": "not a list"}', 422, "list"), ('{"text": "   "}', 422, "empty"), ('{"texts": []}', 422, "1 to"),
    ('{"texts": ["fine", ""]}', 422, "texts[1]: the text is empty"),
    ('{"text": "\\ud800 half an emoji"}', 422, "not valid Unicode"),
    (json.dumps({"text": "x" * 2_001}), 413, "limit is 2,000"),
    (json.dumps({"texts": ["a tweet"] * (MAX_BATCH_ROWS + 1)}), 413, "1 to 1,000 texts, got 1,001"),
]


def test_bad_bodies_get_json_errors_with_their_status(served):
    url, run = served
    for body, status, words in BAD_BODIES:
        answer = httpx.post(url + "api/classify", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == status, (body[:60], answer.text[:300])
        detail = answer.json()["detail"]  # ours: a sentence; pydantic's: a list of problems, each with its msg
        text = detail if isinstance(detail, str) else " ".join(problem["msg"] for problem in detail)
        assert words in text, (body[:60], answer.text[:300])
        assert "Traceback" not in answer.text
    assert httpx.post(url + "api/classify", json={"text": "still up?"}).status_code == 200


def test_without_a_model_the_api_answers_503(tiny_dataset, runs_dir):
    nothing = TrainConfig(base_model=str(runs_dir / "no-model"), dataset=str(tiny_dataset), runs_dir=str(runs_dir))
    with serve(nothing) as (client, backend, url):
        for answer in (httpx.post(url + "api/classify", json={"text": "hello"}), httpx.get(url + "api/model")):
            assert answer.status_code == 503 and "no model to serve" in answer.json()["detail"]
            assert answer.headers["retry-after"]


class HeldBackend:
    """A backend whose classifications wait until released: requests pile up."""

    def __init__(self):
        self.release, self.calls = threading.Event(), 0

    def classify_many(self, texts):
        self.calls += 1
        assert self.release.wait(30)
        return [Prediction("positive", {"negative": 0.1, "neutral": 0.2, "positive": 0.7}) for _ in texts], "held"

    def model_info(self):
        return {"loaded": True, "name": "held", "kind": "fine-tuned", "test_accuracy": None, "test_f1_macro": None}


def test_overload_is_429_and_the_event_loop_stays_free():
    backend = HeldBackend()
    app = FastAPI()
    app.include_router(json_api(backend, max_waiting=2))

    async def rush():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            held = [asyncio.create_task(client.post("/api/classify", json={"text": "hi"})) for _ in range(2)]
            while backend.calls < 2:  # both run in worker threads, holding the two slots
                await asyncio.sleep(0.01)
            turned_away = await client.post("/api/classify", json={"text": "one too many"})
            info = await client.get("/api/model")  # the loop answers while classifications wait
            backend.release.set()
            return turned_away, info, [await task for task in held]

    turned_away, info, held = asyncio.run(rush())
    assert turned_away.status_code == 429 and "retry" in turned_away.json()["detail"]
    assert info.status_code == 200 and info.json()["name"] == "held"
    assert [r.status_code for r in held] == [200, 200] and held[0].json()["label"] == "positive"


def test_no_model_from_the_backend_is_503():
    class Broken(HeldBackend):
        def classify_many(self, texts):
            raise NoModel("no model to serve: set BASE_MODEL")

    app = FastAPI()
    app.include_router(json_api(Broken()))
    with TestClient(app) as client:
        reply = client.post("/api/classify", json={"text": "hello"})
    assert reply.status_code == 503 and reply.json() == {"detail": "no model to serve: set BASE_MODEL"}
