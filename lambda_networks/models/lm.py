"""Byte-level causal language models: lambda layers or attention as the mixer.

`LanguageModel` maps bytes [B, T] (int, 0..255) to next-byte logits
[B, T, 256] in float32: a token embedding, `num_blocks` pre-norm residual
blocks [norm → mixer → output projection, norm → MLP], a final layer norm,
and a head tied to the embedding. The mixer is

- "lambda": the causal `layers.LambdaLayer` (layer norm on queries and
  values, so nothing is shared across positions; relative positions over a
  local `receptive_field` or the whole context, "global", its table
  initialised small enough that the position term starts at most at unit
  scale, `position_stddev_of`); no absolute positions anywhere;
- "attention": causal multi-head self-attention through
  `jax.nn.dot_product_attention` (what a user would pick: cuDNN flash
  attention on a GPU), rotary positions (RoPE) on queries and keys, the same
  width and heads.

Everything else (embedding, norms, projections, head) is identical, so the
two families differ only in the mixer. A lambda layer holds fewer weights
than attention's 3·width² query/key/value projection; with
`equal_parameters` (the default) the lambda blocks' MLP is widened by the
hidden units that make up the difference (`mlp_hidden`), so the two
families compare at equal parameters as well as equal width and depth.
Recurrent decoding of both lives in `lm_decoding.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import layers
from lambda_networks.models import common

Mixer = Literal["lambda", "attention"]
MIXERS = ("lambda", "attention")
VOCAB_SIZE = 256  # Bytes: no tokenizer to ship; invalid UTF-8 is just data.
ROPE_BASE = 10_000.0


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
  """A byte-level LM. `sequence_length` is the longest context it takes."""

  mixer: Mixer = "lambda"
  width: int = 128
  num_blocks: int = 2
  heads: int = 4
  query_depth: int = 16  # Lambda K; attention uses width / heads per head.
  intra_depth: int = 1  # Lambda U.
  receptive_field: int | str | None = 127  # Odd r (reach (r − 1)/2 back), "global", None.
  sequence_length: int = 256
  mlp_ratio: int = 4
  # Lambda only: initial standard deviation of the position table; None:
  # (query_depth · sequence_length)^-1/2 (see `position_stddev_of`).
  position_stddev: float | None = None
  # Lambda only: widen the MLP so a block holds as many parameters as the
  # attention block of the same width (see `mlp_hidden`).
  equal_parameters: bool = True
  dtype: str | None = None  # Computation dtype; None: float32.
  param_dtype: str = "float32"

  def __post_init__(self):
    if self.mixer not in MIXERS:
      raise ValueError(f"mixer must be one of {MIXERS}, got {self.mixer!r}.")
    for field in ("width", "num_blocks", "heads", "query_depth", "intra_depth",
                  "sequence_length", "mlp_ratio"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be a positive int, got {value!r}.")
    if self.width % self.heads:
      raise ValueError(f"width ({self.width}) must be divisible by heads "
                       f"({self.heads}).")
    if self.mixer == "attention" and (self.width // self.heads) % 2:
      raise ValueError(f"attention needs an even depth per head for rotary "
                       f"positions, got width / heads = {self.width // self.heads}.")


class CausalSelfAttention(nnx.Module):
  """Causal multi-head self-attention with rotary positions (the baseline)."""

  def __init__(self, width: int, *, heads: int, dtype, param_dtype, rngs: nnx.Rngs):
    self.heads, self.head_depth = heads, width // heads
    self.qkv_proj = nnx.Linear(width, 3 * width, use_bias=False, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs)

  def projections(self, inputs: jax.Array, positions: jax.Array):
    """Rotated queries and keys and the values, each [B, T, heads, depth]."""
    qkv = self.qkv_proj(inputs).reshape(*inputs.shape[:-1], 3, self.heads,
                                        self.head_depth)
    queries, keys, values = (qkv[..., i, :, :] for i in range(3))
    return rotate(queries, positions), rotate(keys, positions), values

  def __call__(self, inputs: jax.Array) -> jax.Array:
    queries, keys, values = self.projections(inputs, jnp.arange(inputs.shape[1]))
    out = jax.nn.dot_product_attention(queries, keys, values, is_causal=True)
    return out.reshape(*inputs.shape[:-1], -1)


def rotate(x: jax.Array, positions: jax.Array) -> jax.Array:
  """Rotary position embedding of x [B, T, heads, D] at `positions` [T]."""
  half = x.shape[-1] // 2
  frequencies = ROPE_BASE ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions.astype(jnp.float32)[:, None] * frequencies  # [T, D/2]
  cos, sin = (f(angles)[:, None, :].astype(x.dtype) for f in (jnp.cos, jnp.sin))
  first, second = x[..., :half], x[..., half:]
  return jnp.concatenate([first * cos - second * sin,
                          first * sin + second * cos], axis=-1)


def make_mixer(config: LanguageModelConfig, *, rngs: nnx.Rngs) -> nnx.Module:
  """The block's sequence mixer: a causal lambda layer or attention."""
  dense = dict(dtype=common.as_dtype(config.dtype),
               param_dtype=common.as_dtype(config.param_dtype), rngs=rngs)
  if config.mixer == "lambda":
    return layers.LambdaLayer(
        config.width, config.width, query_depth=config.query_depth,
        heads=config.heads, intra_depth=config.intra_depth,
        receptive_field=config.receptive_field,
        input_size=config.sequence_length, spatial_dims=1, causal=True,
        normalization="layer", embedding_stddev=position_stddev_of(config),
        **dense)
  return CausalSelfAttention(config.width, heads=config.heads, **dense)


