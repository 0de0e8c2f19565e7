"""Pieces shared by the ResNet and EfficientNet models."""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import group_batch_norm
from lambda_networks import layer_checks

# Activations a model config may name.
ACTIVATIONS = {"relu": jax.nn.relu, "silu": jax.nn.silu}

# He initialisation (fan-out), as in torchvision and Keras' EfficientNet.
CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(
    in_features: int,
    out_features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Conv:
  """A k×k convolution with symmetric k//2 padding: output ceil(size/stride)."""
  pad = kernel_size // 2
  return nnx.Conv(
      in_features, out_features, (kernel_size, kernel_size),
      strides=(strides, strides), padding=((pad, pad), (pad, pad)),
      feature_group_count=groups, use_bias=use_bias, kernel_init=CONV_INIT,
      dtype=dtype, param_dtype=param_dtype, rngs=rngs,
  )


def pool(x: jax.Array, kind: str, window: int, strides: int) -> jax.Array:
  """Max or average pooling with symmetric window//2 padding (ceil(size/stride)).

  The average ignores padded positions, so odd sizes pool correctly.
  """
  pad = window // 2
  padding = ((pad, pad), (pad, pad))
  if kind == "max":
    return nnx.max_pool(x, (window, window), (strides, strides), padding)
  return nnx.avg_pool(x, (window, window), (strides, strides), padding,
                      count_include_pad=False)


def downsampled(size: int, strides: int) -> int:
  """Spatial size after a padded stride (ceil(size / strides))."""
  return math.ceil(size / strides)


class StochasticDepth(nnx.Module):
  """Drops a residual branch per example with probability `rate` in training.

  Kept branches are scaled by 1 / (1 − rate) (Huang et al., 2016). Like
  nnx.Dropout it follows `model.train()` / `model.eval()` through its
  `deterministic` attribute and draws keys from the 'dropout' stream.
  """

  def __init__(self, rate: float, *, deterministic: bool = False,
               rngs: nnx.Rngs | None = None):
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"stochastic depth rate must be in [0, 1), got {rate}.")
    self.rate = rate
    self.deterministic = deterministic
    if rate > 0.0 and rngs is None:
      raise ValueError("StochasticDepth with rate > 0 needs rngs with a "
                       "'dropout' stream.")
    self.rngs = rngs["dropout"].fork() if rate > 0.0 else nnx.data(None)

  def __call__(self, branch: jax.Array) -> jax.Array:
    if self.deterministic or self.rate == 0.0:
      return branch
    keep_prob = 1.0 - self.rate
    shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
    keep = jax.random.bernoulli(self.rngs(), keep_prob, shape)
    return jnp.where(keep, branch / keep_prob, jnp.zeros_like(branch))

  def set_view(self, deterministic: bool | None = None):
    """Used by nnx.view, like nnx.Dropout.set_view."""
    if deterministic is not None:
      self.deterministic = deterministic


