"""The training state: a plain pytree that jit, sharding and Orbax all see.

The model is split once into its static graph (`ModelParts.graphdef`), its
parameters, its batch-norm statistics and the rest (RNG streams), which the
steps merge back into a module. Dropout and stochastic-depth randomness is
re-seeded every step from (seed, step), so the RNG needs no saving and a
resumed run draws the same masks. With `config.ema_decay` > 0 the state also
holds the EMA of the parameters and of the batch-norm statistics, which are
evaluated together.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from lambda_networks import models
from lambda_networks.data import DatasetInfo


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; `step` also fixes the data position."""
  step: jax.Array
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  opt_state: Any
  ema_params: dict[str, Any]  # Empty when config.ema_decay == 0.
  # The batch-norm statistics averaged alongside ema_params (empty likewise);
  # the EMA weights are evaluated with them. A default, so that states built
  # without them (older checkpoints' tree, tests) still construct.
  ema_batch_stats: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict[str, Any]:
    return {field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)}

  @classmethod
  def from_dict(cls, tree: dict[str, Any]) -> "TrainState":
    return cls(**tree)


@dataclasses.dataclass(frozen=True)
class ModelParts:
  """The static half of the model and how it was built."""
  graphdef: Any
  rest: Any  # Non-parameter, non-statistic state (RNG streams), pure dict.
  name: str
  overrides: dict[str, Any]
  num_classes: int


def computation_dtype(dtype: str) -> str:
  """config.dtype with 'auto' resolved: bfloat16 on TPU/GPU, float32 on CPU."""
  if dtype != "auto":
    return dtype
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def model_overrides(config: ml_collections.ConfigDict,
                    info: DatasetInfo) -> dict[str, Any]:
  """Keyword overrides for `models.get_model`, from the config and dataset."""
  overrides = {field: value for field, value in config.model_overrides.to_dict().items()
               if value is not None}  # None: keep the model's default
  overrides = {field: None if value == "none" else value  # "none": set None.
               for field, value in overrides.items()}
  for field in ("dropout_rate", "stochastic_depth_rate"):
    if config[field] is not None:
      overrides.setdefault(field, config[field])
  for field, default in (("batch_norm_group_size", 0), ("remat", "none")):
    if config.get(field, default) != default:  # Models default to these.
      overrides.setdefault(field, config[field])
  overrides.setdefault("dtype", computation_dtype(config.dtype))
  overrides.setdefault("param_dtype", config.param_dtype)
  if config.get("task", "classification") == "language_model":
    overrides.setdefault("sequence_length", config.sequence_length)
  else:
    overrides.setdefault("image_size", info.image_shape[0])
    overrides.setdefault("in_channels", info.image_shape[-1])
  return overrides


def build_model(config: ml_collections.ConfigDict, info: DatasetInfo,
                seed: int) -> nnx.Module:
  """The model named by config.model, initialised from `seed`."""
  return models.get_model(
      config.model, num_classes=config.num_classes or info.num_classes,
      rngs=nnx.Rngs(params=seed, dropout=seed + 1),
      **model_overrides(config, info))


def create_train_state(config: ml_collections.ConfigDict, info: DatasetInfo,
                       tx: optax.GradientTransformation, sharding: Any = None
                       ) -> tuple[ModelParts, TrainState]:
  """Builds the model and its initial TrainState.

  Initialisation runs as one jitted function (not op by op) and puts the state
  straight onto `sharding` (e.g. replicated over the mesh) when given.
  """

  def init() -> tuple[TrainState, dict[str, Any]]:
    model = build_model(config, info, config.seed)
    _, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    params = nnx.to_pure_dict(params)
    batch_stats = nnx.to_pure_dict(batch_stats)
    ema = config.ema_decay > 0
    state = TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params) if ema else {},
        ema_batch_stats=jax.tree.map(jnp.copy, batch_stats) if ema else {})
    return state, nnx.to_pure_dict(rest)

  abstract_model = nnx.eval_shape(lambda: build_model(config, info, config.seed))
  graphdef = nnx.split(abstract_model, nnx.Param, nnx.BatchStat, ...)[0]
  lowered = jax.jit(init, out_shardings=sharding).lower()
  if jax.default_backend() == "cpu":
    # A one-off program: on CPU, compile it fast rather than well (LLVM is
    # slow on the random initialisers).
    compiled = lowered.compile({"xla_backend_optimization_level": 0,
                                "xla_llvm_disable_expensive_passes": True})
  else:
    compiled = lowered.compile()
  state, rest = compiled()
  parts = ModelParts(graphdef=graphdef, rest=rest, name=config.model,
                     overrides=model_overrides(config, info),
                     num_classes=config.num_classes or info.num_classes)
  return parts, state


def param_shapes(params: dict[str, Any]) -> dict[str, list[int]]:
  """'path/to/param' -> shape, to recognise a checkpoint's model."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {"/".join(str(getattr(key, "key", key)) for key in path):
          list(jnp.shape(value)) for path, value in flat}