def position_stddev_of(config: LanguageModelConfig) -> float:
  """The position table's initial standard deviation.

  A query's position term sums up to sequence_length layer-normed values,
  each through query_depth table entries: with the paper's unit table
  (made for images, whose tables are small) it starts √(k·L) times the scale
  of the block's input (45× for tiny at 128 bytes), and the model first has
  to unlearn it. (k·L)^-1/2 starts it at most at unit scale; measured in
  docs/language_models.md.
  """
  if config.position_stddev is not None:
    return config.position_stddev
  return (config.query_depth * config.sequence_length) ** -0.5


def mlp_hidden(config: LanguageModelConfig) -> int:
  """Hidden units of a block's MLP: mlp_ratio · width, plus, for a lambda
  block with `equal_parameters`, the attention mixer's extra weights divided
  by the 2·width + 1 weights one hidden unit holds (rounded; never fewer).

  The lambda layer's own count (projections, query/value norms, position
  table; it depends on `receptive_field` and, for "global", on
  `sequence_length`) is read from an abstract layer, so the rule follows any
  override; the blocks then differ by at most width weights.
  """
  hidden = config.mlp_ratio * config.width
  if config.mixer != "lambda" or not config.equal_parameters:
    return hidden
  lambda_count, attention_count = (
      common.count_parameters(nnx.eval_shape(lambda c=c: make_mixer(
          c, rngs=nnx.Rngs(0))))
      for c in (config, dataclasses.replace(config, mixer="attention")))
  extra = (attention_count - lambda_count) / (2 * config.width + 1)
  return hidden + max(0, round(extra))


class Block(nnx.Module):
  """Pre-norm residual block: x + proj(mixer(norm(x))), then x + mlp(norm(x))."""

  def __init__(self, config: LanguageModelConfig, *, rngs: nnx.Rngs):
    width, dtype = config.width, common.as_dtype(config.dtype)
    param_dtype = common.as_dtype(config.param_dtype)
    dense = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.mixer_norm = nnx.LayerNorm(width, **dense)
    self.mixer = make_mixer(config, rngs=rngs)
    self.output_proj = nnx.Linear(width, width, use_bias=False, **dense)
    self.mlp_norm = nnx.LayerNorm(width, **dense)
    hidden = mlp_hidden(config)
    self.mlp_in = nnx.Linear(width, hidden, **dense)
    self.mlp_out = nnx.Linear(hidden, width, **dense)

  def mlp(self, x: jax.Array) -> jax.Array:
    """The position-wise half of the block (residual included)."""
    return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.mlp_norm(x))))

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.output_proj(self.mixer(self.mixer_norm(x)))
    return self.mlp(x)


class LanguageModel(nnx.Module):
  """Bytes [B, T] → next-byte logits [B, T, vocabulary] (see module docstring)."""

  def __init__(self, config: LanguageModelConfig, *, num_classes: int = VOCAB_SIZE,
               rngs: nnx.Rngs):
    """num_classes is the vocabulary (256 for bytes); the registry passes it."""
    self.config = config
    dtype = common.as_dtype(config.dtype)
    param_dtype = common.as_dtype(config.param_dtype)
    self.embedding = nnx.Embed(num_classes, config.width, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs)
    self.blocks = nnx.List([Block(config, rngs=rngs)
                            for _ in range(config.num_blocks)])
    self.final_norm = nnx.LayerNorm(config.width, dtype=dtype,
                                    param_dtype=param_dtype, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """Logits [B, T, vocabulary] (float32); position t sees tokens ≤ t only."""
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f"tokens must be integer bytes [B, T], got "
                       f"{tokens.dtype} {tokens.shape}.")
    if tokens.shape[1] > self.config.sequence_length:
      raise ValueError(
          f"{tokens.shape[1]} tokens exceed the model's sequence_length "
          f"{self.config.sequence_length}; build it with a longer one.")
    return self.head(self.hidden(self.embedding(tokens)))

  def hidden(self, x: jax.Array) -> jax.Array:
    """The blocks over embedded inputs [B, T, width] (before the head)."""
    for block in self.blocks:
      x = block(x)
    return x

  def head(self, x: jax.Array) -> jax.Array:
    """Final norm and the tied output projection, in float32."""
    return self.embedding.attend(self.final_norm(x)).astype(jnp.float32)


def sizes() -> dict[str, dict]:
  """The named sizes (fields of LanguageModelConfig) of both families."""
  return {
      "tiny": dict(width=128, num_blocks=2, heads=4, sequence_length=256),
      "small": dict(width=256, num_blocks=4, heads=4, sequence_length=1024),
      "base": dict(width=512, num_blocks=8, heads=8, sequence_length=2048),
  }
