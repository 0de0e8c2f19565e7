"""Batch norm over groups of examples ("ghost" or per-replica batch norm).

Plain batch norm under `jax.jit` over a sharded batch normalises with the
statistics of the whole global batch. The TensorFlow TPU ResNet code that
ResNet-RS and the LambdaResNets build on computes them per TPU core instead;
`GroupBatchNorm` reproduces that on any device count by normalising groups
of `group_size` consecutive examples separately.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


class GroupBatchNorm(nnx.BatchNorm):
  """Batch norm whose training statistics come from groups of examples.

  The batch [B, ...] is cut into B / group_size groups of consecutive
  examples ("ghost" batch norm; the TPU reference's per-core statistics),
  each normalised by its own mean and variance over (group, H, W). The
  running statistics move towards the mean over groups of the group
  statistics, as averaging per-replica moments does. Evaluation uses the
  running statistics, as plain batch norm does. With the batch sharded over
  devices, groups stay on one device when group_size divides the per-device
  batch (checked by the trainer).
  """

  def __init__(self, *args, group_size: int, **kwargs):
    super().__init__(*args, **kwargs)
    if group_size < 1:
      raise ValueError(f"batch_norm_group_size must be positive here (0 "
                       f"means plain batch norm), got {group_size}.")
    self.group_size = group_size

  def __call__(self, x: jax.Array, use_running_average: bool | None = None,
               *, mask: jax.Array | None = None) -> jax.Array:
    running = (self.use_running_average if use_running_average is None
               else use_running_average)
    size = self.group_size
    if running or mask is not None or x.shape[0] == size:
      return super().__call__(x, use_running_average, mask=mask)
    if x.shape[0] % size:
      raise ValueError(
          f"batch_norm_group_size={size} does not divide the batch of "
          f"{x.shape[0]} examples; use a divisor of the per-device batch.")
    groups = x.reshape((x.shape[0] // size, size) + x.shape[1:])
    axes = tuple(range(1, groups.ndim - 1))  # All but groups and features.
    stats = groups.astype(jnp.promote_types(self.dtype or x.dtype, jnp.float32))
    # E[x²] − E[x]², clipped at 0, as nnx.BatchNorm's fast variance.
    mean = stats.mean(axes, keepdims=True)
    var = jnp.maximum(0.0, (stats * stats).mean(axes, keepdims=True)
                      - mean * mean)
    decay = self.momentum
    self.mean[...] = jax.lax.stop_gradient(
        decay * self.mean[...] + (1 - decay) * mean.mean((0,) + axes).reshape(-1))
    self.var[...] = jax.lax.stop_gradient(
        decay * self.var[...] + (1 - decay) * var.mean((0,) + axes).reshape(-1))
    out = (stats - mean) * jax.lax.rsqrt(var + self.epsilon)
    if self.scale is not None:
      out = out * self.scale[...]
    if self.bias is not None:
      out = out + self.bias[...]
    dtype = self.dtype or jnp.promote_types(x.dtype, self.param_dtype)
    return out.reshape(x.shape).astype(dtype)


def check_group_size(group_size: Any) -> None:
  """An int ≥ 0 (0: plain batch norm over the whole batch)."""
  if isinstance(group_size, bool) or not isinstance(group_size, int) or (
      group_size < 0):
    raise ValueError(f"batch_norm_group_size must be an int ≥ 0 (0: the whole "
                     f"batch), got {group_size!r}.")


def batch_norm(features: int, *, group_size: int = 0, **kwargs) -> nnx.BatchNorm:
  """nnx.BatchNorm(features, **kwargs), over groups when group_size > 0."""
  check_group_size(group_size)
  if group_size:
    return GroupBatchNorm(features, group_size=group_size, **kwargs)
  return nnx.BatchNorm(features, **kwargs)
