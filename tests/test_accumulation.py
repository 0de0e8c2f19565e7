"""Gradient accumulation, batch-norm groups and remat (steps, models, checks).

One in-process train step each, on a tiny lambda ResNet with batch norm in
every block and in the lambda layers: accumulation over micro-batches must
equal one pass with batch-norm groups of the micro-batch size, and remat
must change memory, not results.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tiny_config
from lambda_networks import data
from lambda_networks.benchmarks import compiled_steps as benchmark_steps
from lambda_networks.errors import UserError
from lambda_networks.train import config_checks
from lambda_networks.train import optimizer
from lambda_networks.train import state as state_lib
from lambda_networks.train import steps

IMAGE_SIZE = 16
INFO = data.DatasetInfo(name="test", num_classes=5,
                        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                        num_train_examples=160, num_eval_examples=16)


def _config(**changes):
  config = tiny_config.get_config()
  config.model_overrides.stage_mixers = "CL"  # Conv and lambda batch norms.
  config.dropout_rate = 0.0
  config.stochastic_depth_rate = 0.0
  config.ema_decay = 0.0
  config.update(changes)
  return config


def _batch(size: int = 16) -> dict:
  images = jax.random.normal(jax.random.key(1), (size, IMAGE_SIZE, IMAGE_SIZE, 3))
  # Groups with different statistics, so that grouping matters.
  images = images * (1.0 + jnp.arange(size) % 3)[:, None, None, None]
  labels = jnp.arange(size) % INFO.num_classes
  return {"image": images, "label": labels}


def _optimizer(config):
  schedule = optimizer.learning_rate_schedule(config, 10, 10)
  return schedule, optimizer.create_optimizer(config, schedule)


@functools.cache
def _initial_state(dropout_rate: float, stochastic_depth_rate: float):
  """(parts, state) of the config with these drop rates, initialised once."""
  config = _config(dropout_rate=dropout_rate,
                   stochastic_depth_rate=stochastic_depth_rate)
  return state_lib.create_train_state(config, INFO, _optimizer(config)[1])


def _one_step(config, batch):
  """One jitted train step of `config` from the shared initial state: groups,
  accumulation and remat change the model's graph, not its parameters,
  statistics or optimiser state (initialising costs as much as compiling)."""
  schedule, tx = _optimizer(config)
  parts, state = _initial_state(config.dropout_rate,
                                config.stochastic_depth_rate)
  model = nnx.eval_shape(lambda: state_lib.build_model(config, INFO, config.seed))
  parts = dataclasses.replace(
      parts, graphdef=nnx.split(model, nnx.Param, nnx.BatchStat, ...)[0],
      overrides=state_lib.model_overrides(config, INFO))
  step = jax.jit(steps.make_train_step(parts, tx, schedule, config))
  return step(state, batch)


def _assert_close(a, b, **tolerance):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tolerance), a, b)


def test_accumulation_equals_batch_norm_groups_of_the_micro_batch():
  batch = _batch(16)
  grouped, grouped_metrics = _one_step(_config(batch_norm_group_size=8), batch)
  accumulated, accumulated_metrics = _one_step(
      _config(gradient_accumulation_steps=2), batch)
  _assert_close(accumulated.batch_stats, grouped.batch_stats, rtol=1e-5,
                atol=1e-6)
  _assert_close(accumulated.params, grouped.params, rtol=1e-4, atol=1e-6)
  for name in ("loss", "accuracy", "grad_norm"):
    np.testing.assert_allclose(accumulated_metrics[name], grouped_metrics[name],
                               rtol=1e-5)
  # Groups matter: statistics over the whole batch differ.
  whole, _ = _one_step(_config(), batch)
  variances = [np.abs(x - y).max() for x, y in zip(
      jax.tree.leaves(whole.batch_stats), jax.tree.leaves(grouped.batch_stats))]
  assert max(variances) > 1e-3


def test_micro_batches_keep_each_devices_examples_in_order():
  batch = {"x": jnp.arange(16)}
  split = steps.micro_batches(batch, 2, data_shards=2)["x"]
  # Device 0 holds 0..7, device 1 holds 8..15; micro-batch i takes chunk i
  # of each, so each device's share stays on it.
  np.testing.assert_array_equal(split, [[0, 1, 2, 3, 8, 9, 10, 11],
                                        [4, 5, 6, 7, 12, 13, 14, 15]])
  np.testing.assert_array_equal(
      steps.micro_batches(batch, 4)["x"], np.arange(16).reshape(4, 4))


def test_remat_block_gives_the_same_step():
  batch = _batch(8)
  changes = dict(stochastic_depth_rate=0.3, dropout_rate=0.2)  # Same masks too.
  plain, plain_metrics = _one_step(_config(**changes), batch)
  remat, remat_metrics = _one_step(_config(remat="block", **changes), batch)
  for name in ("loss", "grad_norm"):
    np.testing.assert_allclose(remat_metrics[name], plain_metrics[name],
                               rtol=1e-6)
  _assert_close(remat.params, plain.params, rtol=1e-5, atol=1e-7)
  _assert_close(remat.batch_stats, plain.batch_stats, rtol=1e-6, atol=1e-7)


def test_remat_block_lowers_the_planned_peak_memory():
  """XLA's memory plan (compile only) of a lambda ResNet train step: the
  tests' two-stage model, at a batch large enough that activations, not
  weights, fill the plan (the property needs no bigger model)."""
  config = tiny_config.get_config()
  peaks = {}
  for remat in ("none", "block"):
    row = benchmark_steps.measure(
        config.model, dict(config.model_overrides, remat=remat), image_size=32,
        batch_size=64, mode="train", memory_limit=None, num_classes=10,
        num_devices=1, compile_only=True)
    assert row["status"] == "compiled only", row
    peaks[remat] = row["peak_memory_mib"]
  assert peaks["block"] < 0.8 * peaks["none"], peaks


@pytest.mark.parametrize("changes,devices,message", [
    (dict(gradient_accumulation_steps=3), 1,
     "gradient_accumulation_steps=3 does not divide the per-device batch of 16"),
    (dict(gradient_accumulation_steps=4), 8,
     "gradient_accumulation_steps=4 does not divide the per-device batch of 2 "
     "(global_batch_size=16 over 8 devices)"),
    (dict(batch_norm_group_size=3), 2,
     "batch_norm_group_size=3 does not divide the per-device batch of 8"),
    (dict(batch_norm_group_size=16, gradient_accumulation_steps=2), 1,
     "batch_norm_group_size=16 does not divide the per-device micro-batch of 8"
     " (16 per device / gradient_accumulation_steps=2)"),
])
def test_splits_the_per_device_batch_cannot_take_are_refused(
    changes, devices, message):
  with pytest.raises(UserError) as error:
    config_checks.check_against_mesh(_config(**changes), devices)
  assert message in str(error.value)


def test_a_group_of_the_micro_batch_size_is_accepted():
  config_checks.check_against_mesh(
      _config(batch_norm_group_size=8, gradient_accumulation_steps=2), 1)
