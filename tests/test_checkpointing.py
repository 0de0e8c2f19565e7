"""Checksummed checkpoints: damaged steps are set aside, never deleted or trusted.

In-process, with a small hand-made TrainState (no model, no compile).
"""

import json
import threading

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lambda_networks.errors import UserError
from lambda_networks.train import checkpointing
from lambda_networks.train.state import TrainState, param_shapes


def _config():
  return ml_collections.ConfigDict(dict(
      checkpoint_every_steps=1, keep_checkpoints=5, keep_checkpoint_period=0,
      async_checkpointing=False))


def _state(step: int) -> TrainState:
  # Random (incompressible) values, so the kernel gets a data file of its own.
  kernel = np.random.default_rng(step).normal(size=(64, 64)).astype(np.float32)
  params = {"dense": {"kernel": jnp.asarray(kernel),
                      "bias": jnp.arange(4.0) + step}}
  return TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                    batch_stats={}, opt_state={}, ema_params={})


def _record(state: TrainState) -> dict:
  return {"model": "test", "overrides": {}, "num_classes": 4,
          "param_shapes": param_shapes(state.params), "batch_stat_shapes": {},
          "has_ema": False}


def _older_version_manager(tmp_path) -> ocp.CheckpointManager:
  """Saves as older versions did: Orbax's stock handlers for the three items."""
  return ocp.CheckpointManager(checkpointing.checkpoint_dir(str(tmp_path)),
                               item_names=("state", "meta", "checksums"))


@pytest.fixture
def saved(tmp_path):
  """Steps 1, 2 and 3 saved in tmp_path/checkpoints."""
  manager = checkpointing.create_manager(str(tmp_path), _config())
  for step in (1, 2, 3):
    assert checkpointing.save(manager, _state(step), _record(_state(step)))
  manager.wait_until_finished()
  return tmp_path, manager


def _largest_array_file(step_dir):
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()
           and p.parent.name == "d"]
  return max(files, key=lambda p: p.stat().st_size)


def test_newest_good_step_is_restored_bit_exact(saved):
  _, manager = saved
  lines = []
  restored = checkpointing.restore_newest(manager, _state(0), _record(_state(0)),
                                          report=lines.append)
  assert int(restored.step) == 3 and not lines
  np.testing.assert_array_equal(restored.params["dense"]["kernel"],
                                _state(3).params["dense"]["kernel"])


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage_metadata",
                                    "flip_bits_silently"])
def test_damaged_newest_step_falls_back_and_is_set_aside(saved, damage):
  workdir, manager = saved
  step_dir = workdir / "checkpoints" / "3"
  if damage == "truncate":
    victim = _largest_array_file(step_dir)
    victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
  elif damage == "delete":
    _largest_array_file(step_dir).unlink()
  elif damage == "garbage_metadata":
    (step_dir / "state" / "_METADATA").write_text("{not json")
  else:  # Valid files holding other values: only the checksums notice.
    other = _state(3)
    kernel = np.array(other.params["dense"]["kernel"])
    kernel.view(np.uint32)[2, 1] ^= 1
    other.params["dense"]["kernel"] = jnp.asarray(kernel)
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(step_dir / "state", other.to_dict(), force=True)
  lines = []
  restored = checkpointing.restore_newest(manager, _state(0), _record(_state(0)),
                                          report=lines.append)
  assert int(restored.step) == 2
  np.testing.assert_array_equal(restored.params["dense"]["kernel"],
                                _state(2).params["dense"]["kernel"])
  assert len(lines) == 1 and f"Checkpoint {step_dir} is damaged" in lines[0]
  assert "renamed it to 3.corrupt" in lines[0]
  if damage == "flip_bits_silently":
    assert "CorruptCheckpointError: 1 array(s)" in lines[0]
    assert "params/dense/kernel" in lines[0]
  assert not step_dir.exists() and (workdir / "checkpoints" / "3.corrupt").is_dir()
  assert manager.all_steps() == [1, 2]


def test_no_good_step_is_an_error_naming_the_directory(saved):
  workdir, manager = saved
  for step in (1, 2, 3):
    _largest_array_file(workdir / "checkpoints" / str(step)).unlink()
  with pytest.raises(UserError, match=f"No usable checkpoint in {workdir}/checkpoints: "
                     r"steps \[3, 2, 1\] are damaged"):
    checkpointing.restore_newest(manager, _state(0), _record(_state(0)),
                                 report=lambda line: None)
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [
      "1.corrupt", "2.corrupt", "3.corrupt"]


