"""The machine and software a benchmark ran on, recorded beside its results."""

from __future__ import annotations

import datetime
import math
import os
import platform
from importlib import metadata
from typing import Any

import flax
import jax
import optax

from lambda_networks.benchmarks import reporting


def describe() -> dict[str, Any]:
  """The device and software versions every result row carries."""
  return {
      "backend": jax.default_backend(),
      "device_kind": jax.devices()[0].device_kind,
      "device_count": jax.device_count(),
      "host_cpu": reporting.cpu_name(),
      "host_cpus": os.cpu_count(),
      "jax": jax.__version__,
      "jaxlib": metadata.version("jaxlib"),
      "flax": flax.__version__,
      "optax": optax.__version__,
      "python": platform.python_version(),
      "git_commit": reporting.git_commit(),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime(
          "%Y-%m-%dT%H:%MZ"),
  }


def summary(env: dict[str, Any]) -> str:
  """`describe()` in one line, for tables and logs."""
  return (f"{env['device_count']} × {env['device_kind']} ({env['backend']}; "
          f"host {env['host_cpu']}, {env['host_cpus']} CPUs), jax {env['jax']}, "
          f"flax {env['flax']}, commit {env['git_commit']}, {env['date']}")


def device_label(row: dict[str, Any]) -> str:
  """A result row's device: 'NVIDIA H100 80GB HBM3 ×1', or for CPUs the host
  processor and cores. Missing values are None or NaN (pandas rows)."""
  if row.get("backend") == "cpu" and not _missing(row.get("host_cpu")):
    cores = row.get("host_cpus")
    return f"CPU {row['host_cpu']} ({'?' if _missing(cores) else int(cores)} cores)"
  count = row.get("num_devices", row.get("device_count"))
  return f"{row.get('device_kind')}" + ("" if _missing(count) else f" ×{int(count)}")


def _missing(value: Any) -> bool:
  return value is None or (isinstance(value, float) and math.isnan(value))
