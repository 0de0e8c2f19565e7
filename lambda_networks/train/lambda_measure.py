"""lambda_method="measure": the lambda layers' fastest execution, timed at start-up.

`ops.choose_method` ("auto") reads a per-platform cost table whose GPU and
TPU rows are guesses. With `--config.model_overrides.lambda_method=measure`
the trainer instead times, before it builds the model, each execution of
the position term (`ops.METHODS` but "auto") on the run's own devices: one
`LambdaLayer` of every distinct shape the model has (map size, channels, k,
h, u, r, dtype) on the per-device micro-batch, forward and backward,
compiled, the best of a few calls after a warm-up. Each stage gets the
method whose layers take the least time summed over the stage (the strided
first block of a stage runs at the previous resolution, so a stage can have
two shapes; one method per stage keeps its shared position table and the
config readable). One line per stage says the shapes, each method's time
and the choice.

The choice replaces "measure" in `config.model_overrides.lambda_method` (a
method per stage) before config.json is written, so `eval.py --workdir`
builds the same model without timing anything, and a resumed run (the same
command again) reuses the choice its workdir recorded. With several
processes, process 0 decides and tells the others, so every process builds
the same program.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from lambda_networks import models
from lambda_networks import ops
from lambda_networks.data import DatasetInfo
from lambda_networks.errors import UserError
from lambda_networks.models import mixers
from lambda_networks.train import run_config
from lambda_networks.train import state as state_lib

# Executions timed (the one "auto" would pick is among them).
CANDIDATES = tuple(method for method in ops.METHODS if method != "auto")
REPEATS = 3  # Timed calls per layer after one warm-up call; the best counts.
# A warm-up call this slow is the measurement: repeating it would cost
# seconds per method and not change which method wins.
SLOW_SECONDS = 0.5


@dataclasses.dataclass(frozen=True)
class LayerShape:
  """What a lambda layer's time depends on besides the model-wide options."""

  batch: int  # Examples per device (one micro-batch).
  size: tuple[int, int]  # The map (H, W) the layer runs at.
  features: int  # Its input and output channels.

  def __str__(self) -> str:
    return f"{self.batch}×{self.size[0]}×{self.size[1]}×{self.features}"


# Seconds of one forward + backward pass of a lambda layer built from the
# spec (whose lambda_method is the method timed) on inputs of the shape.
Timer = Callable[[mixers.MixerSpec, LayerShape], float]


