"""Orbax checkpoints of the TrainState, with a record of the model that made them.

Each step directory holds two items: 'state' (the TrainState pytree, saved
asynchronously) and 'meta' (JSON: model name, overrides, classes and every
parameter's shape). Orbax writes into a temporary directory and renames it
only when complete, so a half-written checkpoint (a killed run) is never
listed, and restoring picks the newest complete one. Before any array is
read, 'meta' is compared with the model being trained, so a checkpoint from
another model fails with an error that lists the differences.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from lambda_networks.train.state import ModelParts, TrainState, param_shapes



def _register_array_handler() -> None:
  """Replicated arrays are written in slices by several replicas only when the
  slices are big; slicing small arrays costs a compiled program per shape."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # Orbax warns about any override.
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array,
        ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=1 << 20),
        override=True)
  finally:
    logging.set_verbosity(verbosity)


_register_array_handler()


class CheckpointMismatchError(ValueError):
  """A checkpoint does not belong to the model being built."""


def checkpoint_dir(workdir: str) -> epath.Path:
  return epath.Path(workdir) / "checkpoints"


def create_manager(workdir: str, config: ml_collections.ConfigDict, *,
                   read_only: bool = False) -> ocp.CheckpointManager:
  """A manager saving every checkpoint_every_steps, keeping the newest keep_checkpoints
  and every keep_checkpoint_period-th step."""
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=0 if read_only else max(1, config.checkpoint_every_steps),
      max_to_keep=None if read_only else config.keep_checkpoints,
      keep_period=config.keep_checkpoint_period or None,
      create=not read_only,
      read_only=read_only,
      enable_async_checkpointing=config.async_checkpointing,
      cleanup_tmp_directories=not read_only,
  )
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=("state", "meta"))


def model_record(parts: ModelParts, state: TrainState) -> dict[str, Any]:
  return {
      "model": parts.name,
      "overrides": {key: str(value) for key, value in sorted(parts.overrides.items())},
      "num_classes": parts.num_classes,
      "param_shapes": param_shapes(state.params),
      "batch_stat_shapes": param_shapes(state.batch_stats),
      "has_ema": bool(state.ema_params),
  }


def save(manager: ocp.CheckpointManager, state: TrainState,
         record: dict[str, Any], *, force: bool = False) -> bool:
  """Saves (asynchronously) if the interval says so or `force`."""
  step = int(jax.device_get(state.step))
  return manager.save(
      step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state.to_dict()),
          meta=ocp.args.JsonSave(record)),
      force=force)


def check_record(saved: dict[str, Any], expected: dict[str, Any],
                 where: str) -> None:
  """Raises CheckpointMismatchError naming what differs."""
  problems = []
  for key in ("model", "num_classes", "has_ema"):
    if saved.get(key) != expected[key]:
      problems.append(f"{key}: checkpoint {saved.get(key)!r}, now {expected[key]!r}")
  for key in ("param_shapes", "batch_stat_shapes"):
    old, new = saved.get(key, {}), expected[key]
    for name in sorted(set(old) | set(new)):
      if old.get(name) != new.get(name):
        problems.append(f"{name}: checkpoint {old.get(name)}, now {new.get(name)}")
  if problems:
    shown = "; ".join(problems[:8])
    more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
    raise CheckpointMismatchError(
        f"The checkpoint in {where} was made by a different model or shape "
        f"({saved.get('model')!r} with overrides {saved.get('overrides')}): "
        f"{shown}{more}. Use a new --workdir for this model, or the config "
        "that made the checkpoint.")


def restore(manager: ocp.CheckpointManager, target: TrainState,
            record: dict[str, Any], step: int | None = None) -> TrainState:
  """Restores `step` (default: the newest complete one) into target's shardings."""
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint in {manager.directory}.")
  if step not in manager.all_steps():
    raise FileNotFoundError(
        f"No checkpoint for step {step} in {manager.directory}; saved steps: "
        f"{list(manager.all_steps())}.")
  where = str(manager.directory / str(step))
  saved = manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore()))["meta"]
  check_record(saved, record, where)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      target.to_dict())
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract)))["state"]
  logging.info("Restored checkpoint %s", where)
  return TrainState.from_dict(restored)


def load_arrays(workdir: str, step: int | None = None) -> dict[str, Any]:
  """A checkpoint's TrainState as a plain dict of arrays on one local device.

  Needs neither the model nor the devices that saved it: for inspecting,
  comparing or exporting weights.
  """
  directory = checkpoint_dir(workdir)
  steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
  if not steps:
    raise FileNotFoundError(f"No complete checkpoint in {directory}.")
  step = steps[-1] if step is None else step
  checkpointer = ocp.StandardCheckpointer()
  path = directory / str(step) / "state"
  tree = checkpointer.metadata(path).item_metadata.tree
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
  return jax.device_get(checkpointer.restore(path, target))