def test_read_only_restore_reports_but_renames_nothing(saved):
  workdir, _ = saved
  _largest_array_file(workdir / "checkpoints" / "3").unlink()
  reader = checkpointing.create_manager(str(workdir), _config(), read_only=True)
  lines = []
  restored = checkpointing.restore_newest(reader, _state(0), _record(_state(0)),
                                          set_aside=False, report=lines.append)
  assert int(restored.step) == 2 and "trying the previous one" in lines[0]
  assert (workdir / "checkpoints" / "3").is_dir()
  with pytest.raises(UserError, match="checkpoints/3 is damaged"):
    checkpointing.restore_step(reader, _state(0), _record(_state(0)), 3)


def test_another_models_checkpoint_is_refused_not_set_aside(saved):
  workdir, manager = saved
  other = _record(_state(0))
  other["model"] = "another"
  with pytest.raises(checkpointing.CheckpointMismatchError):
    checkpointing.restore_newest(manager, _state(0), other)
  assert (workdir / "checkpoints" / "3").is_dir()


def test_checksums_catch_a_single_flipped_bit():
  tree = {"params": {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4)},
          "step": np.int32(7)}
  saved = checkpointing.array_checksums(tree)
  assert set(saved) == {"params/kernel", "step"}
  checkpointing.verify_checksums(saved, tree, "here")  # Unchanged: passes.
  flipped = tree["params"]["kernel"].copy()
  flipped.view(np.uint32)[1, 2] ^= 1 << 3
  with pytest.raises(checkpointing.CorruptCheckpointError,
                     match="1 array.* of here differ from their checksums .params/kernel"):
    checkpointing.verify_checksums(saved, {**tree, "params": {"kernel": flipped}}, "here")
  # Same bytes in another dtype or shape are another array.
  assert (checkpointing.array_checksums({"a": np.zeros(4, np.float32)})["a"] !=
          checkpointing.array_checksums({"a": np.zeros(4, np.int32)})["a"])


def _async_config():
  config = _config()
  config.async_checkpointing = True
  return config


def test_save_hashes_in_the_background_from_a_copy_the_next_step_cannot_change(
    tmp_path):
  """The checksums are hashed after save() returns, while the next (donating)
  step overwrites the state; they must still be those of the saved arrays."""
  manager = checkpointing.create_manager(str(tmp_path), _async_config())
  state = _state(1)
  saved_values = jax.tree.map(np.array, state.to_dict())  # Copies.
  release = threading.Event()
  # Hashing waits for this (at most 60 s: a save() that waited fails, not hangs).
  blocker = checkpointing._HASHER.submit(release.wait, 60)
  try:
    assert checkpointing.save(manager, state, _record(state))
    # save() returned without the checksums: the step is not in place yet.
    assert not (tmp_path / "checkpoints" / "1").exists()
    next_step = jax.jit(lambda tree: jax.tree.map(lambda x: x * 3 + 1, tree),
                        donate_argnums=0)
    overwritten = jax.block_until_ready(next_step(state.to_dict()))
  finally:
    release.set()
  blocker.result()
  manager.wait_until_finished()  # Waits for the checksums too.
  assert np.all(np.asarray(overwritten["params"]["dense"]["kernel"]) !=
                saved_values["params"]["dense"]["kernel"])
  step_dir = tmp_path / "checkpoints" / "1"
  saved = json.loads((step_dir / "checksums" / checkpointing.CHECKSUMS_FILE)
                     .read_text())
  assert saved == checkpointing.array_checksums(saved_values)
  assert saved == checkpointing.array_checksums(
      checkpointing.load_arrays(str(tmp_path), 1))
  restored = checkpointing.restore_newest(manager, _state(0), _record(_state(0)))
  np.testing.assert_array_equal(restored.params["dense"]["kernel"],
                                saved_values["params"]["dense"]["kernel"])
  manager.close()


def test_checksums_of_older_checkpoints_still_verify(tmp_path):
  """Older versions saved the checksums as Orbax's JSON item, on the training
  thread: such steps restore verified, and silent damage is still found."""
  older = _older_version_manager(tmp_path)
  for step in (1, 2):
    state = _state(step)
    older.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state.to_dict()),
        meta=ocp.args.JsonSave(_record(state)),
        checksums=ocp.args.JsonSave(checkpointing.array_checksums(state.to_dict()))))
  older.close()
  manager = checkpointing.create_manager(str(tmp_path), _config())
  other = _state(2).to_dict()
  other["params"]["dense"]["bias"] = other["params"]["dense"]["bias"].at[1].add(1)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / "checkpoints" / "2" / "state", other, force=True)
  lines = []
  restored = checkpointing.restore_newest(manager, _state(0), _record(_state(0)),
                                          report=lines.append)
  assert int(restored.step) == 1
  assert len(lines) == 1 and "CorruptCheckpointError" in lines[0]
  assert "params/dense/bias" in lines[0]


