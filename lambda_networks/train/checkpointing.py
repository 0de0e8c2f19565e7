"""Orbax checkpoints of the TrainState, with a record of the model that made them.

Each step directory holds three items: 'state' (the TrainState pytree, saved
asynchronously), 'meta' (JSON: model name, overrides, classes and every
parameter's shape) and 'checksums' (JSON: a SHA-256 of every array's bytes,
dtype and shape). Their handlers live in each manager's own handler registry
(`create_manager`): importing this module changes none of Orbax's global
registries. Saving does not stall training: the training thread only
starts one host copy of the state (Orbax makes its own for the write), and a
background thread hashes it while training goes on; Orbax writes the
checksums as part of the same save, so `wait_until_finished` waits for them
too. Orbax writes into a temporary directory and renames it only when every
item (checksums included) is complete, so a half-written checkpoint (a
killed run) is never listed, and restoring picks the newest complete one.
Before any array is read, 'meta' is compared with the model being trained,
so a checkpoint from another model fails with an error that lists the
differences; after reading, every array is checked against its checksum.
`restore_newest` falls back from a damaged checkpoint (unreadable or
failing its checksums) to the next newest, renaming the damaged one to
`<step>.corrupt` (never deleting it). A checkpoint saved before the EMA kept
batch-norm statistics (`TrainState.ema_batch_stats`) still restores: its
EMA statistics start as a copy of its raw ones, with a warning.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import logging as python_logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from lambda_networks.errors import UserError
from lambda_networks.train.state import ModelParts, TrainState, param_shapes


class CheckpointMismatchError(UserError):
  """A checkpoint does not belong to the model being built."""


class CorruptCheckpointError(ValueError):
  """A checkpoint's arrays differ from the checksums recorded when it was saved."""


CORRUPT_SUFFIX = ".corrupt"
# The JSON file of the 'checksums' item: JsonCheckpointHandler's name, as
# checkpoints saved before the checksums were hashed in the background have it.
CHECKSUMS_FILE = "metadata"

# Hashes saved states one at a time, off the training thread (hashlib
# releases the GIL on large buffers).
_HASHER = concurrent.futures.ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="checkpoint-checksums")


class ChecksumsHandler(ocp.handlers.JsonCheckpointHandler):
  """Writes the 'checksums' item once its background hash is done.

  Orbax waits for the returned commit future with the step's other writes,
  before it renames the step directory into place: a step never appears
  without its checksums, and a crash before they are written leaves only a
  temporary directory, never a good checkpoint that looks damaged.
  """

  async def async_save(self, directory: epath.Path, item: Any = None,
                       args: "ChecksumsSave | None" = None
                       ) -> list[ocp.future.Future]:
    del item
    pending = args.checksums

    async def write() -> None:
      checksums = await asyncio.wrap_future(pending)
      if ocp.multihost.is_primary_host(self._primary_host):
        (directory / CHECKSUMS_FILE).write_text(json.dumps(checksums))

    return [ocp.future.CommitFutureAwaitingContractedSignals(
        write(), name="checksums_save")]


@dataclasses.dataclass
class ChecksumsSave(ocp.args.CheckpointArgs):
  """The 'checksums' item: a future of `array_checksums` (None off process 0)."""
  checksums: concurrent.futures.Future


@dataclasses.dataclass
class ChecksumsRestore(ocp.args.CheckpointArgs):
  """Orbax wants one per handler; `restore` reads the JSON file directly."""


def checkpoint_dir(workdir: str) -> epath.Path:
  return epath.Path(workdir) / "checkpoints"


def _array_types() -> ocp.type_handlers.TypeHandlerRegistry:
  """Orbax's standard leaf types, with one change for the 'state' item only.

  Replicated arrays are written in slices by several replicas only when the
  slices are big; slicing small arrays costs a compiled program per shape.
  Orbax's global registry is left as it is.
  """
  return ocp.type_handlers.create_type_handler_registry(*[
      (kind, ocp.type_handlers.ArrayHandler(
          min_slice_bytes_for_replica_parallel=1 << 20)
       if kind is jax.Array else ocp.type_handlers.get_type_handler(kind))
      for kind in ocp.type_handlers.supported_types()])


def _item_handlers() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
  """The three items' handlers, for one manager (nothing registered globally)."""
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  for item, handler, save_args, restore_args in (
      ("state", ocp.PyTreeCheckpointHandler(type_handler_registry=_array_types()),
       ocp.args.PyTreeSave, ocp.args.PyTreeRestore),
      ("meta", ocp.JsonCheckpointHandler(), ocp.args.JsonSave,
       ocp.args.JsonRestore),
      ("checksums", ChecksumsHandler(), ChecksumsSave, ChecksumsRestore)):
    registry.add(item, save_args, handler)
    registry.add(item, restore_args, handler)
  return registry


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
  _quiet_preemption_notices()
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               handler_registry=_item_handlers())


