import logging
import os
import subprocess
import sys

import pytest

from core.errors import UserError
from core.runs import (Run, RunWriter, check_writable, drop_incomplete_checkpoints, latest,
                       mark_interrupted, pin, serving)


def fake_complete(runs_dir, run_id):
    w = RunWriter(runs_dir, run_id)
    (w.path / "config.json").write_text("{}")
    (w.path / "model.safetensors").write_bytes(b"x")
    return w.finish()


def test_partial_until_finished(runs_dir):
    w = RunWriter(runs_dir, "20260101-000000-aaaa")
    assert w.path.name.endswith(".partial") and latest(runs_dir) is None
    w.log_event({"event": "log", "loss": 1.0})
    (w.path / "config.json").write_text("{}")
    (w.path / "model.safetensors").write_bytes(b"x")
    final = w.finish()
    assert final.name == "20260101-000000-aaaa" and latest(runs_dir).path == final
    assert Run(final).history()[0]["loss"] == 1.0


def test_latest_is_the_newest_complete_run_and_pin_overrides(runs_dir):
    fake_complete(runs_dir, "20260101-000000-aaaa")
    fake_complete(runs_dir, "20260102-000000-bbbb")
    RunWriter(runs_dir, "20260103-000000-cccc").abandon("stopped")
    assert latest(runs_dir).id == "20260102-000000-bbbb"
    pin(runs_dir, "20260101-000000-aaaa")
    assert serving(runs_dir).id == "20260101-000000-aaaa"
    with pytest.raises(ValueError):
        pin(runs_dir, "20260103-000000-cccc")
    pin(runs_dir, None)
    assert serving(runs_dir).id == "20260102-000000-bbbb"


def test_foreign_and_corrupt_folders_are_skipped_with_a_warning(runs_dir, caplog):
    fake_complete(runs_dir, "20260101-000000-aaaa")
    (runs_dir / "holiday-photos").mkdir()
    broken = runs_dir / "20269999-000000-ffff"
    broken.mkdir()
    (broken / "status.json").write_text('{"state": "done"}')   # says done, has no checkpoint
    (runs_dir / "20260105-000000-eeee").mkdir()
    (runs_dir / "20260105-000000-eeee" / "status.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert latest(runs_dir).id == "20260101-000000-aaaa"
    assert "holiday-photos" in caplog.text and "20269999-000000-ffff" in caplog.text


def test_half_written_history_line_is_skipped(runs_dir):
    w = RunWriter(runs_dir)
    w.log_event({"event": "log", "loss": 0.5})
    with open(w.path / "history.jsonl", "a") as f:
        f.write('{"event": "log", "lo')
    assert Run(w.path).history() == [{"event": "log", "loss": 0.5, "time": Run(w.path).history()[0]["time"]}]


def test_interrupted_runs_are_marked(runs_dir):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    w = RunWriter(runs_dir)
    w.set_status("running", pid=int(dead.stdout))
    (w.checkpoints_dir / "checkpoint-1").mkdir(parents=True)
    alive = RunWriter(runs_dir)  # this process: still running
    marked = mark_interrupted(runs_dir)
    assert [r.id for r in marked] == [w.id]
    assert Run(w.path).state == "interrupted" and w.checkpoints_dir.exists()  # kept: the run can resume
    assert not Run(w.path).can_resume  # checkpoint-1 is incomplete (no trainer_state.json)
    assert Run(alive.path).state == "running"


def test_resumable_checkpoint_is_the_newest_complete_one(runs_dir):
    w = RunWriter(runs_dir)
    for step, complete in ((4, True), (8, True), (12, False)):  # 12: a crash mid-save
        folder = w.checkpoints_dir / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "optimizer.pt").write_bytes(b"x")
        (folder / "trainer_state.json").write_text('{"global_step": %d}' % step if complete else '{"global_st')
    w.abandon("stopped")
    assert Run(w.path).checkpoint.name == "checkpoint-8" and Run(w.path).can_resume
    drop_incomplete_checkpoints(w.checkpoints_dir)
    assert sorted(p.name for p in w.checkpoints_dir.iterdir()) == ["checkpoint-4", "checkpoint-8"]
    again = RunWriter.reopen(w.path)
    assert again.id == w.id and Run(w.path).state == "running" and Run(w.path).status["pid"] == os.getpid()


def test_unwritable_or_full_runs_folder_is_refused_up_front(tmp_path):
    with pytest.raises(UserError, match="free"):
        check_writable(tmp_path, need_bytes=1 << 60)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="not writable"):
        check_writable(blocker / "runs")
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(UserError, match="not writable"):
            check_writable(ro)
