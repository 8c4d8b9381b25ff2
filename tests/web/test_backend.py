"""web.backend: Retrain continues the run that serves (each click builds on the last) unless told to start
over, which is an admin's choice on a public Space."""
import shutil

from core.settings import Settings
from tests.helpers import tiny_defaults
from web.backend import OWNER, Backend
from web.roles import Caller


def test_retrain_continues_the_serving_run_unless_told_to_start_over(trained_run, tiny_model, tiny_dataset,
                                                                     runs_dir, monkeypatch):
    shutil.copytree(trained_run, runs_dir / trained_run.name)
    backend = Backend(tiny_defaults(tiny_model, tiny_dataset, runs_dir), admin_users=["boss"],
                      settings=Settings(space_id="owner/tweets"))
    assert backend.server.get().kind == "fine-tuned"
    started = []
    monkeypatch.setattr(backend.job, "start", lambda cfg: (started.append(cfg), (True, "started"))[1])

    assert backend.train({}, OWNER)["accepted"]
    assert started[-1].from_run == str(runs_dir / trained_run.name)   # the next click of the serving run's chain
    assert backend.train({"start_over": True}, OWNER)["accepted"]
    assert started[-1].from_run == ""                                 # a fresh run from the base model

    visitor = Caller(user="", client="1.2.3.4", admin=False)
    refused = backend.train({"start_over": True}, visitor)
    assert not refused["accepted"] and "start_over" in refused["message"] and len(started) == 2
    assert backend.train({}, visitor)["accepted"] and started[-1].from_run  # the demo's button: it continues
