"""The app as a public Space, attacked through its real endpoints (served in-process: the Gradio API with
gradio_client, page events as a browser sends them, the JSON API with httpx), each attack of issue 25:
a Space without admins fails closed (the demo's Retrain still works, with the owner's settings only),
nobody names the repo a run is pushed to, a visitor's preview never borrows the server's token, a
correction flood is mostly refused and trains nothing until an admin accepts it, a crafted upload
previews and prepares in bounded time and memory, an oversized body is refused before it is read,
/health answers under a burst, and a restart that reuses the pid leaves no run "running" forever. Plus:
every event and endpoint has a role, and the README's roles table is the code's."""
from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.routing import APIRoute
from gradio_client import handle_file

import app as app_module
from conftest import ROOT
from core import runs
from core.settings import Settings
from inference import policy
from finetune import corrections, data, train
from finetune.config import TrainConfig
from web import handlers, roles
from web.limits import CHAT_MAX_TURNS, MAX_BODY_BYTES
from tests.helpers import FakeHub, page_event, serve, serving, tiny_defaults, wait_for_end

SPACE = Settings(space_id="owner/tweet-sentiment")  # SPACE_ID set, ADMIN_USERS empty


def wired(demo, handler: str):
    """The wired function of a page event (what Gradio calls: the role check, then the handler)."""
    return next(fn.fn for fn in demo.fns.values() if getattr(fn.fn, "handler", None) == handler)


# --- one table, every endpoint in it --------------------------------------------------------------------
def test_every_event_and_endpoint_has_a_role_and_the_readme_has_the_table(tiny_model, tiny_dataset, runs_dir):
    fastapi_app, demo, backend = app_module.create_app(tiny_defaults(tiny_model, tiny_dataset, runs_dir))
    for fn in demo.fns.values():
        if fn.fn.__module__.startswith("gradio"):  # gr.Examples' own: it puts an example in the textbox
            assert fn.api_name == "load_example"
            continue
        assert fn.fn.action in roles.ROLES, fn.api_name
        if fn.api_visibility == "public":  # the README's table says where each endpoint is
            assert f"`/{fn.api_name}`" in roles.ROLES[fn.fn.action][2], fn.api_name
    routes = list(api_routes(fastapi_app.routes))
    assert {r.path for r in routes} == {"/health", "/api/classify", "/api/model"}
    for route in routes:
        assert route.path in roles.ROLES[route.endpoint.action][2]
    assert roles.table_md() in (ROOT / "README.md").read_text()
    with pytest.raises(KeyError):  # an event without a role in the table cannot be wired
        app_module.Wiring(backend, {}).on(demo.load, handlers.live, action="everything")


