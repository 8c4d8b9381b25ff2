"""Clicks that build on the last: a run continued from another run, on tweets the chain has not trained on.

    parent = find_parent(cfg.from_run, cfg.runs_dir)    # a run folder, a run id, or a Hub repo of a run
    cfg = continued(cfg, parent)                        # the next tweets of the pool, the same validation
    begun = start(cfg, parent, report, started)         # logged as the run begins
    metrics["lineage"] = finish(begun, train_seconds)   # with the chain's training seconds in total

The chain draws its training tweets from the shuffled pool in order: `train_offset` counts the tweets
drawn so far, so a continued run trains on `pool[offset:offset + n]` (wrapping round to a new pass once
every tweet has been drawn), with the validation tweets of the chain's first run held out as before.
A run without a parent is the first of its chain.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError, check_on_hub, looks_like_path
from core.labels import LABELS
from core.runs import Run, read_dict

from .card import public_name
from .config import TrainConfig


@dataclass
class Parent:
    """The finished run a new run continues from."""
    source: str             # what loads it: a run folder, or a Hub repo id
    name: str               # its run id (a Hub repo: the run id it was pushed from, with the repo)
    config: dict            # its train_config.json
    metrics: dict           # its metrics.json
    report: dict = field(default_factory=dict)   # its data_report.json
    revision: str | None = None                   # a Hub repo's commit
    started: str = ""                             # when it started (ISO): corrections made since are new

    @property
    def lineage(self) -> dict:
        """Its own lineage, or that of the first run of a chain (a run trained before lineages existed)."""
        if self.metrics.get("lineage"):
            return self.metrics["lineage"]
        sizes = self.report.get("sizes") or {}
        trained = int(sizes.get("train") or self.config.get("train_size") or 0)
        return {"parent": None, "clicks": 1, "tweets_seen": trained, "offset": 0, "end": trained,
                "validation_size": int(sizes.get("validation") or 0),
                "train_seconds": float(self.metrics.get("train_seconds") or 0.0),
                "started": self.metrics.get("started", "")}


def find_parent(from_run: str, runs_dir: str | Path, revision: str | None = None) -> Parent:
    """The run `from_run` names: a complete run folder, a run id in `runs_dir`, or a Hub repo a run was
    pushed to; a UserError that says why not."""
    for path in (Path(from_run).expanduser(), Path(runs_dir) / from_run):
        if (path / "status.json").exists():
            run = Run(path)
            if not run.is_complete:
                raise UserError(f"cannot continue from run {run.id}: it is {run.state}, not finished: "
                                f"resume it, or continue from a finished run")
            return Parent(str(run.path), run.id, run.config, run.metrics, run.data_report,
                          started=run.status.get("started", ""))
    if looks_like_path(from_run) or Path(from_run).expanduser().exists():
        raise UserError(f"cannot continue from {from_run}: it is not a finished run folder")
    return _hub_parent(from_run, revision)


def _hub_parent(repo_id: str, revision: str | None) -> Parent:
    """A run pushed to the Hub (a Space restarted without its disk: the chain goes on from the Hub)."""
    from huggingface_hub import hf_hub_download

    info = check_on_hub("model", repo_id)
    revision = revision or getattr(info, "sha", None)
    files = {}
    for name in ("train_config.json", "metrics.json", "data_report.json"):
        try:
            files[name] = json.loads(Path(hf_hub_download(repo_id, name, revision=revision)).read_text())
        except Exception:  # noqa: BLE001 - a repo without our files: not a run of this app
            files[name] = {}
    if not files["train_config.json"]:
        raise UserError(f"cannot continue from {repo_id}: it holds no run of this app (no train_config.json)")
    name = f"{files['metrics.json'].get('run_id') or repo_id} ({repo_id})"
    started = (files["metrics.json"].get("lineage") or {}).get("started", "")
    return Parent(repo_id, name, files["train_config.json"], files["metrics.json"], files["data_report.json"],
                  revision, started)


def check_compatible(cfg: TrainConfig, parent: Parent) -> None:
    """A chain keeps its base model and labels: continuing another base model's run is refused."""
    theirs = parent.config.get("base_model", "")
    if public_name(theirs) != public_name(cfg.base_model):
        raise UserError(f"cannot continue from {parent.name}: it was trained from {public_name(theirs)!r}, not "
                        f"{public_name(cfg.base_model)!r}; start over from the base model instead")
    labels = parent.config.get("labels") or list(LABELS)
    if list(labels) != list(LABELS):
        raise UserError(f"cannot continue from {parent.name}: its labels {labels} are not {list(LABELS)}")


def continued(cfg: TrainConfig, parent: Parent) -> TrainConfig:
    """cfg for the next run of `parent`'s chain: its tweets start where the chain's last run stopped, its
    validation tweets are the chain's."""
    check_compatible(cfg, parent)
    lineage = parent.lineage
    return dataclasses.replace(cfg, train_offset=int(lineage.get("end") or 0),
                               validation_size=int(lineage.get("validation_size") or 0))


def start(cfg: TrainConfig, parent: Parent | None, report: dict, started: str) -> dict:
    """The run's place in its chain, as it starts: the parent, the clicks so far, the tweets trained on in
    total (this run's included), where this run's tweets lie in the pool, and the training seconds before
    it (`finish` adds its own)."""
    window = report.get("train_window") or {}
    trained = int((report.get("sizes") or {}).get("train") or 0)
    before = parent.lineage if parent else {"clicks": 0, "tweets_seen": 0, "train_seconds": 0.0}
    return {"parent": parent.name if parent else None, "clicks": int(before["clicks"]) + 1,
            "tweets_seen": int(before["tweets_seen"]) + trained, "seconds_before": float(before["train_seconds"]),
            "offset": window.get("offset", cfg.train_offset), "end": window.get("end", cfg.train_offset + trained),
            "pool": window.get("pool"), "passes": window.get("pass", 1), "wrapped": window.get("wrapped", False),
            "validation_size": (report.get("sizes") or {}).get("validation", 0), "started": started}


def finish(begun: dict, train_seconds: float) -> dict:
    """metrics.json's "lineage": `start`'s record with the chain's training seconds in total."""
    done = {k: v for k, v in begun.items() if k != "seconds_before"}
    return {**done, "train_seconds": round(begun.get("seconds_before", 0.0) + train_seconds, 1)}


def summary(begun: dict) -> str:
    """One line for the event log: where this run starts from and which tweets it trains on."""
    where = (f"tweets {begun['offset']:,}–{begun['end']:,} of the chain's draw from {begun['pool']:,}"
             if begun.get("pool") else "")
    if not begun.get("parent"):
        return f"first run of its chain, from the base model; {where}".rstrip("; ")
    again = f"; every tweet had been seen: pass {begun['passes']} over the data" if begun.get("wrapped") or \
        begun.get("passes", 1) > 1 else ""
    return (f"click {begun['clicks']}: continues {begun['parent']} on tweets it has not trained on "
            f"({where}){again}; {begun['tweets_seen']:,} tweets in all")