class SqueezeExcite(nnx.Module):
  """Squeeze-and-excitation: channel gates from globally pooled features."""

  def __init__(self, features: int, reduced: int, *,
               activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
               dtype: Any = None, param_dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    self.activation = activation
    self.reduce = conv(features, reduced, 1, use_bias=True, dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)
    self.expand = conv(reduced, features, 1, use_bias=True, dtype=dtype,
                       param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    squeezed = jnp.mean(x, axis=(1, 2), keepdims=True)
    gates = jax.nn.sigmoid(self.expand(self.activation(self.reduce(squeezed))))
    return x * gates.astype(x.dtype)


def batch_norm(features: int, *, momentum: float, epsilon: float,
               zero_scale: bool = False, group_size: int = 0, dtype: Any = None,
               param_dtype: Any = jnp.float32, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """Batch norm; zero_scale starts the scale at 0 (a residual block's last norm).

  group_size > 0 takes training statistics over groups of that many examples
  (`group_batch_norm.GroupBatchNorm`); 0 over the whole batch.
  """
  scale_init = (nnx.initializers.zeros_init() if zero_scale
                else nnx.initializers.ones_init())
  kwargs = dict(momentum=momentum, epsilon=epsilon, scale_init=scale_init,
                dtype=dtype, param_dtype=param_dtype, rngs=rngs)
  return group_batch_norm.batch_norm(features, group_size=group_size, **kwargs)


# Rematerialisation a model config may name: what the backward pass of a
# residual block keeps ("none": everything its forward pass made; "block":
# only the block's input, the rest recomputed from it).
REMAT_POLICIES = ("none", "block")


def check_remat(remat: str) -> None:
  if remat not in REMAT_POLICIES:
    raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {remat!r}.")


def call_block(block: nnx.Module, x: jax.Array, remat: str) -> jax.Array:
  """block(x); with remat='block' recomputed in the backward pass.

  The block runs as a pure function of its parameters, its other state
  (batch statistics, RNG counters) and x, so the recomputation sees the
  same statistics and dropout masks; its state updates are written back.
  """
  if remat == "none":
    return block(x)
  graphdef, params, state = nnx.split(block, nnx.Param, ...)

  def apply(params, state, x):  # Pure dicts in and out: no outer Variables.
    module = nnx.merge(graphdef, params, state)
    return module(x), nnx.to_pure_dict(nnx.state(module, nnx.Not(nnx.Param)))

  out, new_state = _recomputed_in_backward(apply)(
      nnx.to_pure_dict(params), nnx.to_pure_dict(state), x)
  nnx.replace_by_pure_dict(state, new_state)
  nnx.update(block, state)
  return out


def _recomputed_in_backward(function: Callable[..., Any]) -> Callable[..., Any]:
  """function(params, state, x) -> (out, new_state), keeping only its inputs.

  Not `jax.checkpoint`: XLA:CPU drops the optimisation barriers that keep
  its recomputation apart and CSE then merges it back into the forward pass
  (the memory plan does not shrink). Here the recomputation's input depends
  on the incoming cotangent (x + 0·ct, the same value, NaN kept), so it
  cannot run, or be merged, before the backward pass reaches the block.
  """

  @jax.custom_vjp
  def run(params, state, x):
    return function(params, state, x)

  def forward(params, state, x):
    return function(params, state, x), (params, state, x)

  def backward(saved, cotangents):
    params, state, x = saved
    out_cotangent = cotangents[0]  # The state outputs carry no gradient.
    tie = jnp.zeros((), x.dtype) * out_cotangent.reshape(-1)[0].astype(x.dtype)
    _, vjp = jax.vjp(lambda p, inputs: function(p, state, inputs)[0],
                     params, x + tie)
    params_cotangent, x_cotangent = vjp(out_cotangent)
    return params_cotangent, None, x_cotangent

  run.defvjp(forward, backward)
  return run


def classifier_head(features: int, num_classes: int, dropout_rate: float, *,
                    dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
  """Dropout (None when the rate is 0) and the linear classifier."""
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}.")
  dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None
  linear = nnx.Linear(features, num_classes, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)
  return dropout, linear


def check_images(images: jax.Array, in_channels: int) -> None:
  """Refuses anything but [B, H, W, in_channels] images (arrays, not lists)."""
  layer_checks.array_input(images, f"[B, H, W, {in_channels}]", "images")
  if images.ndim != 4 or images.shape[-1] != in_channels:
    raise ValueError(
        f"images must be [B, H, W, {in_channels}] (in_channels={in_channels}), "
        f"got shape {images.shape}; set in_channels to the dataset's channel "
        "count (e.g. in_channels=1 for grayscale).")


def count_parameters(model: nnx.Module | Any) -> int:
  """Trainable parameters (nnx.Param); batch-norm statistics are excluded.

  Takes a model (abstract ones from nnx.eval_shape too, so full-size models
  can be counted without allocating or compiling them) or a pytree of
  parameter arrays (e.g. a TrainState's `params`).
  """
  tree = nnx.state(model, nnx.Param) if isinstance(model, nnx.Module) else model
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def as_dtype(value: Any) -> Any:
  """Accepts dtypes or their names ('bfloat16') from config overrides."""
  if value is None:
    return None
  try:
    return jnp.dtype(value)
  except TypeError as error:
    raise ValueError(f"not a dtype: {value!r} (try 'float32' or 'bfloat16')."
                     ) from error
