"""The time budget: the plan's arithmetic, a budgeted run end to end with a stand-in measurement, the
measurement itself on a fake clock, and what the CLI, the job and the Train tab make of it. No test
depends on this machine's speed."""
import json
from types import SimpleNamespace

import pytest
import transformers

from core.runs import Run
from finetune import budget, train
from finetune.config import ConfigError, TrainConfig
from finetune.events import event_text


def speed(tweets_per_s: float, base_model: str = "m", precision: str = "fp32",
          cfg: TrainConfig | None = None) -> budget.Throughput:
    """A measurement on this machine for `cfg`'s knobs (default: the one-click defaults)."""
    return budget.Throughput(tweets_per_s=tweets_per_s, warmup_s=1.5, step_s=1.6, base_model=base_model,
                             precision=precision, device=budget.device_name(), amx=False, measured_at=1.8e9,
                             setting=budget.setting(cfg or TrainConfig()))


def test_plan_fills_the_budget_with_validation_and_saves_counted():
    cfg = TrainConfig(time_budget_s=120, batch_size=16, epochs=1, validation_share=0.1)
    plan = budget.make_plan(cfg, speed(10.0), max_train=20_000)
    # each tweet: 1 epoch at 10/s plus its 0.1 share of one validation pass at 3x that speed; 2 s per save
    assert plan.train_size == int((120 - 2) / ((1 + 0.1 / 3) / 10))  # 1141
    assert plan.steps == 72 and not plan.every_tweet and plan.planned_s <= 120
    two_epochs = budget.make_plan(TrainConfig(time_budget_s=120, epochs=2, batch_size=16), speed(10.0),
                                  max_train=20_000)
    assert two_epochs.train_size == int((120 - 2 * 2) / ((2 + 2 * 0.1 / 3) / 10))  # epochs are kept, size halves
    with_corrections = budget.make_plan(cfg, speed(10.0), max_train=20_000, extra=41)
    assert with_corrections.train_size == 1100 and with_corrections.steps == 72  # the corrections train too


def test_plan_keeps_time_for_the_first_steps_that_the_measurement_found_slow():
    cfg = TrainConfig(time_budget_s=120, batch_size=16, epochs=1, validation_share=0.1)
    slow_start = budget.Throughput(tweets_per_s=10.0, warmup_s=17.7, step_s=1.5, base_model="m", precision="bf16",
                                   device="cpu", amx=False, measured_at=1.8e9)
    assert slow_start.first_steps_s == pytest.approx(17.7 - 2 * 1.5)  # 2 warm-up steps at the timed rate
    plan = budget.make_plan(cfg, slow_start, max_train=20_000)
    assert plan.train_size == int((120 - 2 - 14.7) / ((1 + 0.1 / 3) / 10))  # 999: the run pays them again
    assert plan.planned_s == pytest.approx(120, abs=0.1) and "the first steps 14.7s more" in plan.summary()


def test_a_run_corrects_the_speed_by_its_own_time_within_4x():
    plan = budget.make_plan(TrainConfig(time_budget_s=120, batch_size=16), speed(10.0), max_train=20_000)
    assert plan.fixed_s == 2.0  # one validation pass's save
    slower = budget.observed(plan, train_seconds=2 + 2 * (plan.planned_s - 2), run_id="r1")
    assert slower.tweets_per_s == pytest.approx(5.0) and slower.source == "corrected by run r1"
    assert budget.observed(plan, train_seconds=1.0, run_id="r2").tweets_per_s == pytest.approx(40.0)  # capped
    assert budget.observed(plan, train_seconds=10_000, run_id="r3").tweets_per_s == pytest.approx(2.5)


def test_plan_never_exceeds_the_data_or_goes_below_one_batch():
    cfg = TrainConfig(time_budget_s=120, batch_size=16)
    every = budget.make_plan(cfg, speed(1000.0), max_train=500)
    assert every.train_size == 500 and every.every_tweet and every.planned_s < 120  # finishes early
    assert "every tweet (500)" in every.summary()
    slow = budget.make_plan(cfg, speed(0.01), max_train=500)
    assert slow.train_size == 16 and slow.steps == 1


def test_budget_applies_only_without_a_train_size():
    assert budget.applies(TrainConfig())  # the one-click default: the budget decides
    assert not budget.applies(TrainConfig(train_size=1400))
    assert not budget.applies(TrainConfig(time_budget_s=0))
    with pytest.raises(ConfigError, match="time_budget_s must be 0 .* or between 10"):
        TrainConfig(time_budget_s=5).validate()


