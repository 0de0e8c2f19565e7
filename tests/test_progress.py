"""Tests of lambda_networks.train.progress with a fake clock."""

from lambda_networks.train import progress


class FakeClock:

  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def _train(meter, clock, steps, step_seconds):
  for _ in range(steps):
    clock.now += step_seconds
    meter.step_dispatched()


def test_compile_and_evaluation_time_are_not_training_time():
  clock = FakeClock()
  meter = progress.Meter(clock)
  # As the trainer runs it: log every 100 steps, evaluate at step 150.
  clock.now += 50.0  # The first call compiles for 50 s, then dispatches.
  meter.step_dispatched()
  _train(meter, clock, 99, 0.5)
  clock.now += 0.5  # The progress line syncs: step 1..100 executions done.
  first = meter.report()
  assert first.steps == 100
  assert first.compile_seconds == 50.0
  assert first.step_time == 0.5  # 100 steps in 50 s, compile left out.
  _train(meter, clock, 50, 0.5)
  with meter.paused():
    clock.now += 120.0  # Evaluation (with its own compile).
  _train(meter, clock, 50, 0.5)
  second = meter.report()
  assert second.steps == 100 and second.compile_seconds is None
  # The line after the evaluation reports the same speed as the one before
  # (the symptom was twice it: the window's time restarted at the
  # eval while its steps did not).
  assert abs(second.examples_per_second(128) / first.examples_per_second(128)
             - 1) < 0.2
  assert second.examples_per_second(128) == 256.0
  # And the next window starts clean.
  _train(meter, clock, 10, 0.25)
  assert meter.report().step_time == 0.25
