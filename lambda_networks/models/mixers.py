"""The spatial mixer of a bottleneck block: 3×3 conv, lambda layer or attention.

A ResNet config names one mixer per stage, by name or, as a command-line
shorthand, by letter (stage_mixers='CCLL'):

  C  conv              3×3 convolution (the ResNet baseline)
  L  lambda            `layers.LambdaLayer` (k, h, u, r from the config)
  A  attention         global relative self-attention (`RelativeSelfAttention`)
  W  local_attention   7×7-window relative self-attention (SASA)
  X  axial_attention   axial self-attention (`AxialSelfAttention`)
  G  augmented         3×3 conv and global relative self-attention side by
                       side, outputs concatenated (`AugmentedConv`: attention
                       augmentation, Bello et al. 2019: value depth υ·F_out,
                       key depth κ·F_out, output projection)

Only the 3×3 conv takes the block's stride; the others (the augmented mixer
included, both of its branches) run at full resolution and the block follows
them with a 3×3 stride-2 average pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import layers
from lambda_networks.models import common

if TYPE_CHECKING:
  from lambda_networks.models.resnet import ResNetConfig

MIXER_LETTERS = {
    "C": "conv",
    "L": "lambda",
    "A": "attention",
    "W": "local_attention",
    "X": "axial_attention",
    "G": "augmented",
}
MIXER_NAMES = tuple(MIXER_LETTERS.values())
# Mixers whose position tables cover the whole input: they need image_size.
GLOBAL_MIXERS = ("attention", "axial_attention", "augmented")


def augmented_key_features(features: int, fraction: float, heads: int) -> int:
  """Query/key channels d_k = κ·features of an augmented mixer.

  Rounded to a multiple of `heads`, at least `heads`.
  """
  return max(heads, heads * round(fraction * features / heads))


def augmented_attention_features(features: int, fraction: float,
                                 heads: int) -> int:
  """Attention channels of an augmented mixer (the rest go to the 3×3 conv).

  fraction·features rounded to a multiple of `heads`, at least `heads`;
  at least one channel must be left for the conv.
  """
  channels = augmented_key_features(features, fraction, heads)
  if channels >= features:
    raise ValueError(
        f"augmented mixer: {channels} attention channels (fraction {fraction} "
        f"of {features}, a multiple of attention_heads={heads}) leave no "
        "channels for the 3×3 conv; lower augmented_attention_fraction or "
        "attention_heads, or widen the model.")
  return channels


class AugmentedConv(nnx.Module):
  """Attention-augmented 3×3 conv: [conv(x), attention(x)] along channels.

  Of the `features` output channels, `attention_features` (d_v) come from
  global multi-head relative self-attention (`layers.RelativeSelfAttention`
  with queries and keys of `key_features` (d_k) channels and, with
  `output_projection`, the d_v×d_v projection W^O of the heads' outputs) and
  the rest from a 3×3 conv; both read all input channels at full resolution.
  """

  def __init__(self, features: int, attention_features: int, *, heads: int,
               input_size: tuple[int, int], relative_positions: bool,
               dtype: Any, param_dtype: Any, rngs: nnx.Rngs,
               key_features: int | None = None,
               output_projection: bool = False):
    kwargs = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv_features = features - attention_features
    self.attention_features = attention_features
    self.key_features = key_features or attention_features
    self.conv = common.conv(features, self.conv_features, 3, **kwargs)
    self.attention = layers.RelativeSelfAttention(
        features, attention_features, heads=heads, window=None,
        input_size=input_size, relative_positions=relative_positions,
        key_features=self.key_features, output_projection=output_projection,
        **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    conv = self.conv(x)
    attention = self.attention(x).astype(conv.dtype)
    return jnp.concatenate([conv, attention], axis=-1)


def parse_stage_mixers(spec: str | tuple[str, ...] | list[str], num_stages: int
                       ) -> tuple[str, ...]:
  """'CCLL' or ('conv', 'conv', 'lambda', 'lambda') -> mixer names per stage."""
  if isinstance(spec, str) and spec in MIXER_NAMES:
    tokens = [spec] * num_stages  # One name for every stage.
  elif isinstance(spec, str):
    letters = len(spec) == num_stages or all(c.upper() in MIXER_LETTERS for c in spec)
    tokens = list(spec) if letters else [spec]
  else:
    tokens = list(spec)
  names = []
  legend = ", ".join(f"{k}={v}" for k, v in MIXER_LETTERS.items())
  for token in tokens:
    name = MIXER_LETTERS.get(token.upper(), token) if len(token) == 1 else token
    if name not in MIXER_NAMES:
      raise ValueError(
          f"stage_mixers: unknown mixer {token!r}; use letters "
          f"{''.join(MIXER_LETTERS)} ({legend}) "
          f"or those names, one per stage, e.g. stage_mixers='CCLL'."
      )
    names.append(name)
  if len(names) != num_stages:
    raise ValueError(
        f"stage_mixers must name one mixer per stage ({num_stages} stages), got "
        f"{spec!r}; e.g. stage_mixers={'C' * (num_stages - 2) + 'LL'!r}."
    )
  return tuple(names)


def build_mixer(
    name: str,
    features: int,
    *,
    strides: int,
    input_size: tuple[int, int],
    config: ResNetConfig,
    rngs: nnx.Rngs,
    lambda_embeddings: nnx.Param | None = None,
) -> nnx.Module:
  """Builds the mixer features→features for a block whose input is input_size.

  The mixer's options (lambda k, h, u, r and method; attention heads, window
  and relative logits; the augmented mixer's fractions; batch-norm settings
  and dtypes) come from `config`. `lambda_embeddings`, if given, is the
  position table a lambda mixer shares.
  """
  cfg = config
  kwargs = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
  attention = dict(heads=cfg.attention_heads,
                   relative_positions=cfg.attention_relative, **kwargs)
  if name == "conv":
    return common.conv(features, features, 3, strides=strides, **kwargs)
  if name == "lambda":
    rf = cfg.receptive_field
    return layers.LambdaLayer(
        features, features, query_depth=cfg.query_depth, heads=cfg.heads,
        intra_depth=cfg.intra_depth, receptive_field=rf,
        input_size=input_size if rf == "global" else None,
        method=cfg.lambda_method, embeddings=lambda_embeddings,
        position_bias=cfg.lambda_position_bias,
        norm_momentum=cfg.bn_momentum, norm_epsilon=cfg.bn_epsilon,
        norm_group_size=cfg.batch_norm_group_size, **kwargs)
  if name == "augmented":
    heads = cfg.attention_heads
    key_fraction = cfg.augmented_key_fraction
    return AugmentedConv(
        features, augmented_attention_features(
            features, cfg.augmented_attention_fraction, heads),
        input_size=input_size,
        key_features=(None if key_fraction is None else
                      augmented_key_features(features, key_fraction, heads)),
        output_projection=cfg.augmented_output_projection, **attention)
  if name == "attention":
    return layers.RelativeSelfAttention(
        features, features, window=None, input_size=input_size, **attention)
  if name == "local_attention":
    return layers.RelativeSelfAttention(
        features, features, window=cfg.attention_window, **attention)
  if name == "axial_attention":
    return layers.AxialSelfAttention(
        features, features, input_size=input_size, **attention)
  raise ValueError(f"unknown mixer {name!r}; expected one of {MIXER_NAMES}.")
