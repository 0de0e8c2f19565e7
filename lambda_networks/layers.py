"""Flax NNX layers: the lambda layer and the self-attention baselines.

They take sequences [B, N, C] (spatial_dims=1) or feature maps [B, H, W, C]
(spatial_dims=2; RelativeSelfAttention and AxialSelfAttention take maps only)
and return the same layout with `out_features` channels. The layers hold the
parameters and check their arguments; the math is in `ops` (lambda) and
`attention_ops` (attention).
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import attention_ops, group_batch_norm, ops
from lambda_networks import layer_checks as checks

Normalization = Literal["batch", "layer", "none"]
NORMALIZATIONS = ("batch", "layer", "none")


class LambdaLayer(nnx.Module):
  """The lambda layer (Bello, 2021): content and relative position lambdas.

  Its definition and notation: docs/paper.md#the-lambda-layer.

  Queries, keys and values come from bias-free projections; queries and values
  are normalised (batch norm by default), keys get a softmax over positions.
  One lambda serves all `heads` query heads, so the value depth is
  out_features / heads.
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      *,
      query_depth: int = 16,
      heads: int = 4,
      intra_depth: int = 1,
      receptive_field: int | Literal["global"] | None = 23,
      input_size: int | tuple[int, ...] | None = None,
      spatial_dims: int = 2,
      causal: bool = False,
      normalization: Normalization = "batch",
      method: ops.Method = "auto",
      embedding_stddev: float = 1.0,
      dtype: jnp.dtype | None = None,
      param_dtype: jnp.dtype = jnp.float32,
      rngs: nnx.Rngs,
      embeddings: nnx.Param | None = None,
      norm_momentum: float = 0.9,
      norm_epsilon: float = 1e-5,
      norm_group_size: int = 0,
      position_bias: bool = False,
  ):
    """Creates the layer.

    Args:
      in_features: input channels C.
      out_features: output channels; must be divisible by `heads`.
      query_depth: K, the query/key depth (paper default 16).
      heads: H, query heads sharing one lambda (paper default 4).
      intra_depth: U, the intra-depth (paper default 1; 4 with r = 7).
      receptive_field: odd side length r of the local relative scope (the
        lambda convolution), "global" for every offset of an `input_size`
        input, or None for content lambdas only.
      input_size: largest spatial size (int per axis or tuple) the layer will
        see; required with receptive_field="global".
      spatial_dims: 1 for sequences [B, N, C], 2 for feature maps [B, H, W, C].
      causal: position n only sees positions m ≤ n (sequences only).
      normalization: "batch" (paper), "layer" (per position: no statistics
        shared across positions, for causal training), or "none", applied to
        queries and values.
      method: execution of the position term, see `ops.lambda_interactions`.
      embedding_stddev: initial standard deviation of the position table.
      dtype: computation dtype (e.g. jnp.bfloat16); None keeps the input's.
      param_dtype: parameter dtype.
      rngs: random number streams for initialisation.
      embeddings: an existing position table [*table, K, U] to use (and share:
        the layer holds this very nnx.Param) instead of creating one; its shape
        must match what the layer would create.
      norm_momentum: running-average decay of the batch norms.
      norm_epsilon: epsilon of the batch norms.
      norm_group_size: the batch norms' training statistics over groups of
        this many examples (`group_batch_norm`); 0: the whole batch.
      position_bias: add a learned bias b[k] (zeros at first) to every
        position lambda, λᵖₙ[k, v] += b[k], so each query head gains q·b: the
        bias of timm's lambda convolution (a Conv3d with bias=True). Needs a
        position table.
    """
    checks.positive(in_features=in_features, out_features=out_features,
                    query_depth=query_depth, heads=heads, intra_depth=intra_depth)
    checks.divisible(heads, out_features=out_features)
    checks.layout(spatial_dims, causal)
    checks.one_of("method", method, ops.METHODS)
    self.in_features, self.out_features, self.heads = in_features, out_features, heads
    self.query_depth = query_depth
    self.intra_depth = intra_depth
    self.value_depth = out_features // heads
    self.spatial_dims = spatial_dims
    self.causal = causal
    self.method = method
    self.dtype = dtype
    self.table_shape = _table_shape(receptive_field, input_size, spatial_dims)
    self.global_size = (
        tuple((width + 1) // 2 for width in self.table_shape)
        if receptive_field == "global" else None
    )
    linear = functools.partial(_projection, in_features, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs)
    # Paper initialisation: W_Q ~ N(0, (d·k)^-1/2), W_K, W_V ~ N(0, d^-1/2)
    # (standard deviations; docs/paper.md#initialisation-and-precision).
    self.query_proj = linear(heads * query_depth,
                             stddev=(in_features * query_depth) ** -0.5)
    self.key_proj = linear(query_depth * intra_depth)
    self.value_proj = linear(self.value_depth * intra_depth)
    norm = functools.partial(_norm, normalization, dtype=dtype, param_dtype=param_dtype,
                             rngs=rngs, momentum=norm_momentum, epsilon=norm_epsilon,
                             group_size=norm_group_size)
    self.query_norm = norm(heads * query_depth)
    self.value_norm = norm(self.value_depth * intra_depth)
    shape = (None if self.table_shape is None else
             (*self.table_shape, query_depth, intra_depth))
    if embeddings is not None:
      _check_embeddings(embeddings, shape, f"table {self.table_shape}, query_depth "
                        f"{query_depth}, intra_depth {intra_depth}")
      self.embeddings = embeddings
    elif shape is None:
      self.embeddings = None
    else:
      self.embeddings = nnx.Param(
          embedding_stddev * jax.random.normal(rngs.params(), shape, param_dtype)
      )
    if position_bias and shape is None:
      raise ValueError("position_bias=True needs a position table; set a "
                       "receptive_field or drop position_bias.")
    self.position_bias = (nnx.Param(jnp.zeros((query_depth,), param_dtype))
                          if position_bias else None)

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Maps [B, *S, in_features] to [B, *S, out_features]."""
    inputs, (batch, *spatial, _) = checks.prepare_input(
        inputs, self.in_features, self.spatial_dims, self.dtype,
        self.global_size, "global lambda")
    queries = _apply(self.query_norm, self.query_proj(inputs))
    keys = self.key_proj(inputs)
    values = _apply(self.value_norm, self.value_proj(inputs))
    embeddings = None if self.embeddings is None else self.embeddings[...].astype(
        queries.dtype)
    queries = queries.reshape(batch, *spatial, self.heads, self.query_depth)
    out = ops.lambda_interactions(
        queries,
        keys.reshape(batch, *spatial, self.query_depth, self.intra_depth),
        values.reshape(batch, *spatial, self.value_depth, self.intra_depth),
        embeddings,
        causal=self.causal,
        method=self.method,
    )
    if self.position_bias is not None:
      bias = self.position_bias[...].astype(queries.dtype)
      out = out + jnp.einsum("...hk,k->...h", queries, bias)[..., None]
    return out.reshape(batch, *spatial, self.out_features)


class MultiHeadSelfAttention(nnx.Module):
  """Multi-head dot-product self-attention over all positions (the baseline).

  It materialises the [B, heads, N, N] attention maps, which is exactly the
  cost the lambda layer avoids. Content-only (no position term).
  """

  def __init__(self, in_features: int, out_features: int, *, heads: int = 4,
               key_depth: int | None = None, spatial_dims: int = 2,
               causal: bool = False, dtype: jnp.dtype | None = None,
               param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    """Creates the layer; key_depth defaults to out_features / heads."""
    checks.positive(in_features=in_features, out_features=out_features,
                    heads=heads, key_depth=key_depth)
    checks.divisible(heads, out_features=out_features)
    checks.layout(spatial_dims, causal)
    self.in_features, self.out_features, self.heads = in_features, out_features, heads
    self.key_depth = key_depth or out_features // heads
    self.value_depth = out_features // heads
    self.spatial_dims = spatial_dims
    self.causal = causal
    self.dtype = dtype
    linear = functools.partial(_projection, in_features, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs)
    self.query_proj = linear(heads * self.key_depth)
    self.key_proj = linear(heads * self.key_depth)
    self.value_proj = linear(out_features)

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Maps [B, *S, in_features] to [B, *S, out_features]."""
    inputs, (batch, *spatial, _) = checks.prepare_input(
        inputs, self.in_features, self.spatial_dims, self.dtype)
    flat = inputs.reshape(batch, -1, self.in_features)
    queries, keys, values = (
        projection(flat).reshape(*flat.shape[:2], self.heads, -1)
        for projection in (self.query_proj, self.key_proj, self.value_proj))
    out = attention_ops.dot_product_attention(queries, keys, values,
                                              causal=self.causal)
    return out.reshape(batch, *spatial, self.out_features)


class RelativeSelfAttention(nnx.Module):
  """Multi-head 2D self-attention with relative position logits.

  logits[n, m] = q_n·k_m + q_n·R_row[y_m − y_n] + q_n·R_col[x_m − x_n] per
  head, with q scaled by key_depth^-1/2: the factorised relative logits of
  attention augmentation (Bello et al., 2019) and stand-alone self-attention
  (SASA, Ramachandran et al., 2019), the tables shared by the heads.

  window=None attends over every position (the global baseline of the paper's
  Table 4; its tables cover 2·size − 1 offsets, so it needs `input_size`).
  An odd `window` w attends over the w×w neighbourhood of each query (SASA's
  local self-attention; positions outside the map are masked out).
  """

  def __init__(self, in_features: int, out_features: int, *, heads: int = 8,
               window: int | None = None,
               input_size: int | tuple[int, int] | None = None,
               relative_positions: bool = True, dtype: jnp.dtype | None = None,
               param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs,
               key_features: int | None = None, output_projection: bool = False):
    """Creates the layer.

    The value depth per head is out_features / heads; the query/key depth per
    head is key_features / heads (key_features defaults to out_features).
    output_projection adds the out×out mixing of the heads' outputs (W^O of
    multi-head attention).
    """
    key_features = key_features or out_features
    checks.positive(in_features=in_features, out_features=out_features,
                    key_features=key_features, heads=heads)
    checks.divisible(heads, out_features=out_features, key_features=key_features)
    if window is not None:
      checks.odd("window", window)
    self.in_features, self.out_features, self.heads = in_features, out_features, heads
    self.key_depth = key_features // heads
    self.value_depth = out_features // heads
    self.window = window
    self.dtype = dtype
    self.max_size = None
    if relative_positions and window is None:
      self.max_size = checks.spatial_sizes(
          input_size, 2, "relative_positions with window=None")
    widths = (None if not relative_positions else
              (window, window) if window is not None else
              _offset_widths(self.max_size))
    linear = functools.partial(_projection, dtype=dtype, param_dtype=param_dtype,
                               rngs=rngs)
    self.query_proj, self.key_proj, self.value_proj = (
        linear(in_features, features)
        for features in (key_features, key_features, out_features))
    self.output_proj = (linear(out_features, out_features)
                        if output_projection else None)
    self.row_embeddings, self.col_embeddings = _relative_tables(
        widths, self.key_depth, param_dtype, rngs)

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Maps [B, H, W, in_features] to [B, H, W, out_features]."""
    inputs, (batch, height, width, _) = checks.prepare_input(
        inputs, self.in_features, 2, self.dtype, self.max_size,
        "RelativeSelfAttention")
    queries, keys, values = _heads(
        (self.query_proj, self.key_proj, self.value_proj), inputs, self.heads,
        self.key_depth)
    tables = [None if table is None else table[...]
              for table in (self.row_embeddings, self.col_embeddings)]
    if self.window is None:
      out = attention_ops.global_relative_attention(queries, keys, values, *tables)
    else:
      out = attention_ops.local_relative_attention(queries, keys, values,
                                                   self.window, *tables)
    out = out.reshape(batch, height, width, self.out_features)
    return out if self.output_proj is None else self.output_proj(out)


class AxialSelfAttention(nnx.Module):
  """Axial self-attention: along the height axis, then along the width axis.

  Each pass is multi-head self-attention over one axis with 1D relative
  position logits (Ho et al., 2019; Axial-DeepLab, Wang et al., 2020), so two
  passes reach the whole map at a cost of Θ(n·(H + W)) instead of Θ(n²). The
  first pass maps in→out features, the second out→out; the relative tables
  cover 2·size − 1 offsets per axis and so need `input_size`.
  """

  def __init__(self, in_features: int, out_features: int, *, heads: int = 8,
               input_size: int | tuple[int, int] | None = None,
               relative_positions: bool = True, dtype: jnp.dtype | None = None,
               param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    """Creates the layer; the key and value depth per head is out/heads."""
    checks.positive(in_features=in_features, out_features=out_features, heads=heads)
    checks.divisible(heads, out_features=out_features)
    self.in_features, self.out_features, self.heads = in_features, out_features, heads
    self.key_depth = out_features // heads
    self.dtype = dtype
    self.max_size = None
    if relative_positions:
      self.max_size = checks.spatial_sizes(
          input_size, 2, "AxialSelfAttention with relative_positions")
    linear = functools.partial(_projection, dtype=dtype, param_dtype=param_dtype,
                               rngs=rngs)
    self.height_proj = nnx.List([linear(in_features, out_features) for _ in range(3)])
    self.width_proj = nnx.List([linear(out_features, out_features) for _ in range(3)])
    self.height_embeddings, self.width_embeddings = _relative_tables(
        self.max_size and _offset_widths(self.max_size), self.key_depth,
        param_dtype, rngs)

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Maps [B, H, W, in_features] to [B, H, W, out_features]."""
    inputs, _ = checks.prepare_input(inputs, self.in_features, 2, self.dtype,
                                     self.max_size, "AxialSelfAttention")
    out = self._axis_pass(inputs, self.height_proj, self.height_embeddings)
    out = jnp.swapaxes(out, 1, 2)  # Attend along the width axis next.
    out = self._axis_pass(out, self.width_proj, self.width_embeddings)
    return jnp.swapaxes(out, 1, 2)

  def _axis_pass(self, inputs, projections, table) -> jax.Array:
    """Self-attention along axis 1 of [B, L, M, C] (M acts as a batch axis)."""
    queries, keys, values = _heads(projections, inputs, self.heads, self.key_depth)
    out = attention_ops.axial_attention(queries, keys, values,
                                        None if table is None else table[...])
    return out.reshape(*inputs.shape[:-1], self.out_features)


# Parameters.


def _projection(in_features: int, out_features: int, *, dtype, param_dtype, rngs,
                stddev: float | None = None) -> nnx.Linear:
  """A bias-free projection in→out, N(0, stddev) initialised (default in^-1/2)."""
  stddev = in_features ** -0.5 if stddev is None else stddev
  return nnx.Linear(in_features, out_features, use_bias=False, dtype=dtype,
                    param_dtype=param_dtype,
                    kernel_init=nnx.initializers.normal(stddev), rngs=rngs)


def _heads(projections, inputs: jax.Array, heads: int, key_depth: int):
  """Queries (scaled by key_depth^-1/2), keys and values [..., heads, depth]."""
  query_proj, key_proj, value_proj = projections
  shape = (*inputs.shape[:-1], heads, key_depth)
  return (query_proj(inputs).reshape(shape) * key_depth ** -0.5,
          key_proj(inputs).reshape(shape),
          value_proj(inputs).reshape(*shape[:-1], -1))


def _relative_tables(widths, depth, param_dtype, rngs):
  """Two relative position tables [width_i, depth] (None, None: no tables)."""
  if widths is None:
    return None, None
  return tuple(
      nnx.Param(depth ** -0.5 * jax.random.normal(rngs.params(), (width, depth),
                                                   param_dtype))
      for width in widths
  )


def _norm(kind: Normalization, features: int, *, dtype, param_dtype, rngs,
          momentum: float = 0.9, epsilon: float = 1e-5, group_size: int = 0):
  """The normalisation applied to queries and values (None: identity)."""
  checks.one_of("normalization", kind, NORMALIZATIONS)
  if kind == "batch":
    return group_batch_norm.batch_norm(
        features, group_size=group_size, momentum=momentum, epsilon=epsilon,
        dtype=dtype, param_dtype=param_dtype, rngs=rngs)
  if kind == "layer":
    return nnx.LayerNorm(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
  return None


def _apply(norm, x: jax.Array) -> jax.Array:
  return x if norm is None else norm(x)


def _table_shape(receptive_field, input_size, spatial_dims) -> tuple[int, ...] | None:
  """Width per spatial axis of the relative position table (None: no table)."""
  if receptive_field is None:
    return None
  if receptive_field == "global":
    return _offset_widths(checks.spatial_sizes(input_size, spatial_dims,
                                               "receptive_field='global'"))
  checks.odd("receptive_field", receptive_field, " ('global' or None also work)")
  return (receptive_field,) * spatial_dims


def _offset_widths(sizes: tuple[int, ...]) -> tuple[int, ...]:
  """Table widths covering every offset −(size − 1)..size − 1 per axis."""
  return tuple(2 * size - 1 for size in sizes)


def _check_embeddings(embeddings, shape, detail: str) -> None:
  """A shared position table must be an nnx.Param of the layer's own shape."""
  if not isinstance(embeddings, nnx.Param):
    raise ValueError(
        f"embeddings must be an nnx.Param (to share it between layers), got "
        f"{type(embeddings).__name__}.")
  if shape is None:
    raise ValueError(
        "embeddings were given but receptive_field=None has no position "
        "table; pass a receptive_field or drop embeddings.")
  if tuple(embeddings.shape) != shape:
    raise ValueError(
        f"embeddings have shape {tuple(embeddings.shape)}, but this layer "
        f"needs {shape} ({detail}).")