class _PreemptionNoticesAsInfo(python_logging.Filter):
  """Orbax's "Reached preemption sync point" as INFO, not WARNING.

  Orbax logs it each time `reached_preemption` is asked after the sync point
  (3 or 4 times per process); the trainer's own line says it once. Other
  records, Orbax's included, pass unchanged.
  """

  def filter(self, record: python_logging.LogRecord) -> bool:
    if (record.module == "multihost" and record.levelno == python_logging.WARNING
        and "Reached preemption sync point" in str(record.msg)):
      record.levelno, record.levelname = python_logging.INFO, "INFO"
      return logging.get_absl_logger().isEnabledFor(python_logging.INFO)
    return True


def _quiet_preemption_notices() -> None:
  """Adds the filter to absl's logger (Orbax logs through absl), once."""
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _PreemptionNoticesAsInfo) for f in logger.filters):
    logger.addFilter(_PreemptionNoticesAsInfo())


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
  """Saves (asynchronously) if the interval says so or `force`.

  Returns once the state is copied to the host (by Orbax for the write, by
  `host_arrays` for the checksums); the next step may then overwrite or
  donate the state's buffers. Process 0 hashes its copy in the background.
  """
  step = int(jax.device_get(state.step))
  if not (force or manager.should_save(step)):
    return False
  tree = state.to_dict()
  primary = jax.process_index() == 0
  arrays = host_arrays(tree, replicated=primary)
  checksums = (_HASHER.submit(_digests, arrays) if primary
               else _done(None))  # Only process 0 writes the checksums.
  return manager.save(
      step, args=ocp.args.Composite(
          state=ocp.args.PyTreeSave(tree),
          meta=ocp.args.JsonSave(record),
          checksums=ChecksumsSave(checksums)),
      force=force)


def _done(value: Any) -> concurrent.futures.Future:
  done = concurrent.futures.Future()
  done.set_result(value)
  return done


def host_arrays(tree: Any, *, replicated: bool = True) -> dict[str, np.ndarray]:
  """'path/to/array' -> its full value on this host, copied once.

  Every transfer starts before any is waited for. An array sharded over
  processes is gathered (a collective: every process must call this, in the
  same order, on the training thread); `replicated=False` skips the others
  (processes that hash nothing). On CPU the copies may be views of the
  device buffers; JAX then does not donate those buffers to the next step.
  """
  local, gathered = {}, {}
  for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = _array_name(path)
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
      if not value.is_fully_replicated:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        gathered[name] = multihost_utils.process_allgather(value, tiled=True)
      elif replicated:
        local[name] = value.addressable_data(0)
    elif replicated:
      local[name] = value
  local = jax.device_get(local)
  return {name: np.asarray(local[name] if name in local else gathered[name])
          for name in [*local, *gathered]}


def _array_name(path: tuple[Any, ...]) -> str:
  return "/".join(str(getattr(key, "key", getattr(key, "idx", getattr(
      key, "name", key)))) for key in path)


def _digest(array: np.ndarray) -> str:
  """SHA-256 of an array's dtype, shape and bytes (hashed in place, no copy)."""
  array = np.ascontiguousarray(array)
  digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
  digest.update(array.reshape(-1).view(np.uint8))
  return digest.hexdigest()


def _digests(arrays: dict[str, np.ndarray]) -> dict[str, str]:
  return {name: _digest(array) for name, array in arrays.items()}


def array_checksums(tree: Any) -> dict[str, str]:
  """'path/to/array' -> SHA-256 of its dtype, shape and bytes."""
  return _digests(host_arrays(tree))


def verify_checksums(saved: dict[str, str], tree: Any, where: str) -> None:
  """Raises CorruptCheckpointError naming the arrays whose bytes changed."""
  actual = array_checksums(tree)
  bad = sorted(name for name in set(saved) | set(actual)
               if saved.get(name) != actual.get(name))
  if bad:
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    raise CorruptCheckpointError(
        f"{len(bad)} array(s) of {where} differ from their checksums ({shown})")


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


def check_saved_record(manager: ocp.CheckpointManager, step: int,
                       record: dict[str, Any]) -> None:
  """Reads only `step`'s record; raises CheckpointMismatchError if it differs."""
  saved = manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore()))["meta"]
  check_record(saved, record, str(manager.directory / str(step)))


