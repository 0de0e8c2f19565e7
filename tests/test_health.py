"""A diverged run names its newest healthy checkpoint; resuming past it warns.

In-process, on one device, the tiny model: 3 sane steps (checkpoint 3),
then the same workdir at a learning rate of 1e6 (a checkpoint every step)
until the loss is non-finite, then a rerun at the sane rate that resumes
from the newest checkpoint, which is finite but diverged.
"""

import json
import math
import os
import re

import numpy as np
import pytest

import tiny_config
from lambda_networks.errors import UserError
from lambda_networks.train import checkpointing
from lambda_networks.train import health
from lambda_networks.train import trainer

pytestmark = pytest.mark.slow  # About 30 s of compiling and training.


def _config(**changes):
  config = tiny_config.get_config()
  config.update(changes)
  return config


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
  """(workdir, the NonFiniteLossError, console of the rerun at a sane rate)."""
  workdir = tmp_path_factory.mktemp("diverged") / "run"
  trainer.train_and_evaluate(_config(num_train_steps=3), str(workdir))
  with pytest.raises(trainer.NonFiniteLossError) as error:
    trainer.train_and_evaluate(
        _config(base_learning_rate=1e6, checkpoint_every_steps=1), str(workdir))
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
  lines = []
  original_console = trainer.console
  trainer.console = lines.append
  try:  # Resumes from the newest (diverged) step and only evaluates it.
    trainer.train_and_evaluate(_config(num_train_steps=steps[-1]), str(workdir))
  finally:
    trainer.console = original_console
  return workdir, steps, error.value, lines


def test_each_checkpoint_records_its_loss_and_parameter_norm(diverged):
  workdir, steps, _, _ = diverged
  meta = json.loads((workdir / "checkpoints" / "3" / "meta" / "metadata")
                    .read_text())
  assert meta["health"]["steps"] == 2  # Steps 2 and 3 (Orbax saves step 1).
  assert 0.3 < meta["health"]["train_loss"] < 1.0  # Two classes: ln 2 = 0.69.
  params = checkpointing.load_arrays(str(workdir), 3)["params"]
  norm = math.sqrt(sum(float(np.sum(np.square(leaf, dtype=np.float64)))
                       for leaf in _leaves(params)))
  assert meta["health"]["param_norm"] == pytest.approx(norm, rel=1e-5)
  assert steps[:2] == [1, 3] and len(steps) >= 3


def test_non_finite_loss_names_the_newest_healthy_checkpoint(diverged):
  workdir, steps, error, _ = diverged
  message = str(error)
  assert isinstance(error, UserError) and "\n" not in message
  assert re.search(r"Non-finite loss or gradients at step \d+", message)
  directory = workdir / "checkpoints"
  assert "step 3: loss" in message and ", healthy;" in message
  assert "step 1: loss" in message
  for step in steps[2:]:  # Finite weights, but far from the initial ones.
    assert re.search(rf"step {step}: loss [^;]*, diverged \([^;]*parameter "
                     r"norm [^;]* × the initial", message), message
    assert f"mv {directory / str(step)} {directory / str(step)}.diverged" in message
  assert (f"The newest healthy one is step 3, {steps[-1] - 3} steps back; to "
          "resume from it, set the newer ones aside first") in message


def test_resuming_from_a_diverged_checkpoint_warns(diverged):
  _, steps, _, lines = diverged
  warnings = [line for line in lines if line.startswith("WARNING: checkpoint")]
  assert len(warnings) == 1, lines
  assert (f"WARNING: checkpoint step {steps[-1]}, which this run resumes from, "
          "looks diverged (") in warnings[0]
  assert "The newest healthy one is step 3" in warnings[0]


def test_the_suggested_commands_leave_the_healthy_checkpoint_newest(diverged):
  # Runs last among the tests of the diverged run: it changes its workdir.
  workdir, steps, error, _ = diverged
  moves = re.findall(r"mv (\S+) (\S+?)(?: &&|\.$)", str(error))
  assert len(moves) == len(steps) - 2
  for source, target in moves:
    os.rename(source, target)
  manager = checkpointing.create_manager(str(workdir), _config(), read_only=True)
  assert manager.latest_step() == 3
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == sorted(
      ["1", "3", *(f"{step}.diverged" for step in steps[2:])])


def test_health_bounds():
  baseline = health.Baseline(chance_loss=math.log(1000), initial_norm=50.0)
  assert baseline.problem(None) is None  # Older checkpoints: no record.
  assert baseline.problem({"train_loss": 6.9, "param_norm": 120.0}) is None
  assert baseline.problem({"train_loss": None, "param_norm": 120.0}) is None
  assert "training loss 14 > 2 × ln(classes) = 13.8" in baseline.problem(
      {"train_loss": 14.0, "param_norm": 120.0})
  assert "parameter norm 501 = 10 × the initial 50" in baseline.problem(
      {"train_loss": 1.0, "param_norm": 501.0})
  assert "training loss nan" in baseline.problem(
      {"train_loss": float("nan"), "param_norm": 1.0})


def _leaves(tree):
  if isinstance(tree, dict):
    for value in tree.values():
      yield from _leaves(value)
  else:
    yield np.asarray(tree)
