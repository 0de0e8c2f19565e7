"""The spatial mixer of a bottleneck block: 3×3 conv, lambda layer or attention.

A ResNet config names one mixer per stage, by name or, as a command-line
shorthand, by letter (stage_mixers='CCLL'):

  C  conv              3×3 convolution (the ResNet baseline)
  L  lambda            `layers.LambdaLayer` (k, h, u, r from the spec)
  A  attention         global relative self-attention (`RelativeSelfAttention`)
  W  local_attention   7×7-window relative self-attention (SASA)
  X  axial_attention   axial self-attention (`AxialSelfAttention`)
  G  augmented         3×3 conv and global relative self-attention side by
                       side, outputs concatenated (`AugmentedConv`: attention
                       augmentation, Bello et al. 2019: value depth υ·F_out,
                       key depth κ·F_out, output projection)

`build_mixer` reads a mixer's options from a `MixerSpec`, which a model's
config makes per stage (`ResNetConfig.mixer_spec`); this module knows no
model. Only the 3×3 conv takes the block's stride; the others (the augmented
mixer included, both of its branches) run at full resolution and the block
follows them with a 3×3 stride-2 average pool.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import layers
from lambda_networks import ops
from lambda_networks.models import common

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
# lambda_method="measure": the trainer times each execution of the model's
# lambda layers and replaces it by the fastest per stage
# (`train/lambda_measure.py`); a model cannot be built with it unresolved.
MEASURE = "measure"


@dataclasses.dataclass(frozen=True)
class MixerSpec:
  """What a mixer is built from, beside its width and input size.

  A model's config makes one per stage (`ResNetConfig.mixer_spec`, whose
  fields hold the defaults); any model that wants these mixers can make
  its own.

  Attributes:
    query_depth, heads, intra_depth, receptive_field, lambda_method,
      lambda_position_bias: the lambda layer's k, h, u, r, its execution of
      the position term (one of `ops.METHODS`) and its position bias.
    attention_heads, attention_window, attention_relative: the
      self-attention mixers' heads, local window and relative logits.
    augmented_attention_fraction, augmented_key_fraction,
      augmented_output_projection: the augmented mixer's υ, κ (None: d_k =
      d_v) and output projection W^O.
    norm_momentum, norm_epsilon, norm_group_size: batch norm of the lambda
      layer's queries and values.
    dtype, param_dtype: computation and parameter dtypes.
  """

  query_depth: int
  heads: int
  intra_depth: int
  receptive_field: int | str | None
  lambda_method: str
  lambda_position_bias: bool
  attention_heads: int
  attention_window: int
  attention_relative: bool
  augmented_attention_fraction: float
  augmented_key_fraction: float | None
  augmented_output_projection: bool
  norm_momentum: float
  norm_epsilon: float
  norm_group_size: int
  dtype: Any = None
  param_dtype: Any = jnp.float32


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


def parse_lambda_methods(spec: str | tuple[str, ...] | list[str],
                         num_stages: int) -> tuple[str, ...]:
  """'conv', 'auto,auto,conv,einsum' or a tuple -> one method per stage.

  Each is one of `ops.METHODS`; 'measure' stands alone (for every stage).
  """
  if isinstance(spec, str) and "," in spec:
    spec = tuple(token.strip(" '\"") for token in spec.strip("()[] ").split(","))
  tokens = (spec,) * num_stages if isinstance(spec, str) else tuple(spec)
  allowed = ops.METHODS + (MEASURE,)
  for token in tokens:
    if token not in allowed or (token == MEASURE and not isinstance(spec, str)):
      raise ValueError(
          f"lambda_method: unknown method {token!r}; use one of {allowed} for "
          f"every stage, or one of {ops.METHODS} per stage, e.g. "
          f"lambda_method={('auto',) * (num_stages - 1) + ('conv',)!r}.")
  if len(tokens) != num_stages:
    raise ValueError(
        f"lambda_method needs one method per stage ({num_stages} stages), got "
        f"{len(tokens)} in {spec!r}; or give one name for every stage.")
  return tokens


def build_mixer(
    name: str,
    features: int,
    *,
    strides: int,
    input_size: tuple[int, int],
    spec: MixerSpec,
    rngs: nnx.Rngs,
    lambda_embeddings: nnx.Param | None = None,
) -> nnx.Module:
  """Builds the mixer features→features for a block whose input is input_size.

  The mixer's options come from `spec`. `lambda_embeddings`, if given, is
  the position table a lambda mixer shares.
  """
  kwargs = dict(dtype=spec.dtype, param_dtype=spec.param_dtype, rngs=rngs)
  attention = dict(heads=spec.attention_heads,
                   relative_positions=spec.attention_relative, **kwargs)
  if name == "conv":
    return common.conv(features, features, 3, strides=strides, **kwargs)
  if name == "lambda":
    rf = spec.receptive_field
    return layers.LambdaLayer(
        features, features, query_depth=spec.query_depth, heads=spec.heads,
        intra_depth=spec.intra_depth, receptive_field=rf,
        input_size=input_size if rf == "global" else None,
        method=spec.lambda_method, embeddings=lambda_embeddings,
        position_bias=spec.lambda_position_bias,
        norm_momentum=spec.norm_momentum, norm_epsilon=spec.norm_epsilon,
        norm_group_size=spec.norm_group_size, **kwargs)
  if name == "augmented":
    heads = spec.attention_heads
    key_fraction = spec.augmented_key_fraction
    return AugmentedConv(
        features, augmented_attention_features(
            features, spec.augmented_attention_fraction, heads),
        input_size=input_size,
        key_features=(None if key_fraction is None else
                      augmented_key_features(features, key_fraction, heads)),
        output_projection=spec.augmented_output_projection, **attention)
  if name == "attention":
    return layers.RelativeSelfAttention(
        features, features, window=None, input_size=input_size, **attention)
  if name == "local_attention":
    return layers.RelativeSelfAttention(
        features, features, window=spec.attention_window, **attention)
  if name == "axial_attention":
    return layers.AxialSelfAttention(
        features, features, input_size=input_size, **attention)
  raise ValueError(f"unknown mixer {name!r}; expected one of {MIXER_NAMES}.")