def test_cli_takes_time_budget():
    from finetune.__main__ import parse_args

    cfg, _ = parse_args(["--time-budget", "300"])
    assert cfg.time_budget_s == 300 and cfg.train_size == 0
    assert parse_args(["--time-budget-s", "60", "--train-size", "500"])[0].time_budget_s == 60
    with pytest.raises(ConfigError, match="time_budget_s"):
        parse_args(["--time-budget", "-1"])


def test_budgeted_run_trains_the_planned_size_with_a_schedule_for_its_steps(tiny_config, monkeypatch):
    # 8.3 tweets/s: (10 s budget - 2 s for the one save) fits 64 tweets, 8 steps of 8
    monkeypatch.setattr(budget, "measure", lambda cfg, *args: speed(8.3, cfg.base_model))
    events = []
    result = train.fine_tune(tiny_config(train_size=0, time_budget_s=10, measure_forgetting=False),
                             on_event=events.append)
    run = Run(result.run_dir)
    assert run.config["train_size"] == 64 and run.config["time_budget_s"] == 10  # a resume repeats the plan
    assert not budget.applies(TrainConfig.from_dict(run.config))
    assert run.data_report["sizes"]["train"] == 64 and run.data_report["sizes"]["validation"] == 6
    plan = run.metrics["budget"]
    assert (plan["train_size"], plan["steps"], plan["speed"]["tweets_per_s"]) == (64, 8, 8.3)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total_steps"] == 8
    assert all(e["budget_s"] == 10 for e in progress) and progress[0]["eta_s"] == pytest.approx(plan["planned_s"], abs=0.5)
    logs = [e for e in run.history() if e["event"] == "log"]
    # each step's rate (logged as used): a linear decay that reaches 0 right after step 8, the last one run
    assert [e["step"] for e in logs] == list(range(1, 9))
    assert [e["learning_rate"] for e in logs] == pytest.approx([5e-3 * (9 - k) / 8 for k in range(1, 9)])
    assert any(e["event"] == "budget" and "64 tweets" in e["message"] for e in run.history())


def test_explicit_train_size_wins_and_measures_nothing(tiny_config, monkeypatch):
    def no_measure(*args):
        raise AssertionError("an explicit train size must not be measured")
    monkeypatch.setattr(budget, "measure", no_measure)
    events = []
    result = train.fine_tune(tiny_config(train_size=48, time_budget_s=60, measure_forgetting=False,
                                         few_shot_k=0), on_event=events.append)
    run = Run(result.run_dir)
    assert run.config["train_size"] == 48 and "budget" not in run.metrics
    assert not any("budget_s" in e for e in events if e["event"] == "progress")


def test_measure_times_the_steps_after_the_warmup(tiny_config, tiny_model, monkeypatch, runs_dir):
    """A clock that only training steps move (0.5 s each): the figures must come out exactly."""
    from core.model import load_tokenizer
    from finetune import data

    now, step = [0.0], transformers.Trainer.training_step

    def timed_step(self, *args, **kwargs):
        now[0] += 0.5
        return step(self, *args, **kwargs)
    monkeypatch.setattr(transformers.Trainer, "training_step", timed_step)
    monkeypatch.setattr(budget, "time", SimpleNamespace(perf_counter=lambda: now[0], time=lambda: 1.8e9))
    cfg = tiny_config(train_size=0)
    cleaned = data.clean(cfg)
    tokenizer = load_tokenizer(str(tiny_model))
    trainer_for = lambda trial, tokenized, out: train.build_trainer(  # noqa: E731 - what train's _speed passes
        trial, train.model_to_train(trial, tokenizer), tokenizer, tokenized, out, [], precision="fp32")
    measured = budget.measure(cfg, tokenizer, cleaned.pool, "fp32", trainer_for)
    assert measured.warmup_s == pytest.approx(budget.WARMUP_STEPS * 0.5)  # not in the rate
    assert measured.step_s == pytest.approx(0.5) and measured.tweets_per_s > 0
    assert (measured.precision, measured.amx) == ("fp32", False) and measured.device.endswith(" threads")
    assert measured.setting.startswith("batch 8x1x1, max_length 32") and measured.source == "measured"
    few = budget.measure(cfg, tokenizer, cleaned.pool[:5], "fp32", trainer_for)  # fewer than 6 steps' worth
    assert few.step_s == pytest.approx(0.5) and few.warmup_s == pytest.approx(1.0)

    budget.record(runs_dir, measured)
    assert budget.last(cfg, "fp32") == measured
    assert budget.last(cfg, "bf16") is None  # another precision: not known yet
    assert budget.last(tiny_config(train_size=0, batch_size=16), "fp32") is None  # nor another batch size


