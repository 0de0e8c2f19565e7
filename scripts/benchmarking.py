"""The model benchmarks' shared flags, result row and environment (not a script).

`measure` compiles a model step (lambda_networks.benchmarks.steps), refuses
to run one that would not fit (out of memory is a status, not a crash),
times it and returns one CSV row: for benchmark_models.py and table4.py.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
from typing import Any, Sequence

import flax
import jax
import optax

from lambda_networks import ops
from lambda_networks.benchmarks import peak_flops
from lambda_networks.benchmarks import steps
from lambda_networks.benchmarks import reporting

GIB = 2**30
MIB = 2**20


def add_step_flags(parser: argparse.ArgumentParser, *, warmup: int,
                   repeats: int) -> None:
  """The flags of every model benchmark: dtype, timing, memory, output."""
  add = parser.add_argument
  add("--dtype", default="float32",
      help="computation dtype of the models, e.g. bfloat16")
  add("--num-devices", type=int,
      help="devices to split the batch over (default: all local)")
  add("--warmup", type=int, default=warmup, help="untimed steps")
  add("--repeats", type=int, default=repeats,
      help="timed steps (the median is reported)")
  add("--max-seconds", type=float, default=60.0,
      help="stop timing a point after this long (≥ 1 timed step)")
  add("--memory-limit-gib", type=float, help="report steps needing more as out "
      "of memory without running them (default: the device's memory; on CPU "
      "the available RAM)")
  add("--compile-only", action="store_true",
      help="compile and read XLA's memory plan, do not run")


def memory_limit(args: argparse.Namespace) -> int | None:
  if args.memory_limit_gib is not None:
    return int(args.memory_limit_gib * GIB)
  return steps.device_memory_bytes()


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
  """['query_depth=8', 'stage_mixers=CCLL'] -> {'query_depth': 8, ...}."""
  overrides = {}
  for item in items or ():
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"override {item!r} must look like field=value, "
                       "e.g. query_depth=8 or stage_depths=(1,1,1,1).")
    overrides[key.strip()] = reporting.parse_value(value.strip())
  return overrides


def format_overrides(overrides: dict[str, Any]) -> str:
  return " ".join(f"{key}={value}".replace(" ", "") for key, value in
                  overrides.items())


def environment() -> dict[str, Any]:
  """The device and software versions every result row carries."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
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


def pair_cost_note(platform_name: str | None = None) -> str:
  """Says whether method="auto" on this platform runs a measured cost table."""
  platform_name = platform_name or jax.default_backend()
  table = ops.pair_cost_table(platform_name)
  if table["calibrated"]:
    return f"auto: the measured {platform_name!r} cost table ({table['source']})."
  return (f"auto: the {platform_name!r} cost table is UNCALIBRATED "
          f"({table['source']}); calibrate it with `python -m "
          "scripts.benchmark_layers --out results/layers && python -m "
          "scripts.calibrate_pair_cost results/layers/benchmark_layers.csv`.")


def error_status(error: BaseException) -> str:
  """'oom', or the error in one line."""
  if steps.is_out_of_memory(error):
    return "oom"
  return f"error: {type(error).__name__}: {' '.join(str(error).split())}"[:200]


def measure(name: str, overrides: dict[str, Any], args: argparse.Namespace,
            limit: int | None, *, image_size: int, batch_size: int, mode: str,
            num_classes: int = 1000) -> dict[str, Any]:
  """One benchmark row, timed as add_step_flags's `args` say.

  A step whose XLA plan needs more than `limit` bytes per device is not run:
  out of memory, predicted or real, is a status.
  """
  devices = args.num_devices or jax.device_count()
  row: dict[str, Any] = dict(
      model=name, overrides=format_overrides(overrides), image_size=image_size,
      batch_size=batch_size, mode=mode, num_devices=devices, status="ok",
      memory_limit_mib=None if limit is None else round(limit / MIB),
      timed_steps=0)
  try:
    step = steps.build_step(name, overrides, image_size=image_size,
                            batch_size=batch_size, mode=mode,
                            num_devices=args.num_devices, num_classes=num_classes)
  except Exception as error:  # pylint: disable=broad-except
    return row | dict(status=error_status(error))
  step_flops = None if step.flops is None else step.flops * devices
  peak = peak_flops.peak_flops_per_device(jax.devices()[0].device_kind)
  row.update(params=step.num_params,
             gflops_per_example=None if step_flops is None else
             _significant(step_flops / batch_size / 1e9),
             peak_tflops=None if peak is None else _significant(
                 peak * devices / 1e12),
             compile_s=round(step.compile_seconds, 2),
             peak_memory_mib=None if step.peak_bytes is None else
             round(step.peak_bytes / MIB, 3))
  if None not in (limit, step.peak_bytes) and step.peak_bytes > limit:
    return row | dict(status=f"oom: XLA needs {step.peak_bytes / GIB:.2f} GiB "
                      f"per device, {limit / GIB:.2f} GiB available")
  if args.compile_only:
    return row | dict(status="compiled only")
  try:
    times = steps.time_step(step, mode, warmup=args.warmup, repeats=args.repeats,
                            max_seconds=args.max_seconds)
  except Exception as error:  # pylint: disable=broad-except
    return row | dict(status=error_status(error))
  median = statistics.median(times)
  row.update(timed_steps=len(times), step_time_ms=_significant(1000 * median),
             step_time_min_ms=_significant(1000 * min(times)),
             step_time_max_ms=_significant(1000 * max(times)),
             examples_per_s=_significant(batch_size / median))
  if step_flops is not None:
    row["achieved_tflops"] = _significant(step_flops / median / 1e12)
    utilisation = peak_flops.model_flops_utilisation(step_flops, median,
                                                     devices, peak)
    row["mfu"] = None if utilisation is None else _significant(utilisation, 4)
  return row


def _significant(value: float, digits: int = 6) -> float:
  return float(f"{value:.{digits}g}")