def api_routes(routes):
    """The FastAPI routes, those of included routers too."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's include_router keeps the router whole
            yield from api_routes(route.original_router.routes)
        elif isinstance(route, APIRoute):
            yield route


# --- a Space whose owner named no admin ----------------------------------------------------------------
@pytest.fixture(scope="module")
def space(tiny_model, tiny_dataset, tmp_path_factory):
    defaults = tiny_defaults(tiny_model, tiny_dataset, tmp_path_factory.mktemp("space") / "runs")
    with serve(defaults, settings=SPACE) as app:
        yield app


def test_a_space_without_admins_runs_the_demo_and_refuses_the_rest(space, tiny_model, tiny_dataset):
    client, backend, url = space
    banner = json.dumps(httpx.get(url + "config").json())
    assert "This Space has no admins yet" in banner and "ADMIN_USERS" in banner  # said once, at the top

    started = client.predict(api_name="/train")  # the demo's button: the owner's model and data
    assert started["accepted"], started
    again = client.predict(api_name="/train")
    assert not again["accepted"] and ("already running" in again["message"] or "can start in" in again["message"])
    status = wait_for_end(client)
    assert status["state"] == "done" and status["base_model"] == str(tiny_model), status
    assert status["data_report"]["dataset"] == str(tiny_dataset)
    cooled = client.predict(api_name="/train")  # one visitor start per RETRAIN_COOLDOWN_S
    assert not cooled["accepted"] and "the next one can start in" in cooled["message"]

    changed = client.predict(epochs=2, learning_rate=0.1, api_name="/train")
    assert not changed["accepted"] and "ADMIN_USERS" in changed["message"] and "epochs, learning_rate" in changed["message"]
    with pytest.raises(TypeError, match="hub_model_id"):
        client.predict(hub_model_id="victim/repo", api_name="/train")
    for endpoint in ("/stop", "/push", "/resume"):
        answer = client.predict(api_name=endpoint)
        assert not answer["accepted"] and "this Space has none" in answer["message"] and "ADMIN_USERS" in answer["message"]
    run_id = status["run_id"]
    for handler, inputs in (("serve", [None]), ("serve_newest", []), ("stop", []), ("push", []),
                            ("review_data", [None, None, None, None, None]), ("pending", []),
                            ("resume_picked", [None])):
        note = page_event(url, handler, inputs)[0]  # the refusal, in the event's note
        assert "only admins may" in note and "ADMIN\\_USERS" in note, (handler, note)
    assert runs.read_dict(backend.runs_dir / runs.SERVING_FILE) == {}  # nothing pinned


def test_a_visitor_cannot_upload_training_data_on_a_space(space, tmp_path):
    client, backend, url = space
    upload = tmp_path / "mine.csv"
    upload.write_text("text,label\n" + "".join(f"tweet {i},{i % 3}\n" for i in range(20)))
    dataset, note, *_ = client.predict(handle_file(str(upload)), api_name="/upload_dataset")
    assert "only admins may upload a training file" in note
    assert not (backend.data_dir / "uploads").exists()


# --- nobody names the repo a run goes to -----------------------------------------------------------------
def test_no_request_can_name_the_hub_repo_a_run_is_pushed_to(tiny_model, tiny_dataset, runs_dir):
    hub = FakeHub()
    defaults = tiny_defaults(tiny_model, tiny_dataset, runs_dir, hub_model_id="owner/tweets")
    with serve(defaults, hub_api=hub) as (client, backend, url):  # off a Space: everyone is an admin here
        for owners in ({"hub_model_id": "victim/repo"}, {"hub_private": False}):
            with pytest.raises(TypeError, match="not a valid key-word argument"):
                client.predict(**owners, api_name="/train")
        refused = backend.train({"hub_model_id": "victim/repo"})
        assert not refused["accepted"] and "set by the app's owner" in refused["message"]
        assert client.predict(train_size=30, test_size=20, api_name="/train")["accepted"]
        assert wait_for_end(client)["state"] == "done"
        deadline = time.monotonic() + 30
        while client.predict(api_name="/status").get("push", {}).get("state") in (None, "pushing"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.predict(api_name="/push")["accepted"]
    repos = {call[1]["repo_id"] if call[0] == "upload_folder" else call[1] for call in hub.calls}
    assert repos == {"owner/tweets"}, hub.calls


# --- the server's token answers no visitor --------------------------------------------------------------
class FakeHubDatasets:
    """Stands in for datasets.load_dataset on Hub ids: `owner/private` needs a token, `public/tweets` streams
    5,000 rows (counting the rows read); every call's keyword arguments are kept."""

    def __init__(self):
        self.calls, self.read = [], 0

    def __call__(self, name, **kwargs):
        from datasets.exceptions import DatasetNotFoundError

        self.calls.append((name, kwargs))
        if name != "public/tweets":
            raise DatasetNotFoundError(f"Dataset '{name}' doesn't exist on the Hub or cannot be accessed.")

        def rows(split):
            for i in range(5_000):
                self.read += 1
                yield {"text": f"{split} tweet number {i} is {('sad', 'ok', 'great')[i % 3]}", "label": i % 3}
        return {"train": rows("train"), "test": rows("test")}


def test_a_visitors_preview_never_borrows_the_token(space, monkeypatch):
    client, backend, url = space
    hub = FakeHubDatasets()
    monkeypatch.setattr(data, "load_dataset", hub)
    refusals = {page_event(url, "preview_dataset", [name])[0].replace(name, "X")
                for name in ("owner/private", "nobody/missing")}
    assert len(refusals) == 1 and "only a public Hub dataset" in refusals.pop()  # private = missing = gated
    shown = page_event(url, "preview_dataset", ["public/tweets"])[0]
    assert "10,000 rows" not in shown and "first 2,000 rows" in shown.replace("\\", "")  # its head only
    assert hub.read <= 2_000 + 2 and hub.calls and all(kw == {"streaming": True, "token": False} for _, kw in hub.calls)
    refused = page_event(url, "preview_dataset", [str(backend.data_dir / "uploads" / "x" / "someone.csv")])[0]
    assert "not accepted from the web" in refused