def test_hint_says_what_the_next_run_trains_on(runs_dir):
    cfg = TrainConfig(base_model="m", runs_dir=str(runs_dir))
    assert "the first run measures this machine's training speed" in budget.hint(cfg)
    at_probe = TrainConfig(base_model="m", batch_size=budget.PROBE_BATCH)
    rate = 1.5 * budget.MIN_STEPS * budget.PROBE_BATCH / 114  # enough tweets for MIN_STEPS steps of the probe's
    budget.record(runs_dir, speed(rate, cfg=at_probe))
    expected = budget.make_plan(at_probe, speed(rate, cfg=at_probe), max_train=10**9).train_size
    text = budget.hint(cfg)
    assert text.startswith(f"≈ {expected:,} tweets in 2m 00s on this machine, batch 16") and f"{rate:.1f} tweets/s" in text
    assert budget.hint(TrainConfig(train_size=1400)).startswith("Trains on 1,400 tweets")
    assert "every tweet" in budget.hint(TrainConfig(time_budget_s=0))


def test_train_tab_shows_the_budget_before_and_during_a_run(runs_dir):
    from web import handlers, views

    backend = SimpleNamespace(config=lambda settings: TrainConfig.from_dict({"runs_dir": str(runs_dir),
                                                                             **settings}).validate())
    assert "first run measures" in handlers.budget_hint(backend, ["time_budget_s"], [60])["budget_note"]
    assert handlers.budget_hint(backend, ["time_budget_s"], [3]) == {"budget_note": ""}  # Retrain says why
    status = {"state": "running", "step": 3, "total_steps": 10, "epoch": 0.3, "elapsed_s": 65, "eta_s": 55,
              "budget_s": 120}
    assert "1m 05s of 2m 00s budget · ETA 55s" in views.progress_html(status)
    assert event_text({"event": "progress", **status}).endswith("1m 05s of 2m 00s budget, ETA 55s")


def test_job_status_carries_the_budget(runs_dir):
    """/status while a run trains: its budget and the time spent of it, as the Train tab shows them."""
    from web.jobs import JobState, TrainingJob
    from web.views import progress_html

    job = TrainingJob(runs_dir)
    job._state = JobState.RUNNING  # as while its thread trains (not started here)
    job._on_event({"event": "progress", "run_id": "r", "step": 1, "total_steps": 4, "epoch": 0.25,
                   "eta_s": 30.0, "elapsed_s": 10.0, "budget_s": 40.0})
    status = json.loads(json.dumps(job.status()))  # JSON all the way
    assert (status["state"], status["run_id"], status["step"], status["total_steps"]) == ("running", "r", 1, 4)
    assert (status["budget_s"], status["elapsed_s"], status["eta_s"]) == (40.0, 10.0, 30.0)
    assert "10s of 40s budget" in progress_html(status)  # the job line of the Train tab


def test_sweep_sizes_its_trials_once_from_the_budget(tiny_config, monkeypatch):
    from finetune import sweep

    calls = []

    def measured(cfg, *args):
        calls.append(cfg)
        return speed(8.3, cfg.base_model)
    monkeypatch.setattr(budget, "measure", measured)
    result = sweep.search(tiny_config(train_size=0, time_budget_s=10, measure_forgetting=False),
                          {"learning_rate": ["5e-3", "1e-3"]})
    assert len(calls) == 1 and [c.train_size for c in result.configs] == [64, 64]
    assert result.best_config.train_size == 64  # --sweep-train-best trains the size the trials had


def test_a_resumed_budget_run_repeats_its_plan_without_measuring(tiny_config, monkeypatch):
    import threading

    monkeypatch.setattr(budget, "measure", lambda cfg, *args: speed(8.3, cfg.base_model))  # 64 tweets, 8 steps
    stop = threading.Event()

    def stop_at_4(event):
        if event["event"] == "progress" and event["step"] >= 4:
            stop.set()
    stopped = train.fine_tune(tiny_config(train_size=0, time_budget_s=10, measure_forgetting=False, few_shot_k=0,
                                          checkpoint_every_minutes=0), on_event=stop_at_4, stop=stop)
    assert stopped.state == "stopped"

    def no_measure(*args):
        raise AssertionError("a resumed run keeps its plan")
    monkeypatch.setattr(budget, "measure", no_measure)
    resumed = train.resume(stopped.run_dir)
    run = Run(resumed.run_dir)
    assert resumed.state == "done" and run.config["train_size"] == 64
    logs = [e for e in run.history() if e["event"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, 9))  # the same 8 steps, the same schedule
    assert [e["learning_rate"] for e in logs] == pytest.approx([5e-3 * (9 - k) / 8 for k in range(1, 9)])


