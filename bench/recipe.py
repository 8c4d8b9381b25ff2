"""The one-click recipe the time budget plans for a given training speed: batch size, learning rate, tweets
and steps (finetune/budget.py), so that a change of the rule or its defaults shows its effect on a slow CPU
and a fast one before it lands.

    python -m bench.recipe                                   # a table over speeds from 4 to 200 tweets/s
    python -m bench.recipe --speed 15 --speed 16:15 --speed 8:13 [--budget 120] [--continued]

A speed is tweets a second at the probe batch size (budget.PROBE_BATCH), the same at every batch size
unless given per batch (`8:13` = 13 tweets/s at batch 8), as `python -m finetune` measures them.
Nothing is trained or measured here.
"""
from __future__ import annotations

import argparse
import dataclasses

from finetune import budget
from finetune.config import TrainConfig

SPEEDS = (4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 200.0)


def plan_for(rates: dict[int, float], cfg: TrainConfig, continued: bool = False):
    """(cfg as planned, the plan) when this machine trains `rates[batch]` tweets a second (else rates[0])."""
    def speed_of(c: TrainConfig) -> budget.Throughput:
        rate = rates.get(c.batch_size, rates[0])
        return budget.Throughput(tweets_per_s=rate, warmup_s=2 * c.batch_size / rate, step_s=c.batch_size / rate,
                                 base_model=c.base_model, precision="fp32", device="(given)", amx=False,
                                 measured_at=0.0, setting=budget.setting(c))
    return budget.plan(cfg, speed_of, max_train=24_000, continued=continued)


def parse_speed(text: str) -> tuple[int, float]:
    batch, _, rate = text.rpartition(":")
    return int(batch or 0), float(rate)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.recipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speed", action="append", type=parse_speed, metavar="[BATCH:]TWEETS_PER_S",
                   help="a training speed (repeat with BATCH: for other batch sizes); default: a table of speeds")
    p.add_argument("--budget", type=float, default=TrainConfig.time_budget_s, help="seconds (default: %(default)s)")
    p.add_argument("--continued", action="store_true", help="a click that continues the last (finetune.lineage)")
    args = p.parse_args(argv)
    cfg = TrainConfig(time_budget_s=args.budget)
    tables = [dict(args.speed)] if args.speed else [{0: s} for s in SPEEDS]
    print(f"rule: the largest of batch sizes {budget.BATCH_SIZES} that leaves {budget.MIN_STEPS} optimizer steps, "
          f"learning rates {budget.LEARNING_RATES}" + (f" x {budget.CONTINUED_LR} (continued)" if args.continued else ""))
    print(f"{'tweets/s':>9} {'batch':>6} {'lr':>8} {'tweets':>7} {'steps':>6} {'planned s':>10}")
    for rates in tables:
        rates.setdefault(0, rates.get(budget.PROBE_BATCH, next(iter(rates.values()))))
        planned_cfg, planned = plan_for(rates, dataclasses.replace(cfg), args.continued)
        print(f"{rates.get(planned_cfg.batch_size, rates[0]):>9.1f} {planned_cfg.batch_size:>6} "
              f"{planned_cfg.learning_rate:>8.0e} {planned.train_size:>7,} {planned.steps:>6} {planned.planned_s:>10.1f}")


if __name__ == "__main__":
    main()