def test_an_admins_preview_uses_the_token(tiny_model, tiny_dataset, runs_dir, monkeypatch):
    hub = FakeHubDatasets()
    monkeypatch.setattr(data, "load_dataset", hub)
    fastapi_app, demo, backend = app_module.create_app(tiny_defaults(tiny_model, tiny_dataset, runs_dir))
    wired(demo, "preview_dataset")(None, None, "owner/private")  # off a Space, with no ADMIN_USERS: an admin
    assert hub.calls == [("owner/private", {})]  # as before: the server's token (HF_TOKEN) if it has one


# --- corrections --------------------------------------------------------------------------------------
def test_a_correction_flood_is_mostly_refused_and_trains_nothing_until_an_admin_accepts(
        tiny_model, tiny_dataset, runs_dir):
    # admins named (off a Space here: a Space's sign-in button needs the Hub's OAuth), so a visitor's waits
    fastapi_app, demo, backend = app_module.create_app(tiny_defaults(tiny_model, tiny_dataset, runs_dir),
                                                       admin_users=["alice"], settings=Settings())
    with serving(fastapi_app) as (client, url):
        texts = [f"poison {i}: awful terrible hate" for i in range(100)]
        answers = [client.predict(text, "negative", "positive", "x", api_name="/correct") for text in texts]
        saved = [a for a in answers if a["saved"]]
        assert len(saved) == 5 and all("once an admin accepts it" in a["message"] for a in saved)
        assert "at most 5 per minute" in answers[-1]["message"] and "try again in" in answers[-1]["message"]
        assert [c.status for c in corrections.load(runs_dir)] == ["pending"] * 5
        for fields, says in (({"text": "x" * 2_001}, "limit is 2,000"), ({"model": "m" * 201}, "at most 200")):
            answer = client.predict(**{"text": "a tweet", "model_label": "negative", "corrected_label": "positive",
                                       **fields}, api_name="/correct")
            assert not answer["saved"] and says in answer["message"], answer

        _, report = train.prepare_data(backend.config({}))
        assert report.corrections_pending == 5 and report.corrections_added == 0  # pending: not trained on

        pending = corrections.pending(runs_dir)
        decide = wired(demo, "decide_corrections")  # the page's Accept button
        note = decide(None, None, [pending[0].id])  # a visitor: refused
        assert "only alice may accept or reject" in json.dumps(list(note.values()))
        decide(None, SimpleNamespace(username="alice"), [c.id for c in pending[:3]])
        splits, report = train.prepare_data(backend.config({}))
        assert (report.corrections_accepted, report.corrections_pending) == (3, 2)
        assert report.corrections_added == 3 and {t for t in texts[:3]} <= set(splits["train"]["text"])
        assert not set(texts[3:]) & set(splits["train"]["text"])


def test_accepted_corrections_are_at_most_a_share_of_the_training_rows(tiny_config, runs_dir):
    for i in range(40):
        corrections.add(runs_dir, f"brand new tweet {i} about lunch", "negative", "positive")
    splits, report = train.prepare_data(tiny_config(train_size=100, corrections_share=0.1))
    assert report.corrections_added == 10 and report.corrections_left_out == 30
    assert "brand new tweet 39 about lunch" in splits["train"]["text"]  # the latest ones
    assert "brand new tweet 0 about lunch" not in splits["train"]["text"]