def test_a_later_run_plans_from_the_last_speed_as_the_previous_run_corrected_it(tiny_config, monkeypatch, runs_dir):
    cfg = tiny_config(train_size=0, time_budget_s=10, measure_forgetting=False, few_shot_k=0)
    monkeypatch.setattr(budget, "measure", lambda *args: speed(8.3, cfg.base_model, cfg=cfg))  # 64 tweets in 10 s
    first = Run(train.fine_tune(cfg).run_dir)
    corrected = budget.last(cfg, "fp32")
    assert first.metrics["train_seconds"] < first.metrics["budget"]["planned_s"]  # the tiny model is faster
    assert 8.3 < corrected.tweets_per_s <= 4 * 8.3 and corrected.source == f"corrected by run {first.id}"

    def no_measure(*args):
        raise AssertionError("the same machine and knobs: no second measurement")
    monkeypatch.setattr(budget, "measure", no_measure)
    second = Run(train.fine_tune(cfg).run_dir)
    assert second.metrics["budget"]["speed"]["tweets_per_s"] == corrected.tweets_per_s
    assert any(e["event"] == "budget" and f"corrected by run {first.id}" in e["message"] for e in second.history())


@pytest.mark.parametrize("per_step, batch, measured", [(10, 8, [16, 8]), (20, 16, [16]), (80, 64, [16, 64])])
def test_the_recipe_takes_smaller_batches_where_steps_are_slow(per_step, batch, measured):
    """The plan measures at PROBE_BATCH, then picks the largest batch that keeps MIN_STEPS optimizer steps:
    a slow machine trains its few tweets in small batches, a fast one in large batches (measured again).
    (A budget of 120 s fits about 114 s of tweets: `per_step` tweets a second fill MIN_STEPS steps of
    about per_step * 1.14 tweets.)"""
    rate, asked = per_step * budget.MIN_STEPS / 100, []

    def speed_of(cfg):
        asked.append(cfg.batch_size)
        return speed(rate, cfg=cfg)
    cfg, plan = budget.plan(TrainConfig(time_budget_s=120), speed_of, max_train=20_000)
    assert asked == measured and cfg.batch_size == plan.batch_size == batch
    assert plan.steps >= budget.MIN_STEPS and cfg.train_size == plan.train_size
    assert cfg.learning_rate == plan.learning_rate == budget.LEARNING_RATES[batch]
    # what is set stays: a batch size given by hand is not replaced, nor measured at the probe's
    asked.clear()
    assert budget.plan(TrainConfig(time_budget_s=120, batch_size=32), speed_of, 20_000)[0].batch_size == 32
    assert asked == [32]


def test_a_budgeted_run_trains_with_the_recipe_its_speed_gives(tiny_config, monkeypatch):
    monkeypatch.setattr(budget, "MIN_STEPS", 4)  # the tiny data: 4 steps of a batch fit the pool
    monkeypatch.setattr(budget, "measure", lambda cfg, *args: speed(3.0 if cfg.batch_size <= 8 else 4.0, cfg=cfg))
    result = train.fine_tune(tiny_config(train_size=0, batch_size=0, learning_rate=0, time_budget_s=12,
                                         measure_forgetting=False, few_shot_k=0))
    run = Run(result.run_dir)
    # 4 tweets/s at batch 16: 38 tweets fit in 12 s (less a save), under 4 steps of 16, so batch 8, at 3 tweets/s
    assert run.config["batch_size"] == 8 and run.config["learning_rate"] == budget.LEARNING_RATES[8]
    assert run.metrics["budget"]["speed"]["tweets_per_s"] == 3.0


def test_a_run_slower_than_measured_stops_before_it_overruns_its_budget(monkeypatch):
    """The guard: training stops where another step and the last validation would pass the
    budget (a machine slower than its measurement), with the best checkpoint still evaluated."""
    plan = budget.make_plan(TrainConfig(time_budget_s=100, batch_size=16), speed(10.0), max_train=20_000)
    clock = [0.0]
    monkeypatch.setattr(train.time, "monotonic", lambda: clock[0])
    events = []
    progress = train.Progress(events.append, plan=plan)
    state, args = SimpleNamespace(global_step=0, max_steps=plan.steps, epoch=0.0), SimpleNamespace()
    progress.on_train_begin(args, state, SimpleNamespace())
    control = SimpleNamespace(should_training_stop=False, should_evaluate=False)
    for step in range(1, plan.steps):  # each step twice as slow as planned
        clock[0] = step * 2 * plan.planned_s / plan.steps
        state.global_step = step
        progress.on_step_end(args, state, control)
        if control.should_training_stop:
            break
    assert control.should_training_stop and control.should_evaluate
    step_s = 2 * plan.planned_s / plan.steps
    assert clock[0] + 2 * step_s + plan.tail_s > 100 >= clock[0] + step_s + plan.tail_s
    assert "stopped at step" in events[-1]["message"]
    done = state.global_step / plan.steps
    assert budget.observed(plan, clock[0], "r", done).tweets_per_s == pytest.approx(5.0, rel=0.1)
