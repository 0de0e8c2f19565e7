"""Shared pieces of the model benchmarks (not a script).

Compiles a model's training or inference step from abstract shapes, reads
XLA's memory analysis before anything is allocated, refuses to run a step
that would not fit (reported as out of memory, not a crash), times compiled
steps, and records the machine and software the numbers came from.
Used by benchmark_models.py and table4.py.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import os
import pathlib
import platform
import statistics
import subprocess
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import flax
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lambda_networks import models
from lambda_networks import ops
import peak_flops
# Re-exported for the benchmark scripts (scripts/ is on sys.path when they run).
from reporting import CsvWriter, REPO_ROOT, markdown_table, read_csv  # noqa: F401

MODES = ("train", "inference")
GIB = 2**30
MIB = 2**20


def parse_value(text: str) -> Any:
  """'8' -> 8, '0.5' -> 0.5, '(1,1)' -> (1, 1), 'True' -> True, else the text."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  return tuple(value) if isinstance(value, list) else value


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
  """['query_depth=8', 'stage_mixers=CCLL'] -> {'query_depth': 8, ...}."""
  overrides = {}
  for item in items or ():
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"override {item!r} must look like field=value, "
                       "e.g. query_depth=8 or stage_depths=(1,1,1,1).")
    overrides[key.strip()] = parse_value(value.strip())
  return overrides


def format_overrides(overrides: dict[str, Any]) -> str:
  return " ".join(f"{key}={value}".replace(" ", "") for key, value in
                  overrides.items())


def environment() -> dict[str, Any]:
  """The device and software versions every result row carries."""
  device = jax.devices()[0]
  try:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
        capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
        capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    commit += "+dirty" if dirty else ""
  except (OSError, subprocess.SubprocessError):
    commit = "unknown"
  return {
      "backend": jax.default_backend(),
      "device_kind": device.device_kind,
      "device_count": jax.device_count(),
      "host_cpu": _cpu_name(),
      "host_cpus": os.cpu_count(),
      "jax": jax.__version__,
      "jaxlib": getattr(jax.lib, "__version__", None) or _package_version("jaxlib"),
      "flax": flax.__version__,
      "optax": optax.__version__,
      "python": platform.python_version(),
      "git_commit": commit,
      "date": datetime.datetime.now(datetime.timezone.utc).strftime(
          "%Y-%m-%dT%H:%MZ"),
  }


def pair_cost_note(platform: str | None = None) -> str:
  """Says whether method="auto" on this platform runs a measured cost table."""
  platform = platform or jax.default_backend()
  table = ops.pair_cost_table(platform)
  if table["calibrated"]:
    return f"auto: the measured {platform!r} cost table ({table['source']})."
  return (f"auto: the {platform!r} cost table is UNCALIBRATED ({table['source']}); "
          "calibrate it with `python scripts/benchmark_layers.py --out "
          "results/layers && python scripts/calibrate_pair_cost.py "
          "results/layers/benchmark_layers.csv`.")


def _package_version(name: str) -> str:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return "unknown"


