"""Clicks that build on the last (finetune.lineage) and a new run serving only if it is no worse
(finetune.promotion)."""
from pathlib import Path

from datasets import load_from_disk

from core.runs import Run, serving
from finetune import train
from finetune.data import window


def train_and_keep(cfg):
    """fine_tune, with a copy of the run's training split kept beside it (finished runs drop _checkpoints)."""
    import shutil

    from core.runs import CHECKPOINTS
    from finetune import checkpoints

    copied = {}

    def listen(event):
        if event["event"] == "start" and not copied:
            run = Path(cfg.runs_dir) / f"{event['run_id']}.partial"
            copied["path"] = Path(cfg.runs_dir).parent / f"splits-{event['run_id']}"
            shutil.copytree(run / CHECKPOINTS / checkpoints.SPLITS, copied["path"])
    result = train.fine_tune(cfg, on_event=listen)
    assert result.state == "done"
    return result, set(load_from_disk(str(copied["path"]))["train"]["text"])


def test_the_window_goes_round_to_a_new_pass():
    rows = list(range(10))
    assert window(rows, 0, 4) == ([0, 1, 2, 3], {"offset": 0, "end": 4, "pool": 10, "pass": 1, "wrapped": False})
    picked, where = window(rows, 8, 4)
    assert picked == [8, 9, 0, 1] and where["wrapped"] and where["pass"] == 1 and where["end"] == 12
    picked, where = window(rows, 12, 4)
    assert picked == [2, 3, 4, 5] and where["pass"] == 2 and not where["wrapped"]


def test_a_continued_run_trains_on_tweets_its_parent_did_not_see_and_its_lineage_adds_up(tiny_config):
    first, seen_first = train_and_keep(tiny_config(train_size=60))
    second, seen_second = train_and_keep(tiny_config(train_size=60, from_run=str(first.run_dir)))
    assert len(seen_first) == len(seen_second) == 60
    assert not seen_first & seen_second, "the second click trains on tweets the first did not see"
    a, b = Run(first.run_dir).metrics["lineage"], Run(second.run_dir).metrics["lineage"]
    assert a["parent"] is None and a["clicks"] == 1 and a["tweets_seen"] == 60 and (a["offset"], a["end"]) == (0, 60)
    assert b["parent"] == first.run_id and b["clicks"] == 2 and b["tweets_seen"] == 120
    assert (b["offset"], b["end"]) == (60, 120)
    assert b["train_seconds"] == round(a["train_seconds"] + Run(second.run_dir).metrics["train_seconds"], 1)
    assert b["validation_size"] == a["validation_size"], "the chain keeps its validation tweets"
    # a third click, by run id, goes on from the second
    third, seen_third = train_and_keep(tiny_config(train_size=60, from_run=second.run_id))
    assert not seen_third & (seen_first | seen_second)
    assert Run(third.run_dir).metrics["lineage"]["clicks"] == 3
    # the Runs tab's plot: one chain, named by its first run, a point per click at the tweets seen so far
    from web import views
    plot = views.clicks(third.run_dir.parent)
    assert [row[:2] for row in plot.value["data"]] == [[1, 60], [2, 120], [3, 180]]
    assert {row[-1] for row in plot.value["data"]} == {f"from {first.run_id}"}
    accuracies = [row[3] for row in plot.value["data"]]
    assert plot.y_lim[0] <= min(accuracies) <= max(accuracies) <= plot.y_lim[1]


def test_a_worse_run_does_not_take_over(tiny_config):
    good = train.fine_tune(tiny_config(train_size=120, epochs=2))
    assert Run(good.run_dir).metrics["promotion"]["promoted"]
    # a learning rate this small leaves the head where it started: chance accuracy
    bad = train.fine_tune(tiny_config(train_size=24, learning_rate=1e-7))
    verdict = Run(bad.run_dir).metrics["promotion"]
    assert Run(bad.run_dir).metrics["test"]["accuracy"] < Run(good.run_dir).metrics["test"]["accuracy"] - 0.1
    assert not verdict["promoted"] and verdict["against"] == f"run {good.run_id}"
    assert "does not serve" in verdict["message"]
    assert serving(tiny_config().runs_dir).id == good.run_id


def test_a_serving_run_tested_on_other_tweets_is_tested_again_on_the_new_runs(tiny_config, monkeypatch):
    """Different test tweets (another test size, another dataset): the serving run's recorded accuracy does not
    compare, so it is measured on the new run's test rows, with the max_length it was trained with."""
    from conftest import make_tweets
    from finetune import promotion

    good = train.fine_tune(tiny_config(train_size=120, epochs=2))
    rows = [(t["text"], t["label"]) for t in make_tweets(40, seed=5)]
    lengths, measure = [], promotion.predict_proba
    monkeypatch.setattr(promotion, "predict_proba", lambda model, tok, texts, length: lengths.append(length)
                        or measure(model, tok, texts, length))
    verdict = promotion.judge(tiny_config(), {"test": {"accuracy": 0.0}, "test_rows": promotion.fingerprint(rows)},
                              rows)
    assert verdict["against"] == f"run {good.run_id}" and not verdict["promoted"]
    assert verdict["their_accuracy"] >= 0.6  # measured now: the tiny model learned these words
    assert lengths == [tiny_config().max_length]  # once, truncating where the run was trained to