def _state_with_ema(step: int) -> TrainState:
  """A state with batch-norm statistics and an EMA of both."""
  state = _state(step)
  stats = {"bn": {"mean": jnp.arange(3.0) + step, "var": jnp.ones(3) * step}}
  return state.replace(
      batch_stats=stats, ema_params=jax.tree.map(lambda x: x / 2, state.params),
      ema_batch_stats=jax.tree.map(lambda x: x / 3, stats))


def _ema_record(state: TrainState) -> dict:
  return {**_record(state), "has_ema": True,
          "batch_stat_shapes": param_shapes(state.batch_stats)}


def test_ema_statistics_are_saved_and_restored(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path), _config())
  state = _state_with_ema(2)
  checkpointing.save(manager, state, _ema_record(state))
  manager.wait_until_finished()
  restored = checkpointing.restore(manager, _state_with_ema(0),
                                   _ema_record(state))
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  assert float(restored.ema_batch_stats["bn"]["mean"][1]) == 1.0  # (1 + 2) / 3
  manager.close()


def test_checkpoint_without_ema_statistics_restores_them_from_the_raw_ones(
    tmp_path, caplog):
  """Saved before the EMA kept batch-norm statistics: the state restores,
  verified, with EMA statistics copied from the raw ones and a warning."""
  older = _older_version_manager(tmp_path)
  old = _state_with_ema(2).to_dict()
  del old["ema_batch_stats"]
  older.save(2, args=ocp.args.Composite(
      state=ocp.args.StandardSave(old),
      meta=ocp.args.JsonSave(_ema_record(_state_with_ema(2))),
      checksums=ocp.args.JsonSave(checkpointing.array_checksums(old))))
  older.close()
  manager = checkpointing.create_manager(str(tmp_path), _config())
  with caplog.at_level("WARNING"):
    restored = checkpointing.restore(manager, _state_with_ema(0),
                                     _ema_record(_state_with_ema(0)))
  jax.tree.map(np.testing.assert_array_equal, restored.ema_batch_stats,
               old["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, restored.ema_params,
               old["ema_params"])
  assert (restored.ema_batch_stats["bn"]["mean"].sharding
          == restored.batch_stats["bn"]["mean"].sharding)
  warnings = [r.getMessage() for r in caplog.records
              if "before the EMA kept batch-norm statistics" in r.getMessage()]
  assert len(warnings) == 1 and "\n" not in warnings[0]
  manager.close()


def test_our_array_handler_and_items_stay_out_of_orbax_globals(saved):
  """The replica-slicing option and the 'checksums' item are registered in
  our managers only: Orbax's global registries keep their defaults, after
  import and after saving and restoring."""
  _, manager = saved
  checkpointing.restore_newest(manager, _state(0), _record(_state(0)))
  global_handler = ocp.type_handlers.get_type_handler(jax.Array)
  # pylint: disable=protected-access
  assert global_handler._min_slice_bytes_for_replica_parallel is None
  ours = checkpointing._array_types().get(jax.Array)
  assert ours._min_slice_bytes_for_replica_parallel == 1 << 20
  # pylint: enable=protected-access
  for args in (checkpointing.ChecksumsSave, checkpointing.ChecksumsRestore):
    with pytest.raises(ValueError, match="Unable to find registered"):
      ocp.checkpoint_args.get_registered_handler_cls(args)
  manager.close()


@pytest.mark.parametrize("verbosity, shown", [("INFO", True), ("WARNING", False)])
def test_orbax_preemption_notices_are_info_and_ours_stay_warnings(
    tmp_path, caplog, verbosity, shown):
  """Orbax's 'Reached preemption sync point' (logged 3-4 times a process)
  becomes INFO, hidden at train.py's default WARNING verbosity."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from orbax.checkpoint._src.multihost import multihost  # pylint: disable=g-import-not-at-top
  checkpointing.create_manager(str(tmp_path), _config()).close()
  with caplog.at_level(verbosity, logger="absl"):
    multihost._maybe_log_reached_preemption(7, True)  # pylint: disable=protected-access
    logging.warning("Our own warning")
  levels = {r.getMessage().split("] ")[-1]: r.levelname for r in caplog.records}
  expected = {"Our own warning": "WARNING"}
  if shown:
    expected["Reached preemption sync point, step=7"] = "INFO"
  assert levels == expected
