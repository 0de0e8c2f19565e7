"""Model steps compiled from abstract shapes: memory, FLOPs and time.

A model's training or inference step is compiled before anything is
allocated, so XLA's memory plan (`peak_bytes`) says whether it fits; FLOPs
come from XLA's cost analysis; `time_step` times compiled calls; `measure`
does all three and returns one benchmark row.
"""

from __future__ import annotations

import dataclasses
import pathlib
import statistics
import time
import timeit
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lambda_networks import models
from lambda_networks.benchmarks import peak_flops

MODES = ("train", "inference")
GIB = 2**30
MIB = 2**20


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


def error_status(error: BaseException) -> str:
  """'oom', or the error in one line."""
  if is_out_of_memory(error):
    return "oom"
  return f"error: {type(error).__name__}: {' '.join(str(error).split())}"[:200]


@dataclasses.dataclass
class Step:
  """A compiled step and the arguments it was compiled for (abstract)."""

  compiled: Any  # None when built with lower_only.
  make_arguments: Callable[[], tuple[Any, ...]]
  peak_bytes: int | None
  compile_seconds: float
  num_params: int
  flops: float | None = None  # Per device per call (compiled_flops).


def build_step(name: str, overrides: dict[str, Any], *, image_size: int,
               batch_size: int, mode: str, num_classes: int = 1000,
               num_devices: int | None = None, seed: int = 0,
               lower_only: bool = False) -> Step:
  """Compiles model `name`'s train or inference step for one batch shape.

  The model and the data are abstract while compiling, so a step that will
  not fit is known (`peak_bytes`) before any memory is taken. The train step
  is forward, softmax cross-entropy, backward and an SGD-momentum update with
  weight decay; inference is the forward pass in eval mode. The batch is
  split over `num_devices` devices (default: all), parameters replicated.
  With `lower_only`, nothing is compiled: only `num_params` and `flops` (of
  the unoptimised program) are set.
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
  num_params = models.count_parameters(abstract_model)
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
  lowered = function.lower(*arguments)
  if lower_only:
    return Step(None, lambda: (), None, 0.0, num_params, compiled_flops(lowered))
  compiled = lowered.compile()
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


def time_compiled(compiled: Any, arguments: tuple[Any, ...], *, repeats: int,
                  slow_seconds: float) -> list[float]:
  """Seconds per call of `compiled(*arguments)`: a warm-up call, then
  `repeats` timed calls, unless the warm-up took `slow_seconds` or more
  (then its own time is the one measurement)."""
  step = timeit.Timer(lambda: jax.block_until_ready(compiled(*arguments)))
  times = [step.timeit(1)]
  if times[0] < slow_seconds:
    times = step.repeat(repeats, 1)
  return times


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
            batch_size: int, mode: str, memory_limit: int | None,
            num_classes: int = 1000, num_devices: int | None = None,
            compile_only: bool = False, **timing: Any) -> dict[str, Any]:
  """One benchmark row: model `name`'s step compiled, checked and timed.

  A step whose XLA plan needs more than `memory_limit` bytes per device is
  not run: out of memory, predicted or real, is a status, as is any error.
  `timing` (warmup, repeats, max_seconds) goes to `time_step`.
  """
  devices = num_devices or jax.device_count()
  row: dict[str, Any] = dict(
      num_devices=devices, status="ok", timed_steps=0,
      memory_limit_mib=None if memory_limit is None else round(
          memory_limit / MIB))
  try:
    step = build_step(name, overrides, image_size=image_size,
                      batch_size=batch_size, mode=mode, num_devices=num_devices,
                      num_classes=num_classes)
  except Exception as error:  # pylint: disable=broad-except
    return row | dict(status=error_status(error))
  step_flops = None if step.flops is None else step.flops * devices
  peak = peak_flops.peak_flops_per_device(jax.devices()[0].device_kind)
  row.update(params=step.num_params,
             gflops_per_example=_significant(step_flops and
                                             step_flops / batch_size / 1e9),
             peak_tflops=_significant(peak and peak * devices / 1e12),
             compile_s=round(step.compile_seconds, 2),
             peak_memory_mib=None if step.peak_bytes is None else
             round(step.peak_bytes / MIB, 3))
  if (None not in (memory_limit, step.peak_bytes)
      and step.peak_bytes > memory_limit):
    return row | dict(status=f"oom: XLA needs {step.peak_bytes / GIB:.2f} GiB "
                      f"per device, {memory_limit / GIB:.2f} GiB available")
  if compile_only:
    return row | dict(status="compiled only")
  try:
    times = time_step(step, mode, **timing)
  except Exception as error:  # pylint: disable=broad-except
    return row | dict(status=error_status(error))
  median = statistics.median(times)
  return row | dict(
      timed_steps=len(times), step_time_ms=_significant(1000 * median),
      step_time_min_ms=_significant(1000 * min(times)),
      step_time_max_ms=_significant(1000 * max(times)),
      examples_per_s=_significant(batch_size / median),
      achieved_tflops=_significant(step_flops and step_flops / median / 1e12),
      mfu=_significant(peak_flops.model_flops_utilisation(
          step_flops, median, devices, peak), 4))


def _significant(value: float | None, digits: int = 6) -> float | None:
  return None if value is None else float(f"{value:.{digits}g}")