def restore(manager: ocp.CheckpointManager, target: TrainState,
            record: dict[str, Any], step: int | None = None) -> TrainState:
  """Restores `step` (default: the newest complete one) into target's shardings.

  A state saved without `ema_batch_stats` (older versions) is read in its own
  tree and given EMA statistics copied from its raw ones.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise UserError(f"No checkpoint in {manager.directory}; train first, or "
                    "pass the --workdir of a run that saved one.")
  if step not in manager.all_steps():
    raise UserError(
        f"No checkpoint for step {step} in {manager.directory}; saved steps: "
        f"{list(manager.all_steps())}.")
  where = str(manager.directory / str(step))
  check_saved_record(manager, step, record)
  tree = target.to_dict()
  # Saved before the EMA kept batch-norm statistics: not in the saved tree.
  saved_fields = ocp.StandardCheckpointHandler().metadata(
      manager.directory / str(step) / "state")
  without_ema_stats = "ema_batch_stats" not in saved_fields
  if without_ema_stats:
    del tree["ema_batch_stats"]
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      tree)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(
          abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(
              abstract))))["state"]
  checksums = manager.directory / str(step) / "checksums"
  if checksums.exists():  # Read directly: older checkpoints' JSON item too.
    verify_checksums(json.loads((checksums / CHECKSUMS_FILE).read_text()),
                     restored, where)
  else:
    logging.warning("%s has no checksums (saved by an older version); "
                    "restored without verifying.", where)
  if without_ema_stats:
    restored["ema_batch_stats"] = _ema_stats_from_raw(restored, target, where)
  logging.info("Restored checkpoint %s", where)
  return TrainState.from_dict(restored)


def _ema_stats_from_raw(restored: dict[str, Any], target: TrainState,
                        where: str) -> dict[str, Any]:
  """EMA batch-norm statistics for a checkpoint saved without them: a copy
  of its raw statistics (on the target's shardings), with a warning."""
  if not (restored["ema_params"] and restored["batch_stats"]):
    return {}  # No EMA, or a model without batch norm: nothing to average.
  logging.warning(
      "%s was saved before the EMA kept batch-norm statistics; they start "
      "as a copy of its raw statistics (its EMA weights are evaluated with "
      "those until the average catches up).", where)
  shardings = jax.tree.map(lambda x: x.sharding, target.ema_batch_stats)
  return jax.jit(lambda stats: jax.tree.map(jnp.copy, stats),
                 out_shardings=shardings)(restored["batch_stats"])



def restore_newest(manager: ocp.CheckpointManager, target: TrainState,
                   record: dict[str, Any], *, set_aside: bool = True,
                   report: Callable[[str], None] = print) -> TrainState:
  """Restores the newest checkpoint that reads and verifies.

  A damaged one is reported in one line and, with `set_aside`, renamed to
  `<step>.corrupt`; the next newest is tried. A checkpoint of another model
  (CheckpointMismatchError) is an error, not damage. Raises UserError naming
  the directory when none is usable.
  """
  if not manager.all_steps():
    raise UserError(f"No checkpoint in {manager.directory}; train first, or "
                    "pass the --workdir of a run that saved one.")
  damaged = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return restore(manager, target, record, step)
    except (CheckpointMismatchError, UserError):
      raise
    except Exception as error:  # pylint: disable=broad-exception-caught
      # Reading damaged files raises anything from ValueError (TensorStore,
      # JSON) to a bare Exception (Orbax); the innermost cause says most.
      reason = _root_cause(error)
      where = manager.directory / str(step)
      action = "trying the previous one"
      if set_aside:
        aside = _set_aside(where)
        manager.reload()
        action = f"renamed it to {aside.name}, {action}"
      report(f"Checkpoint {where} is damaged ({reason}); {action}.")
      damaged.append(step)
  raise UserError(
      f"No usable checkpoint in {manager.directory}: steps {damaged} are "
      "damaged" + (f" (renamed to <step>{CORRUPT_SUFFIX})" if set_aside else "")
      + ". Restore them from a backup, or use a new --workdir to start over.")


def restore_step(manager: ocp.CheckpointManager, target: TrainState,
                 record: dict[str, Any], step: int) -> TrainState:
  """Restores exactly `step`; a damaged one is a UserError, not a traceback."""
  try:
    return restore(manager, target, record, step)
  except UserError:
    raise
  except Exception as error:  # pylint: disable=broad-exception-caught
    raise UserError(
        f"Checkpoint {manager.directory / str(step)} is damaged "
        f"({_root_cause(error)}); choose another step of "
        f"{list(manager.all_steps())}.") from error


def _root_cause(error: BaseException, limit: int = 300) -> str:
  while error.__cause__ is not None:
    error = error.__cause__
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _set_aside(path: epath.Path) -> epath.Path:
  """Renames a damaged step directory to `<step>.corrupt` (or .corrupt.N).

  Process 0 renames; with several processes all wait for it.
  """
  aside = path.parent / f"{path.name}{CORRUPT_SUFFIX}"
  number = 1
  while aside.exists():
    aside = path.parent / f"{path.name}{CORRUPT_SUFFIX}.{number}"
    number += 1
  if jax.process_index() == 0:
    path.rename(aside)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"set aside {path}")
  return aside


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
