"""EfficientNet-B0…B7 (Tan & Le, 2019), the paper's speed–accuracy baseline.

Standard compound scaling of the B0 layout, following the Keras reference
(whose B0 has 5,288,548 trainable parameters): MBConv blocks with
squeeze-excitation of 0.25 × the block's input filters, swish, batch norm,
a 1280-channel head conv (scaled with the width), a linear classifier with
bias. Convolutions pad symmetrically (k//2), so any input size works.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import group_batch_norm
from lambda_networks.models import common

# B0 stages: (kernel, repeats, in filters, out filters, expand ratio, stride).
B0_STAGES = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280


@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
  """Architecture of an EfficientNet.

  Attributes:
    width_multiplier: filter scale (EfficientNet's width coefficient).
    depth_multiplier: repeat scale (EfficientNet's depth coefficient).
    image_size: the resolution this variant is meant for (the model accepts
      any size).
    dropout_rate: dropout before the classifier.
    stochastic_depth_rate: drop rate of the last block ("drop connect");
      block i of N drops with rate·i/N.
    se_ratio: squeeze-excitation width as a fraction of the block's input.
    bn_momentum: batch-norm running-average decay (Keras: 0.99).
    bn_epsilon: batch-norm epsilon (Keras: 1e-3).
    batch_norm_group_size: batch-norm training statistics over groups of
      this many examples; 0: the whole batch (see `group_batch_norm.GroupBatchNorm`).
    remat: 'none', or 'block' to recompute each MBConv block in the backward
      pass (`common.REMAT_POLICIES`).
    in_channels: input image channels.
    dtype: computation dtype (None: float32).
    param_dtype: parameter dtype.
  """

  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  image_size: int = 224
  dropout_rate: float = 0.2
  stochastic_depth_rate: float = 0.2
  se_ratio: float = 0.25
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  batch_norm_group_size: int = 0
  remat: str = "none"
  in_channels: int = 3
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    object.__setattr__(self, "dtype", common.as_dtype(self.dtype))
    object.__setattr__(self, "param_dtype", common.as_dtype(self.param_dtype))
    for name in ("width_multiplier", "depth_multiplier"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
    for name in ("stochastic_depth_rate", "dropout_rate"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
    if not 0.0 <= self.se_ratio <= 1.0:
      raise ValueError(f"se_ratio must be in [0, 1], got {self.se_ratio}.")
    if self.in_channels < 1:
      raise ValueError(f"in_channels must be positive, got {self.in_channels}.")
    common.check_remat(self.remat)
    group_batch_norm.check_group_size(self.batch_norm_group_size)

  def filters(self, filters: int, divisor: int = 8) -> int:
    """EfficientNet's round_filters: scale, round to a multiple of 8."""
    filters *= self.width_multiplier
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * filters:
      rounded += divisor
    return int(rounded)

  def repeats(self, repeats: int) -> int:
    """EfficientNet's round_repeats."""
    return int(math.ceil(self.depth_multiplier * repeats))


class MBConv(nnx.Module):
  """Inverted bottleneck: 1×1 expand → k×k depthwise → SE → 1×1 project."""

  def __init__(self, in_features: int, out_features: int, *, kernel_size: int,
               strides: int, expand_ratio: int, drop_rate: float,
               config: EfficientNetConfig, rngs: nnx.Rngs):
    cfg = config
    kwargs = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
    norm = dict(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                group_size=cfg.batch_norm_group_size, **kwargs)
    hidden = in_features * expand_ratio
    if expand_ratio != 1:
      self.expand = common.conv(in_features, hidden, 1, **kwargs)
      self.expand_bn = common.batch_norm(hidden, **norm)
    else:
      self.expand = self.expand_bn = None
    self.depthwise = common.conv(hidden, hidden, kernel_size, strides=strides,
                                 groups=hidden, **kwargs)
    self.depthwise_bn = common.batch_norm(hidden, **norm)
    self.se = (common.SqueezeExcite(
        hidden, max(1, int(in_features * cfg.se_ratio)), activation=nnx.swish,
        **kwargs) if cfg.se_ratio > 0 else None)
    self.project = common.conv(hidden, out_features, 1, **kwargs)
    self.project_bn = common.batch_norm(out_features, **norm)
    self.residual = strides == 1 and in_features == out_features
    self.drop_path = common.StochasticDepth(drop_rate if self.residual else 0.0,
                                            rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    out = x
    if self.expand is not None:
      out = nnx.swish(self.expand_bn(self.expand(out)))
    out = nnx.swish(self.depthwise_bn(self.depthwise(out)))
    if self.se is not None:
      out = self.se(out)
    out = self.project_bn(self.project(out))
    if self.residual:
      out = self.drop_path(out) + x.astype(out.dtype)
    return out


class EfficientNet(nnx.Module):
  """Stem conv, MBConv stages, 1×1 head conv, pooled classifier."""

  def __init__(self, config: EfficientNetConfig, *, num_classes: int,
               rngs: nnx.Rngs):
    cfg = config
    self.config = cfg
    kwargs = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
    norm = dict(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                group_size=cfg.batch_norm_group_size, **kwargs)
    stem = cfg.filters(STEM_FILTERS)
    self.stem = common.conv(cfg.in_channels, stem, 3, strides=2, **kwargs)
    self.stem_bn = common.batch_norm(stem, **norm)
    plan = []
    for kernel, repeats, filters_in, filters_out, expand, strides in B0_STAGES:
      filters_in, filters_out = cfg.filters(filters_in), cfg.filters(filters_out)
      for i in range(cfg.repeats(repeats)):
        plan.append((filters_in if i == 0 else filters_out, filters_out, kernel,
                     strides if i == 0 else 1, expand))
    self.blocks = nnx.List([
        MBConv(i, o, kernel_size=k, strides=s, expand_ratio=e,
               drop_rate=cfg.stochastic_depth_rate * index / len(plan),
               config=cfg, rngs=rngs)
        for index, (i, o, k, s, e) in enumerate(plan)
    ])
    head = cfg.filters(HEAD_FILTERS)
    self.head_conv = common.conv(plan[-1][1], head, 1, **kwargs)
    self.head_bn = common.batch_norm(head, **norm)
    self.dropout, self.head = common.classifier_head(
        head, num_classes, cfg.dropout_rate, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    """Maps images [B, H, W, in_channels] to float32 logits [B, num_classes]."""
    common.check_images(images, self.config.in_channels)
    x = nnx.swish(self.stem_bn(self.stem(images)))
    for block in self.blocks:
      x = common.call_block(block, x, self.config.remat)
    x = nnx.swish(self.head_bn(self.head_conv(x)))
    x = jnp.mean(x, axis=(1, 2))
    if self.dropout is not None:
      x = self.dropout(x)
    return self.head(x).astype(jnp.float32)