def _cpu_name() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def device_memory_bytes(device: jax.Device | None = None) -> int | None:
  """Memory one device can give a step: the accelerator's limit, or free RAM."""
  device = device or jax.devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # Not every backend has it.
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  try:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def peak_bytes(compiled: Any) -> int | None:
  """XLA's buffer assignment: arguments + outputs + temporaries − aliased."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if analysis is None:
    return None
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)


def compiled_flops(compiled: Any) -> float | None:
  """FLOPs of one call of a compiled step, per device (XLA's cost analysis).

  XLA counts 2 FLOPs per multiply-add and adds element-wise work. A step
  compiled for several devices is the per-device program.
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # Not every backend has it.
    return None
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per program.
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def is_out_of_memory(error: BaseException) -> bool:
  text = str(error).lower()
  return any(marker in text for marker in (
      "resource_exhausted", "resource exhausted", "out of memory", "oom",
      "failed to allocate", "cannot allocate memory"))


@dataclasses.dataclass
class Step:
  """A compiled step and the arguments it was compiled for (abstract)."""

  compiled: Any
  make_arguments: Callable[[], tuple[Any, ...]]
  peak_bytes: int | None
  compile_seconds: float
  num_params: int
  flops: float | None = None  # Per device per call (compiled_flops).


def build_step(name: str, overrides: dict[str, Any], *, image_size: int,
               batch_size: int, mode: str, num_classes: int = 1000,
               num_devices: int | None = None, seed: int = 0) -> Step:
  """Compiles model `name`'s train or inference step for one batch shape.

  The model and the data are abstract while compiling, so a step that will
  not fit is known (`peak_bytes`) before any memory is taken. The train step
  is forward, softmax cross-entropy, backward and an SGD-momentum update with
  weight decay; inference is the forward pass in eval mode. The batch is
  split over `num_devices` devices (default: all), parameters replicated.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
  devices = jax.devices()[:num_devices or jax.device_count()]
  if batch_size % len(devices):
    raise ValueError(f"batch size {batch_size} is not divisible by the "
                     f"{len(devices)} devices; use a multiple of {len(devices)}.")
  mesh = Mesh(np.asarray(devices), ("data",))
  replicated = NamedSharding(mesh, PartitionSpec())
  batched = NamedSharding(mesh, PartitionSpec("data"))

  def create() -> nnx.Module:
    model = models.get_model(name, num_classes=num_classes,
                             rngs=nnx.Rngs(params=seed, dropout=seed + 1),
                             image_size=image_size, **overrides)
    model.train() if mode == "train" else model.eval()
    return model

  abstract_model = nnx.eval_shape(create)
  graphdef, params, rest = nnx.split(abstract_model, nnx.Param, ...)
  num_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
  channels = abstract_model.config.in_channels
  image_shape = (batch_size, image_size, image_size, channels)
  tx = optax.chain(optax.add_decayed_weights(1e-4),
                   optax.sgd(0.1, momentum=0.9))

  def abstract(tree, sharding):
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                          sharding=sharding), tree)

  images = jax.ShapeDtypeStruct(image_shape, jnp.float32, sharding=batched)
  labels = jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=batched)

  if mode == "train":
    def train_step(params, rest, opt_state, images, labels):
      def loss_fn(params):
        model = nnx.merge(graphdef, params, rest, copy=True)
        logits = model(images)
        loss = optax.softmax_cross_entropy_with_integer_labels(
            logits, labels).mean()
        return loss, nnx.state(model, nnx.Not(nnx.Param))
      (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_rest, opt_state, loss

    opt_state = jax.eval_shape(tx.init, params)
    arguments = (abstract(params, replicated), abstract(rest, replicated),
                 abstract(opt_state, replicated), images, labels)
    function = jax.jit(train_step, donate_argnums=(0, 1, 2))
  else:
    def inference_step(params, rest, images):
      return nnx.merge(graphdef, params, rest, copy=True)(images)

    arguments = (abstract(params, replicated), abstract(rest, replicated), images)
    function = jax.jit(inference_step)

  start = time.perf_counter()
  compiled = function.lower(*arguments).compile()
  compile_seconds = time.perf_counter() - start

  def make_arguments() -> tuple[Any, ...]:
    model = create()
    _, real_params, real_rest = nnx.split(model, nnx.Param, ...)
    key_images, key_labels = jax.random.split(jax.random.key(seed))
    real_images = jax.device_put(
        jax.random.normal(key_images, image_shape, jnp.float32), batched)
    real_labels = jax.device_put(jax.random.randint(
        key_labels, (batch_size,), 0, num_classes, jnp.int32), batched)
    real_params = jax.device_put(real_params, replicated)
    real_rest = jax.device_put(real_rest, replicated)
    if mode == "train":
      opt = jax.device_put(tx.init(real_params), replicated)
      return real_params, real_rest, opt, real_images, real_labels
    return real_params, real_rest, real_images

  return Step(compiled, make_arguments, peak_bytes(compiled), compile_seconds,
              num_params, compiled_flops(compiled))


def time_step(step: Step, mode: str, *, warmup: int, repeats: int,
              max_seconds: float) -> list[float]:
  """Seconds per call of the compiled step, after `warmup` untimed calls.

  Train steps feed their outputs back in (the arguments are donated), so each
  timed call is a real training step. Timing stops early once `max_seconds`
  have been spent (at least one timed call).
  """
  arguments = step.make_arguments()

  def call(arguments):
    outputs = step.compiled(*arguments)
    jax.block_until_ready(outputs)
    if mode == "train":
      params, rest, opt_state, _ = outputs
      return (params, rest, opt_state) + tuple(arguments[3:])
    return arguments

  for _ in range(warmup):
    arguments = call(arguments)
  times = []
  spent = 0.0
  while len(times) < max(1, repeats) and (not times or spent < max_seconds):
    start = time.perf_counter()
    arguments = call(arguments)
    times.append(time.perf_counter() - start)
    spent += times[-1]
  return times


def measure(name: str, overrides: dict[str, Any], *, image_size: int,
            batch_size: int, mode: str, warmup: int = 2, repeats: int = 5,
            max_seconds: float = 60.0, memory_limit_bytes: int | None = None,
            num_devices: int | None = None, num_classes: int = 1000,
            run: bool = True) -> dict[str, Any]:
  """One benchmark row; out of memory (predicted or real) is a status."""
  row: dict[str, Any] = dict(
      model=name, overrides=format_overrides(overrides), image_size=image_size,
      batch_size=batch_size, mode=mode,
      num_devices=num_devices or jax.device_count(), status="ok",
      params=None, compile_s=None, peak_memory_mib=None,
      memory_limit_mib=None if memory_limit_bytes is None else
      round(memory_limit_bytes / MIB), timed_steps=0, step_time_ms=None,
      step_time_min_ms=None, step_time_max_ms=None, examples_per_s=None,
      gflops_per_example=None, achieved_tflops=None, peak_tflops=None,
      mfu=None)
  try:
    step = build_step(name, overrides, image_size=image_size,
                      batch_size=batch_size, mode=mode,
                      num_devices=num_devices, num_classes=num_classes)
  except Exception as error:  # pylint: disable=broad-except
    row["status"] = "oom" if is_out_of_memory(error) else _error_status(error)
    return row
  devices = num_devices or jax.device_count()
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
  if (memory_limit_bytes is not None and step.peak_bytes is not None
      and step.peak_bytes > memory_limit_bytes):
    row["status"] = (f"oom: XLA needs {step.peak_bytes / GIB:.2f} GiB per "
                     f"device, {memory_limit_bytes / GIB:.2f} GiB available")
    return row
  if not run:
    row["status"] = "compiled only"
    return row
  try:
    times = time_step(step, mode, warmup=warmup, repeats=repeats,
                      max_seconds=max_seconds)
  except Exception as error:  # pylint: disable=broad-except
    row["status"] = "oom" if is_out_of_memory(error) else _error_status(error)
    return row
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


def _error_status(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return f"error: {type(error).__name__}: {text}"[:200]
