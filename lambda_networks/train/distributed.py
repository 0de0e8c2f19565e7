"""Processes, devices and shardings: the ('data',) mesh and global batches."""

from __future__ import annotations

import math

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Starts jax.distributed when the run spans several processes.

  Args:
    mode: 'auto' initialises when a coordinator is given or JAX detects a
      cluster of several processes (a TPU pod slice, a SLURM job step with
      several tasks, Open MPI...); 'on' always initialises (JAX detects the
      cluster); 'off' never.
    coordinator_address: 'host:port' of process 0, for explicit set-ups.
    num_processes: total processes, with coordinator_address.
    process_id: this process's index, with coordinator_address.
  """
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"--distributed must be auto, on or off, got {mode!r}.")
  explicit = coordinator_address is not None
  if explicit and (num_processes is None or process_id is None):
    raise ValueError("--coordinator_address needs --num_processes and "
                     "--process_id too.")
  if mode == "off" or (mode == "auto" and not explicit
                       and _detected_process_count() < 2):
    return
  if explicit:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id)
  else:
    jax.distributed.initialize()
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def _detected_process_count() -> int:
  """The processes of the cluster `jax.distributed.initialize()` would detect
  (1 if none), found by the same JAX code with the other values left as given.

  Ours because 'auto' must decide whether to start at all: initialize()
  without a cluster raises, and JAX offers no public way to ask first.
  """
  from jax._src import clusters  # pylint: disable=g-import-not-at-top
  _, processes, _, _ = clusters.ClusterEnv.auto_detect_unset_distributed_params(
      coordinator_address="unused", num_processes=None, process_id=0,
      local_device_ids=(), cluster_detection_method=None,
      initialization_timeout=None)
  return processes or 1


def create_mesh(mesh_shape: tuple[int, ...]) -> Mesh:
  """A ('data',) mesh over all devices; mesh_shape may use -1 for 'the rest'.

  `jax.make_mesh` orders the devices (a ring on TPUs), with the axis 'Auto'
  (shardings propagated by XLA, as the steps expect). The checks are ours:
  make_mesh would quietly use fewer devices than there are.
  """
  devices = jax.devices()
  shape = tuple(int(size) for size in mesh_shape)
  if len(shape) != 1:
    raise ValueError(
        f"config.mesh_shape={shape} must have one entry (the '{DATA_AXIS}' "
        "axis); model parallelism is not supported. Use (-1,).")
  if shape == (-1,):
    shape = (len(devices),)
  if math.prod(shape) != len(devices):
    raise ValueError(
        f"config.mesh_shape={tuple(mesh_shape)} needs {math.prod(shape)} "
        f"devices but {len(devices)} are available; use (-1,) for all.")
  return jax.make_mesh(shape, (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_batch_size: int, mesh: Mesh, field: str) -> None:
  """The global batch must split evenly over devices (and so over hosts)."""
  devices = mesh.devices.size
  if global_batch_size < 1 or global_batch_size % devices:
    raise ValueError(
        f"config.{field}={global_batch_size} is not divisible by the "
        f"{devices} devices of the mesh; use a multiple of {devices}, e.g. "
        f"{max(1, round(global_batch_size / devices)) * devices}.")


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles host-local numpy batches into batch-sharded global arrays."""
  sharding = batch_sharding(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, value)
          for key, value in local_batch.items()}
