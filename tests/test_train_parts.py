"""Unit tests of the training pieces: schedule, weight decay, EMA, loss, mesh."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import default
from lambda_networks.data import HostShard
from lambda_networks.train import checkpointing
from lambda_networks.train import distributed
from lambda_networks.train import optimizer
from lambda_networks.train import steps


def _config(**changes) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.update(changes)
  return config


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
  config = _config(base_learning_rate=0.1, global_batch_size=1024, warmup_epochs=2.0)
  schedule = optimizer.learning_rate_schedule(config, steps_per_epoch=10,
                                              total_steps=100)
  peak = 0.1 * 1024 / 256
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(10)), peak / 2, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(20)), peak, rtol=1e-6)
  middle = 20 + (100 - 20) // 2
  np.testing.assert_allclose(float(schedule(middle)), peak / 2, rtol=1e-5)
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)


def test_weight_decay_skips_batch_norm_and_biases():
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 2))},
            "bn": {"scale": jnp.ones((2,)), "bias": jnp.ones((2,))}}
  config = _config(weight_decay=0.5, momentum=0.0, base_learning_rate=256.0,
                   global_batch_size=1)  # lr 1.
  tx = optimizer.create_optimizer(config, optax.constant_schedule(1.0))
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.5)
  np.testing.assert_allclose(updates["bn"]["scale"], 0.0)
  np.testing.assert_allclose(updates["bn"]["bias"], 0.0)


def test_nesterov_changes_the_update():
  params = {"w": jnp.ones((2, 2))}
  grads = {"w": jnp.full((2, 2), 0.1)}
  results = []
  for nesterov in (False, True):
    config = _config(weight_decay=0.0, nesterov=nesterov)
    tx = optimizer.create_optimizer(config, optax.constant_schedule(1.0))
    updates, _ = tx.update(grads, tx.init(params), params)
    results.append(float(updates["w"][0, 0]))
  np.testing.assert_allclose(results, [-0.1, -0.19], rtol=1e-6)


def test_ema_follows_weights_early_then_averages_slowly():
  ema = {"w": jnp.zeros(())}
  new = {"w": jnp.ones(())}
  early = optimizer.update_ema(ema, new, jnp.array(0), 0.9999)
  np.testing.assert_allclose(early["w"], 0.9, rtol=1e-6)  # decay 1/10.
  late = optimizer.update_ema(ema, new, jnp.array(10**7), 0.9999)
  np.testing.assert_allclose(late["w"], 1e-4, rtol=1e-3)


def test_label_smoothing_cross_entropy():
  logits = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
  plain = steps.cross_entropy(logits, jnp.array([0]), 0.0)
  np.testing.assert_allclose(plain, -np.log(0.7), rtol=1e-6)
  smooth = steps.cross_entropy(logits, jnp.array([0]), 0.3)
  targets = np.array([0.8, 0.1, 0.1])
  np.testing.assert_allclose(smooth, -(targets * np.log([0.7, 0.2, 0.1])).sum(),
                             rtol=1e-6)


def test_mesh_and_batch_errors_name_the_field():
  mesh = distributed.create_mesh((-1,))
  assert mesh.axis_names == ("data",)
  with pytest.raises(ValueError, match="config.mesh_shape"):
    distributed.create_mesh((jax.device_count() + 1,))
  with pytest.raises(ValueError, match="config.global_batch_size=0"):
    distributed.check_batch_size(0, mesh, "global_batch_size")
  with pytest.raises(ValueError, match="config.global_batch_size=9 must be divisible"):
    HostShard(0, 2).local_batch_size(9, "global_batch_size")


def test_checkpoint_record_mismatch_lists_the_differences():
  saved = {"model": "resnet26", "num_classes": 10, "has_ema": False,
           "overrides": {}, "param_shapes": {"head/kernel": [64, 10]},
           "batch_stat_shapes": {}}
  expected = dict(saved, param_shapes={"head/kernel": [64, 1000]}, num_classes=1000)
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"num_classes: checkpoint 10, now 1000.*head/kernel"):
    checkpointing.check_record(saved, expected, "/tmp/x")
  checkpointing.check_record(saved, dict(saved), "/tmp/x")  # Same: no error.


def test_warmup_longer_than_a_fifth_of_the_run_is_shortened():
  config = _config(base_learning_rate=0.1, global_batch_size=256, warmup_epochs=5.0)
  # 5 epochs of 10 steps asked, in a 100-step run: 20 steps (a fifth) kept.
  assert optimizer.warmup_length(config, 10, 100) == 20
  schedule = optimizer.learning_rate_schedule(config, steps_per_epoch=10,
                                              total_steps=100)
  np.testing.assert_allclose(float(schedule(20)), 0.1, rtol=1e-6)  # The peak.
  assert float(schedule(99)) < 0.01  # Decays by the end.
  assert optimizer.warmup_length(config, 10, 1000) == 50  # Long runs: as asked.


def test_warmup_steps_override_warmup_epochs(caplog):
  config = _config(base_learning_rate=0.1, global_batch_size=256,
                   warmup_epochs=5.0, warmup_steps=30)
  assert optimizer.warmup_length(config, 10, 1000) == 30  # Not 5 epochs' 50.
  schedule = optimizer.learning_rate_schedule(config, steps_per_epoch=10,
                                              total_steps=1000)
  np.testing.assert_allclose(float(schedule(15)), 0.05, rtol=1e-6)  # Halfway.
  np.testing.assert_allclose(float(schedule(30)), 0.1, rtol=1e-6)  # The peak.
  with caplog.at_level("WARNING"):
    assert optimizer.warmup_length(config, 10, 100) == 20  # A fifth of 100.
  assert "config.warmup_steps=30 is 30 of the run's 100 steps" in caplog.text
  assert "Set warmup_steps to at most 20" in caplog.text


def test_dtype_auto_is_float32_on_cpu():
  from lambda_networks.train import state  # pylint: disable=g-import-not-at-top
  assert jax.default_backend() == "cpu"
  assert state.computation_dtype("auto") == "float32"
  assert state.computation_dtype("bfloat16") == "bfloat16"
  assert default.get_config().dtype == "auto"


def _traces(directory) -> list:
  return list(directory.rglob("*.xplane.pb"))


@pytest.mark.parametrize("last_step, stopped_by_profile", [(7, True), (4, False)])
def test_profile_traces_the_configured_steps(tmp_path, last_step, stopped_by_profile):
  from lambda_networks.train import periodic  # pylint: disable=g-import-not-at-top
  config = _config(profile_start_step=2, profile_num_steps=3)
  profile = periodic.Profiler(config, str(tmp_path))
  for step in range(last_step):  # As the loop: called before each step.
    profile(step)
    jnp.ones(3).block_until_ready()
  # The trace covers steps 2..4; a run that ends inside it leaves it open.
  assert bool(_traces(tmp_path / "profile")) == stopped_by_profile
  profile.close()  # The loop's `finally`.
  assert len(_traces(tmp_path / "profile")) == 1