def time_layer(spec: mixers.MixerSpec, shape: LayerShape, *,
               repeats: int = REPEATS, slow_seconds: float = SLOW_SECONDS,
               clock: Callable[[], float] = time.perf_counter) -> float:
  """Best of `repeats` compiled forward + backward passes, after a warm-up.

  The layer trains as in the model (batch statistics of its query and value
  norms); gradients are taken for its parameters and its input. A warm-up
  of `slow_seconds` or more is the only call (and its time the result).
  """
  layer = mixers.build_mixer("lambda", shape.features, strides=1,
                             input_size=shape.size, spec=spec,
                             rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
  params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
  inputs = jax.random.normal(jax.random.key(0),
                             (shape.batch, *shape.size, shape.features),
                             spec.dtype or jnp.float32)

  def loss(params, inputs, rest):
    outputs = nnx.merge(graphdef, params, rest)(inputs)  # Training mode.
    return jnp.sum(jnp.square(outputs.astype(jnp.float32)))

  arguments = (params, inputs, rest)
  step = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(*arguments).compile()

  def seconds() -> float:
    start = clock()
    jax.block_until_ready(step(*arguments))
    return clock() - start

  warm_up = seconds()
  if warm_up >= slow_seconds:
    return warm_up
  return min(seconds() for _ in range(repeats))


def stage_shapes(config: models.ResNetConfig,
                 batch: int) -> tuple[dict[LayerShape, int], ...]:
  """Per stage, each distinct lambda-layer shape and how many layers have it."""
  stages = []
  for width, names, sizes in zip(config.widths(), config.block_mixers(),
                                 config.block_input_sizes()):
    shapes: dict[LayerShape, int] = {}
    for name, size in zip(names, sizes):
      if name == "lambda":
        shape = LayerShape(batch, size, width)
        shapes[shape] = shapes.get(shape, 0) + 1
    stages.append(shapes)
  return tuple(stages)


def choose_methods(config: models.ResNetConfig, batch: int, *,
                   timer: Timer = time_layer,
                   report: Callable[[str], None] = print) -> tuple[str, ...]:
  """The fastest method per stage by `timer` ("auto" where nothing is timed).

  Stages without lambda layers, and content-only lambdas (no position
  term: every method is the same computation), keep "auto".
  """
  times: dict[tuple[str, LayerShape], float] = {}  # A shape is timed once.
  unresolved = dataclasses.replace(config, lambda_method="auto")
  methods = []
  for stage, (info, shapes) in enumerate(zip(config.feature_info(),
                                             stage_shapes(config, batch))):
    if not shapes or config.receptive_field is None:
      if shapes:
        report(f"lambda_method=measure: {info.name}: content lambdas only "
               "(receptive_field=None), no position term to time: auto.")
      methods.append("auto")
      continue
    totals = {}
    for method in CANDIDATES:
      spec = dataclasses.replace(unresolved.mixer_spec(stage),
                                 lambda_method=method)
      for shape in shapes:
        if (method, shape) not in times:
          times[method, shape] = timer(spec, shape)
      totals[method] = sum(count * times[method, shape]
                           for shape, count in shapes.items())
    best = min(totals, key=totals.get)
    layers = ", ".join(f"{count}× {shape}" for shape, count in shapes.items())
    timings = ", ".join(f"{method} {1e3 * total:.2f} ms"
                        for method, total in totals.items())
    report(f"lambda_method=measure: {info.name} ({layers}; forward + "
           f"backward): {timings} -> {best}")
    methods.append(best)
  return tuple(methods)


def resolve(config: ml_collections.ConfigDict, workdir: str | None = None, *,
            timer: Timer = time_layer,
            report: Callable[[str], None] = print) -> None:
  """Replaces model_overrides.lambda_method="measure" by a method per stage.

  A workdir whose config.json recorded methods for this model gives them
  back without timing; otherwise they are measured (on process 0, the
  others receive them). Anything else than "measure" is left as it is.
  """
  overrides = config.model_overrides.to_dict()
  if overrides.get("lambda_method") != mixers.MEASURE:
    return
  model_config = _model_config(config)
  chosen = None
  if jax.process_index() == 0:
    saved = _recorded_methods(workdir, config.model, model_config.num_stages)
    if saved is not None:
      report(f"lambda_method=measure: reusing {saved} recorded in "
             f"{workdir}/{run_config.CONFIG_FILE}.")
      chosen = saved
    else:
      chosen = choose_methods(model_config, _per_device_batch(config),
                              timer=timer, report=report)
  chosen = _from_process_zero(chosen, model_config.num_stages)
  overrides["lambda_method"] = chosen
  with config.unlocked():
    config.model_overrides = ml_collections.ConfigDict(overrides)


def _model_config(config: ml_collections.ConfigDict) -> models.ResNetConfig:
  """The model's config as the trainer will build it (sizes, dtype, norms)."""
  size = config.image_size
  info = DatasetInfo(name=config.dataset, num_classes=1,
                     image_shape=(size, size, 3), num_train_examples=0,
                     num_eval_examples=0)
  return models.get_config(config.model,
                           **state_lib.model_overrides(config, info))


def _per_device_batch(config: ml_collections.ConfigDict) -> int:
  """Examples one device runs at once: its share of one micro-batch."""
  steps = config.get("gradient_accumulation_steps", 1)
  return max(1, config.global_batch_size // jax.device_count() // steps)


def _recorded_methods(workdir: str | None, model: str,
                      num_stages: int) -> tuple[str, ...] | None:
  """The per-stage methods a workdir's config.json recorded for `model`."""
  try:
    saved = run_config.load(workdir) if workdir else None
    if saved is None or saved.get("model") != model:
      return None
    methods = saved.model_overrides.lambda_method
    if not isinstance(methods, tuple):  # Recorded resolved: one per stage.
      return None
    return mixers.parse_lambda_methods(methods, num_stages)
  except (UserError, ValueError, AttributeError, TypeError):
    return None  # Not a resolved record of this model: measure again.


def _from_process_zero(methods: tuple[str, ...] | None,
                       num_stages: int) -> tuple[str, ...]:
  """Process 0's methods on every process (one program for all)."""
  if jax.process_count() == 1:
    return methods
  codes = np.zeros(num_stages, np.int32)
  if methods is not None:
    codes[:] = [ops.METHODS.index(method) for method in methods]
  codes = multihost_utils.broadcast_one_to_all(codes)
  return tuple(ops.METHODS[int(code)] for code in np.asarray(codes))