# --- bounded work ---------------------------------------------------------------------------------------
class PeakRSS:
    """The process's resident memory, sampled every 5 ms inside the block: `growth_mb` over its start."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self.began = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.began
        self._done.set()
        self._thread.join()
        self.growth_mb = (self.peak - self.start) / 2**20

    def _watch(self):
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def crafted_csv(path: Path, rows: int = 30_000) -> Path:
    """About 1 MB of distinct but near-identical short tweets: the upload that once took the app to 22 GB."""
    rng = random.Random(0)
    path.write_text("text,label\n" + "".join(f"so happy today love it {i:05d} {rng.choice('abcdefgh')},{i % 3}\n"
                                             for i in range(rows)))
    return path


def test_a_crafted_upload_previews_and_prepares_in_seconds_with_bounded_memory(tiny_model, tiny_dataset, runs_dir,
                                                                              tmp_path, capsys):
    csv = crafted_csv(tmp_path / "crafted.csv")
    with serve(tiny_defaults(tiny_model, tiny_dataset, runs_dir)) as (client, backend, url):
        backend.model()  # loaded before the measurements
        with PeakRSS() as preview:
            dataset, note, summary, *_ = client.predict(handle_file(str(csv)), api_name="/upload_dataset")
        # its rows nearly copy each other and the held-out ones: the report says so (no usable training rows)
        assert "24000 nearly copying a test tweet" in summary.replace("\\", ""), summary
        with PeakRSS() as prepare:  # the settings check prepares the data before the job starts
            started = client.predict(dataset=dataset, train_size=60, test_size=30, few_shot_k=0,
                                     measure_forgetting=False, api_name="/train")
        assert started["accepted"], started  # the run itself then says that no training rows are left
        assert "no usable training rows" in wait_for_end(client)["message"]
    with capsys.disabled():
        print(f"\ncrafted upload ({csv.stat().st_size / 1e6:.2f} MB, 30,000 rows): preview {preview.seconds:.1f} s, "
              f"+{preview.growth_mb:.0f} MB; data preparation {prepare.seconds:.1f} s, +{prepare.growth_mb:.0f} MB")
    assert preview.growth_mb < 300 and prepare.growth_mb < 300  # the target; it once grew by 21 GB
    assert preview.seconds < 60 and prepare.seconds < 60  # seconds here; generous for a busy machine


@pytest.fixture(scope="module")
def served(trained_run, tiny_model, tiny_dataset, tmp_path_factory):
    import shutil

    runs_dir = tmp_path_factory.mktemp("served") / "runs"
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    with serve(TrainConfig(base_model=str(tiny_model), dataset=str(tiny_dataset), runs_dir=str(runs_dir))) as app:
        assert app[1].model().ready.wait(120)  # its formats measured: the timings below are of serving alone
        policy._finish_preparing()              # and no other test's classifier still measuring in the background
        yield app


def test_an_oversized_body_is_refused_before_it_is_read(served):
    client, backend, url = served
    big = b'{"text": "' + b"x" * MAX_BODY_BYTES + b'"}'
    for path in ("api/classify", "gradio_api/call/classify"):
        answer = httpx.post(url + path, content=big, headers={"content-type": "application/json"}, timeout=30)
        assert answer.status_code == 413 and "over 4 MB" in answer.json()["detail"], (path, answer.text[:200])

    def chunked():  # no Content-Length: counted as it streams in
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
    answer = httpx.post(url + "api/classify", content=chunked(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "over 4 MB" in answer.json()["detail"]
    assert httpx.post(url + "api/classify", json={"text": "still fine"}).status_code == 200


def test_health_answers_within_a_second_while_64_requests_of_1000_texts_wait(served, capsys):
    client, backend, url = served
    texts = [f"tweet {i}: so happy and glad today, love it" for i in range(1_000)]
    with httpx.Client(timeout=300) as http, ThreadPoolExecutor(64) as pool:
        burst = [pool.submit(http.post, url + "api/classify", json={"texts": texts}) for _ in range(64)]
        latencies = []
        while not all(f.done() for f in burst) or len(latencies) < 5:
            began = time.monotonic()
            assert http.get(url + "health").json()["status"] == "ok"
            latencies.append(time.monotonic() - began)
            time.sleep(0.05)
        codes = [f.result().status_code for f in burst]
    with capsys.disabled():
        print(f"\n/health under 64 x 1,000 texts: {len(latencies)} calls, max {max(latencies) * 1000:.0f} ms, "
              f"answers {sorted(set(codes))}")
    assert set(codes) <= {200, 429} and codes.count(200) >= 1
    assert max(latencies) < 1.0


def test_the_chat_history_a_page_sends_back_is_capped(served):
    client, backend, url = served
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(5_000)]
    out = handlers.chat(backend, "so happy today", history)
    assert len(out["chatbot"]) == 2 * CHAT_MAX_TURNS and out["chatbot"][-2]["content"] == "so happy today"


# --- a restart that reuses the pid ----------------------------------------------------------------------
def test_a_restart_with_the_same_pid_leaves_the_run_interrupted_and_resumable(tiny_model, tiny_dataset, runs_dir):
    """In a container the app is PID 1 on every start: a run written by the last start has this process's
    pid, but another start token."""
    run = runs_dir / "20260101-000000-pid1.partial"
    checkpoint = run / runs.CHECKPOINTS / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    runs.write_json(checkpoint / runs.TRAINER_STATE, {"global_step": 4, "max_steps": 8})
    (checkpoint / "optimizer.pt").write_bytes(b"")
    runs.write_json(run / runs.TRAIN_CONFIG, tiny_defaults(tiny_model, tiny_dataset, runs_dir).to_dict())
    runs.write_json(run / "status.json", {"state": "running", "pid": os.getpid(), "process": "another-boot:1234",
                                          "step": 5, "total_steps": 8})
    alive = runs.RunWriter(runs_dir)  # this process, this start: alive
    with serve(tiny_defaults(tiny_model, tiny_dataset, runs_dir)) as (client, backend, url):
        status = client.predict(api_name="/status")
    assert [p["run_id"] for p in status["resumable"]] == ["20260101-000000-pid1"]
    assert status["resumable"][0]["state"] == "interrupted" and status["resumable"][0]["checkpoint_step"] == 4
    assert runs.Run(alive.path).state == "running"
    assert runs.process_token() and runs.process_token() == runs.process_token(os.getpid())


# --- nothing private leaves, disk stays bounded ---------------------------------------------------------
def fake_checkpoint_run(runs_dir: Path) -> tuple[Path, Path]:
    run = runs.RunWriter(runs_dir)
    run.write_json(runs.TRAIN_CONFIG, {"dataset": str(runs_dir / "secret" / "tweets.csv"), "base_model": "gpt2"})
    run.write_json("data_report.json", {"dataset": str(runs_dir), "examples": {"near_duplicates": [["a tweet"]]}})
    (run.checkpoints_dir / "splits").mkdir(parents=True)
    (run.checkpoints_dir / "splits" / "rows.arrow").write_bytes(b"every training row")
    checkpoint = run.checkpoints_dir / "checkpoint-3"
    checkpoint.mkdir()
    runs.write_json(checkpoint / runs.TRAINER_STATE, {"global_step": 3})
    (checkpoint / "optimizer.pt").write_bytes(b"state")
    return run.path, checkpoint


@pytest.mark.parametrize("private", [False, True])
def test_training_rows_go_to_the_resume_branch_of_a_private_repo_only(runs_dir, private):
    from finetune.checkpoints import BRANCH, HubCheckpoints

    hub = FakeHub()
    run, checkpoint = fake_checkpoint_run(runs_dir)
    pusher = HubCheckpoints(run, "owner/tweets", private=private, api=hub)
    pusher.offer(checkpoint)  # the first goes up at once
    deadline = time.monotonic() + 30
    while not pusher.results:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    names = {k[1].split("/", 1)[-1] for k in hub.files if len(k) == 3}
    assert "_checkpoints/checkpoint-3/optimizer.pt" in names
    assert ("_checkpoints/splits/rows.arrow" in names) == private
    pushed = b"".join(v for k, v in hub.files.items() if k[1].endswith(".json"))
    assert str(runs_dir).encode() not in pushed and b"a tweet" not in pushed
    pusher.close(done=True, timeout=30)  # the run finished: its branch goes
    assert ("owner/tweets", BRANCH) not in hub.branches and not [k for k in hub.files if len(k) == 3]


def test_only_the_newest_runs_and_the_one_serving_keep_their_exports_and_checkpoints(runs_dir):
    made = []
    for i in range(8):
        path = runs_dir / (f"2026010{i}-000000-abcd" + ("" if i % 2 else runs.PARTIAL))
        (path / (runs.SERVING_DIR if i % 2 else runs.CHECKPOINTS)).mkdir(parents=True)
        runs.write_json(path / "status.json", {"state": "done" if i % 2 else "stopped"})
        if i % 2:
            (path / "config.json").write_text("{}")
            (path / "model.safetensors").write_bytes(b"")
        made.append(path)
    runs.pin(runs_dir, made[1].name)
    removed = runs.prune(runs_dir, keep=3)
    kept = [p for p in made if (p / runs.SERVING_DIR).exists() or (p / runs.CHECKPOINTS).exists()]
    assert kept == [made[1], *made[5:]]  # the pinned one, and the three newest
    assert len(removed) == 4


def test_an_upload_never_replaces_another(tiny_model, tiny_dataset, runs_dir, tmp_path):
    fastapi_app, demo, backend = app_module.create_app(tiny_defaults(tiny_model, tiny_dataset, runs_dir))
    upload = tmp_path / "tweets.csv"
    upload.write_text("text,label\n" + "".join(f"tweet {i},{i % 3}\n" for i in range(20)))
    first = handlers.upload_dataset(backend, backend.roles.caller(), str(upload))["dataset"]
    upload.write_text("text,label\n" + "".join(f"other {i},{i % 3}\n" for i in range(20)))
    second = handlers.upload_dataset(backend, backend.roles.caller(), str(upload))["dataset"]
    assert first != second and Path(first).name == Path(second).name == "tweets.csv"
    assert "tweet 0" in Path(first).read_text() and "other 0" in Path(second).read_text()
    assert re.fullmatch(r"[0-9a-f]{16}", Path(first).parent.name)
