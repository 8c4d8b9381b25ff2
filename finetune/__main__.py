"""python -m finetune [options]: fine-tune, evaluate, write a run folder, optionally push it to the Hub.
python -m finetune --resume RUN_DIR: continue an interrupted or stopped run (runs/<id>.partial) at its
last resumable checkpoint, with the settings and data it started with.

Runs unchanged under `torchrun --nproc-per-node N -m finetune ...` and `accelerate launch -m finetune ...`.
"""
from __future__ import annotations

import argparse
import sys
import threading

from core.errors import UserError
from core.runs import Run
from core.model import grant_cores
from core.settings import Settings, quiet_libraries

from transformers.utils import logging as hf_logging

from . import hub, sweep, train
from .config import ConfigParser, TrainConfig
from .events import event_text
from .sweep import DEFAULT_GRID


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, each option's default after its help."""


def parser() -> ConfigParser:
    """The config's options (from `TrainConfig`'s fields) and the command's own."""
    p = ConfigParser(prog="python -m finetune", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--push-to-hub", dest="hub_model_id", metavar="REPO", default=argparse.SUPPRESS,
                   help="same as --hub-model-id: push the finished run to this Hub repo")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue this interrupted or stopped run (runs/<id>.partial) from its last resumable "
                        "checkpoint, with the settings it was started with (other settings are ignored)")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    p.add_argument("--sweep", nargs="?", metavar="GRID", const=DEFAULT_GRID, default=None,
                   help="search hyperparameters on the validation split (never the test split) and print "
                        f"a table; GRID like {DEFAULT_GRID!r} (the default)")
    p.add_argument("--sweep-train-best", action="store_true",
                   help="after --sweep, train the best setting as a normal run (tested once on test)")
    return p


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """(the validated config, the command's own options); a bad value raises ConfigError."""
    return parser().parse(argv)


def print_event(event: dict) -> None:
    """Progress rewrites one line of standard error; every other event gets a line of its own."""
    kind, text = event["event"], event_text(event)
    if kind == "progress":
        print(f"\r  {text}   ", end="", file=sys.stderr, flush=True)
    elif kind in ("log", "eval"):
        print(f"\r  {text}", file=sys.stderr, flush=True)
    elif text:
        print(f"\r[{kind}] {text}", file=sys.stderr, flush=True)


def run_sweep(cfg: TrainConfig, args: argparse.Namespace) -> TrainConfig | None:
    """--sweep: print the table; the best config if --sweep-train-best (then trained as usual), else None."""
    result = sweep.search(cfg, sweep.parse_grid(args.sweep), on_event=None if args.quiet else print_event)
    print(result.table())
    print(f"chosen on the validation split; table saved to {sweep.save(result, cfg.runs_dir)}")
    if not args.sweep_train_best:
        return None
    chosen = ", ".join(f"{name}={result.best[name]}" for name in result.names)
    print(f"training the best setting: {chosen}")
    return result.best_config


def train_or_resume(cfg: TrainConfig, args: argparse.Namespace, listener, stop) -> tuple[TrainConfig, train.RunResult]:
    """A new run of `cfg`, or (--resume) the run that args.resume names, with that run's own settings."""
    if not args.resume:
        return cfg, train.fine_tune(cfg, on_event=listener, stop=stop)
    result = train.resume(args.resume, on_event=listener, stop=stop)
    return TrainConfig.from_dict(Run(result.run_dir).config), result


def main(argv=None) -> int:
    quiet_libraries()
    hf_logging.disable_progress_bar()
    settings = Settings.from_env()  # the environment, read here once
    grant_cores(settings.cpu_cores)
    stop = threading.Event()
    try:
        cfg, args = parse_args(argv)
        if args.sweep or args.sweep_train_best:
            args.sweep = args.sweep or DEFAULT_GRID
            cfg = run_sweep(cfg, args)
            if cfg is None:
                return 0
        cfg, result = train_or_resume(cfg, args, None if args.quiet else print_event, stop)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the run is left unfinished (resume it with --resume RUN_DIR from its last "
              "checkpoint); earlier runs are untouched", file=sys.stderr)
        return 130
    if result.state != "done" or result.run_dir is None:
        print(f"run {result.run_id} {result.state}: {result.message}")
        return 1
    if not settings.is_main_process:
        return 0
    return report(cfg, result)


def report(cfg: TrainConfig, result: train.RunResult) -> int:
    """Print before/after, then push when a Hub repo is set; the exit code (3: the push failed)."""
    test, base = result.metrics["test"], result.metrics.get("baseline", {})
    print(f"run folder: {result.run_dir}")
    if base:
        print(f"before (base model, {base['method']}): accuracy {base['accuracy']:.3f}, macro-F1 {base['f1_macro']:.3f}")
    print(f"after  (fine-tuned):                 accuracy {test['accuracy']:.3f}, macro-F1 {test['f1_macro']:.3f}")
    if cfg.hub_model_id:
        pushed = hub.push_run(result.run_dir, cfg.hub_model_id, cfg.hub_private)
        print(f"hub: {pushed.state} {pushed.url or pushed.repo_id} {pushed.message}".rstrip())
        if pushed.state == "failed":
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
