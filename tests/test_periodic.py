"""Tests of lambda_networks.train.periodic: each loop action's schedule and state."""

import types

import numpy as np
import pytest

from lambda_networks.train import health
from lambda_networks.train import periodic
from lambda_networks.train import progress
from lambda_networks.train import trainer


class FakeManager:
  """Orbax's manager as the actions use it: saves every 3 steps."""
  directory = "/tmp/run/checkpoints"

  def __init__(self, preempted_at=None):
    self.preemption_asks, self.preempted_at = [], preempted_at

  def should_save(self, step):
    return step % 3 == 0

  def reached_preemption(self, step):
    self.preemption_asks.append(step)
    return step == self.preempted_at

  def all_steps(self):
    return []

  def wait_until_finished(self):
    pass


def _due(action, total):
  return [step for step in range(1, total + 1) if action.due(step)]


def test_each_action_is_due_on_its_own_schedule():
  log = periodic.TrainLog(writer=None, meter=progress.Meter(), every=4,
                          total=10, batch_size=8)
  assert _due(log, 10) == [4, 8, 10]  # And the last step.
  checkpoints = periodic.Checkpoints(FakeManager(), record={}, total=10)
  assert _due(checkpoints, 10) == [3, 6, 9, 10]
  exp = types.SimpleNamespace(config=types.SimpleNamespace(eval_every_steps=5),
                              total_steps=10)
  assert _due(periodic.Evaluations(exp, None, None), 10) == [5]  # Not the end.
  exp.config.eval_every_steps = 0
  assert not _due(periodic.Evaluations(exp, None, None), 10)


def test_metrics_are_read_one_step_late_and_settled_on_demand():
  read, consumed = [], []

  def check(step, metrics):
    read.append(step)
    return {"loss": metrics}

  delayed = periodic.DelayedMetrics(check, consumers=(consumed.append,))
  delayed.dispatched(1, 0.5)
  assert read == []  # Step 1 may still run: not waited for.
  delayed.dispatched(2, 0.4)
  assert read == [1]
  delayed.settle()
  delayed.settle()  # Nothing new: read once.
  delayed.dispatched(3, 0.3)
  assert read == [1, 2] and consumed == [{"loss": 0.5}, {"loss": 0.4}]


def test_a_non_finite_step_raises_when_it_is_read():
  baseline = health.Baseline(chance_loss=0.69, initial_norm=3.0)
  delayed = periodic.DelayedMetrics(
      lambda step, metrics: periodic.check_finite(step, metrics, FakeManager(),
                                                  baseline), consumers=())
  delayed.dispatched(7, {"loss": np.float32(np.nan), "finite": np.bool_(False)})
  with pytest.raises(periodic.NonFiniteLossError, match="at step 7"):
    delayed.dispatched(8, {"loss": np.float32(1.0), "finite": np.bool_(True)})


def test_non_finite_loss_stops_with_a_clear_message():
  baseline = health.Baseline(chance_loss=0.69, initial_norm=3.0)
  metrics = {"loss": np.float32(np.nan), "finite": np.bool_(False)}
  with pytest.raises(trainer.NonFiniteLossError,  # The trainer's name for it.
                     match="step 301 .*Lower config.base_learning_rate.*No "
                     "checkpoint was saved in /tmp/run/checkpoints"):
    periodic.check_finite(301, metrics, FakeManager(), baseline)
  ok = periodic.check_finite(5, {"loss": np.float32(1.0), "finite": np.bool_(True)},
                             FakeManager(), baseline)
  assert ok == {"loss": 1.0}


def test_checkpoint_health_covers_the_losses_since_the_last_save(monkeypatch):
  saved = []
  monkeypatch.setattr(periodic.checkpointing, "save",
                      lambda manager, state, record, force: saved.append(
                          (record["health"]["train_loss"], force)))
  monkeypatch.setattr(periodic.health, "record",
                      lambda losses, params: {"train_loss": list(losses)})
  checkpoints = periodic.Checkpoints(FakeManager(), record={}, total=10)
  state = types.SimpleNamespace(params=None)
  for loss in (1.0, 2.0):
    checkpoints.add({"loss": loss})
  checkpoints.save(3, state)
  checkpoints.add({"loss": 3.0})
  checkpoints.save(4, state, force=True)
  checkpoints.save(10, state)  # The last step is always saved.
  assert saved == [([1.0, 2.0], False), ([3.0], True), ([], True)]


def test_preemption_is_asked_at_the_start_and_after_every_step():
  manager = FakeManager(preempted_at=6)
  stop = periodic.StopRequest(manager, start_step=4)
  try:
    assert [stop.requested(step) for step in (5, 6)] == [False, True]
    assert manager.preemption_asks == [4, 5, 6]
    assert stop.stopped(6) == {"stopped_by": "a preemption notice", "step": 6}
  finally:
    stop.close()
