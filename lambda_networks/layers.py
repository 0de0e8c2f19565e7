"""Flax NNX layers: the lambda layer and the self-attention baseline.

Both take sequences [B, N, C] (spatial_dims=1) or feature maps [B, H, W, C]
(spatial_dims=2) and return the same layout with `out_features` channels.
"""

from __future__ import annotations

import math
import operator
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import ops

Normalization = Literal["batch", "layer", "none"]


class LambdaLayer(nnx.Module):
  """The lambda layer (Bello, 2021): content and relative position lambdas.

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
    """
    _check_positive(in_features=in_features, out_features=out_features,
                    query_depth=query_depth, heads=heads, intra_depth=intra_depth)
    if out_features % heads:
      raise ValueError(
          f"out_features ({out_features}) must be divisible by heads ({heads}): "
          "the value depth is out_features / heads."
      )
    if spatial_dims not in (1, 2):
      raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims}.")
    if causal and spatial_dims != 1:
      raise ValueError("causal=True needs spatial_dims=1 (sequences [B, N, C]).")
    if method not in ops.METHODS:
      raise ValueError(f"method must be one of {ops.METHODS}, got {method!r}.")
    self.in_features = in_features
    self.out_features = out_features
    self.query_depth = query_depth
    self.heads = heads
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

    def projection(features: int, stddev: float) -> nnx.Linear:
      return nnx.Linear(
          in_features, features, use_bias=False, dtype=dtype,
          param_dtype=param_dtype,
          kernel_init=nnx.initializers.normal(stddev), rngs=rngs,
      )

    # Paper initialisation: W_Q ~ N(0, (d·k)^-1/2), W_K, W_V ~ N(0, d^-1/2).
    self.query_proj = projection(heads * query_depth, (in_features * query_depth) ** -0.5)
    self.key_proj = projection(query_depth * intra_depth, in_features ** -0.5)
    self.value_proj = projection(self.value_depth * intra_depth, in_features ** -0.5)
    norm = dict(momentum=norm_momentum, epsilon=norm_epsilon)
    self.query_norm = _norm(normalization, heads * query_depth, dtype, param_dtype,
                            rngs, **norm)
    self.value_norm = _norm(normalization, self.value_depth * intra_depth, dtype,
                            param_dtype, rngs, **norm)
    shape = (None if self.table_shape is None else
             (*self.table_shape, query_depth, intra_depth))
    if embeddings is not None:
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
            f"needs {shape} (table {self.table_shape}, query_depth "
            f"{query_depth}, intra_depth {intra_depth}).")
      self.embeddings = embeddings
    elif shape is None:
      self.embeddings = None
    else:
      self.embeddings = nnx.Param(
          embedding_stddev * jax.random.normal(rngs.params(), shape, param_dtype)
      )

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Maps [B, *S, in_features] to [B, *S, out_features]."""
    inputs, (batch, *spatial, _) = _prepare_input(
        inputs, self.in_features, self.spatial_dims, self.dtype,
        self.global_size, "global lambda")
    queries = _apply(self.query_norm, self.query_proj(inputs))
    keys = self.key_proj(inputs)
    values = _apply(self.value_norm, self.value_proj(inputs))
    embeddings = None if self.embeddings is None else self.embeddings[...].astype(
        queries.dtype)
    out = ops.lambda_interactions(
        queries.reshape(batch, *spatial, self.heads, self.query_depth),
        keys.reshape(batch, *spatial, self.query_depth, self.intra_depth),
        values.reshape(batch, *spatial, self.value_depth, self.intra_depth),
        embeddings,
        causal=self.causal,
        method=self.method,
    )
    return out.reshape(batch, *spatial, self.out_features)


class MultiHeadSelfAttention(nnx.Module):
  """Multi-head dot-product self-attention over all positions (the baseline).

  It materialises the [B, heads, N, N] attention maps, which is exactly the
  cost the lambda layer avoids. Content-only (no position term).
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      *,
      heads: int = 4,
      key_depth: int | None = None,
      spatial_dims: int = 2,
      causal: bool = False,
      dtype: jnp.dtype | None = None,
      param_dtype: jnp.dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Creates the layer; key_depth defaults to out_features / heads."""
    _check_positive(in_features=in_features, out_features=out_features,
                    heads=heads)
    if key_depth is not None:
      _check_positive(key_depth=key_depth)
    if out_features % heads:
      raise ValueError(
          f"out_features ({out_features}) must be divisible by heads ({heads})."
      )
    if spatial_dims not in (1, 2):
      raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims}.")
    if causal and spatial_dims != 1:
      raise ValueError("causal=True needs spatial_dims=1 (sequences [B, N, C]).")
    self.in_features = in_features
    self.out_features = out_features
    self.heads = heads
    self.key_depth = key_depth or out_features // heads
    self.value_depth = out_features // heads
    self.spatial_dims = spatial_dims
    self.causal = causal
    self.dtype = dtype

    def projection(features: int) -> nnx.Linear:
      return nnx.Linear(
          in_features, features, use_bias=False, dtype=dtype,
          param_dtype=param_dtype,
          kernel_init=nnx.initializers.normal(in_features ** -0.5), rngs=rngs,
      )

    self.query_proj = projection(heads * self.key_depth)
    self.key_proj = projection(heads * self.key_depth)
    self.value_proj = projection(out_features)

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Maps [B, *S, in_features] to [B, *S, out_features]."""
    inputs, (batch, *spatial, _) = _prepare_input(
        inputs, self.in_features, self.spatial_dims, self.dtype)
    num_positions = math.prod(spatial)
    flat = inputs.reshape(batch, num_positions, self.in_features)
    queries = self.query_proj(flat).reshape(batch, num_positions, self.heads, -1)
    keys = self.key_proj(flat).reshape(batch, num_positions, self.heads, -1)
    values = self.value_proj(flat).reshape(batch, num_positions, self.heads, -1)
    logits = jnp.einsum("bnhd,bmhd->bhnm", queries, keys,
                        preferred_element_type=jnp.float32)
    logits = logits * self.key_depth ** -0.5
    if self.causal:
      visible = jnp.tril(jnp.ones((num_positions, num_positions), bool))
      logits = jnp.where(visible, logits, -jnp.inf)
    weights = jax.nn.softmax(logits, axis=-1).astype(values.dtype)
    out = jnp.einsum("bhnm,bmhv->bnhv", weights, values)
    return out.reshape(batch, *spatial, self.out_features)


def _table_shape(receptive_field, input_size, spatial_dims) -> tuple[int, ...] | None:
  """Width per spatial axis of the relative position table (None: no table)."""
  if receptive_field is None:
    return None
  if receptive_field == "global":
    if input_size is None:
      raise ValueError(
          "receptive_field='global' needs input_size (the largest spatial size "
          "the layer sees) to size its table of 2·size − 1 offsets per axis."
      )
    sizes = (input_size,) * spatial_dims if isinstance(input_size, int) else tuple(
        input_size)
    if len(sizes) != spatial_dims or min(sizes) < 1:
      raise ValueError(
          f"input_size must be a positive int or {spatial_dims} positive ints, "
          f"got {input_size!r}."
      )
    return tuple(2 * size - 1 for size in sizes)
  if isinstance(receptive_field, bool) or not isinstance(receptive_field, int):
    raise ValueError(
        f"receptive_field must be an odd int, 'global' or None, got "
        f"{receptive_field!r}."
    )
  if receptive_field < 1 or receptive_field % 2 == 0:
    raise ValueError(
        f"receptive_field must be odd and positive so the scope is centred on "
        f"the query, got {receptive_field}."
    )
  return (receptive_field,) * spatial_dims


def _norm(kind: Normalization, features: int, dtype, param_dtype, rngs, *,
          momentum: float = 0.9, epsilon: float = 1e-5):
  """The normalisation applied to queries and values (None: identity)."""
  if kind == "batch":
    return nnx.BatchNorm(features, momentum=momentum, epsilon=epsilon,
                         dtype=dtype, param_dtype=param_dtype, rngs=rngs)
  if kind == "layer":
    return nnx.LayerNorm(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
  if kind == "none":
    return None
  raise ValueError(
      f"normalization must be 'batch', 'layer' or 'none', got {kind!r}."
  )


def _prepare_input(inputs: jax.Array, in_features: int, spatial_dims: int,
                   dtype, max_size: tuple[int, ...] | None = None,
                   who: str = "") -> tuple[jax.Array, tuple[int, ...]]:
  """Checks [B, *S, C] (and S ≤ max_size), casts to dtype; returns it and its shape."""
  shape = _check_input(inputs, in_features, spatial_dims)
  _check_size(shape[1:-1], max_size, who)
  return (inputs if dtype is None else inputs.astype(dtype)), shape


def _check_positive(**sizes) -> None:
  """Raises TypeError/ValueError naming a size that is not an int ≥ 1."""
  for name, value in sizes.items():
    try:
      value = operator.index(value)
    except TypeError:
      raise TypeError(f"{name} must be an int, got {value!r}.") from None
    if value < 1:
      raise ValueError(f"{name} must be at least 1, got {value}.")


def _check_input(inputs: jax.Array, in_features: int, spatial_dims: int):
  """Checks [B, *S, C] of floats against the layer; returns the shape."""
  if not jnp.issubdtype(jnp.asarray(inputs).dtype, jnp.floating):
    raise TypeError(
        f"inputs must be floating point, got {jnp.asarray(inputs).dtype}; cast "
        "them (e.g. images.astype(jnp.float32)) first.")
  if inputs.ndim != spatial_dims + 2:
    layout = "[B, N, C]" if spatial_dims == 1 else "[B, H, W, C]"
    raise ValueError(
        f"inputs must have rank {spatial_dims + 2} {layout} for spatial_dims="
        f"{spatial_dims}, got shape {inputs.shape}."
    )
  if inputs.shape[-1] != in_features:
    raise ValueError(
        f"inputs have {inputs.shape[-1]} channels, the layer expects "
        f"in_features={in_features}."
    )
  if 0 in inputs.shape:
    raise ValueError(
        f"inputs have an empty axis, shape {inputs.shape}; the batch and every "
        "spatial axis need at least one element.")
  return inputs.shape


def _apply(norm, x: jax.Array) -> jax.Array:
  return x if norm is None else norm(x)


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

  def __init__(
      self,
      in_features: int,
      out_features: int,
      *,
      heads: int = 8,
      window: int | None = None,
      input_size: int | tuple[int, int] | None = None,
      relative_positions: bool = True,
      dtype: jnp.dtype | None = None,
      param_dtype: jnp.dtype = jnp.float32,
      rngs: nnx.Rngs,
      key_features: int | None = None,
      output_projection: bool = False,
  ):
    """Creates the layer.

    The value depth per head is out_features / heads; the query/key depth per
    head is key_features / heads (key_features defaults to out_features).
    output_projection adds the out×out mixing of the heads' outputs (W^O of
    multi-head attention).
    """
    _check_heads(out_features, heads, in_features)
    key_features = key_features or out_features
    _check_heads(key_features, heads)
    if window is not None and (window < 1 or window % 2 == 0):
      raise ValueError(
          f"window must be odd and positive so it is centred on the query, "
          f"got {window}."
      )
    self.in_features = in_features
    self.out_features = out_features
    self.heads = heads
    self.key_depth = key_features // heads
    self.value_depth = out_features // heads
    self.window = window
    self.dtype = dtype
    self.max_size = None
    if relative_positions and window is None:
      self.max_size = _spatial_sizes(input_size, 2, "relative_positions with "
                                     "window=None")
    widths = (None if not relative_positions else
              (window, window) if window is not None else
              tuple(2 * size - 1 for size in self.max_size))
    self.query_proj, self.key_proj, self.value_proj = (
        _projection(in_features, features, dtype, param_dtype, rngs)
        for features in (key_features, key_features, out_features))
    self.output_proj = (
        _projection(out_features, out_features, dtype, param_dtype, rngs)
        if output_projection else None)
    self.row_embeddings, self.col_embeddings = _relative_tables(
        widths, self.key_depth, param_dtype, rngs)

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Maps [B, H, W, in_features] to [B, H, W, out_features]."""
    inputs, (batch, height, width, _) = _prepare_input(
        inputs, self.in_features, 2, self.dtype, self.max_size,
        "RelativeSelfAttention")
    shape = (batch, height, width, self.heads, self.key_depth)
    queries = self.query_proj(inputs).reshape(shape) * self.key_depth ** -0.5
    keys = self.key_proj(inputs).reshape(shape)
    values = self.value_proj(inputs).reshape(*shape[:-1], self.value_depth)
    if self.window is None:
      out = self._global(queries, keys, values)
    else:
      out = self._local(queries, keys, values)
    out = out.reshape(batch, height, width, self.out_features)
    return out if self.output_proj is None else self.output_proj(out)

  def _global(self, queries, keys, values) -> jax.Array:
    """Attention over all H·W positions: [B, heads, H, W, H, W] maps."""
    batch, height, width, heads, _ = queries.shape
    logits = jnp.einsum("bxyhd,bijhd->bhxyij", queries, keys,
                        preferred_element_type=jnp.float32)
    if self.row_embeddings is not None:
      rows = _gather_offsets(self.row_embeddings[...], height).astype(queries.dtype)
      cols = _gather_offsets(self.col_embeddings[...], width).astype(queries.dtype)
      logits = logits + jnp.einsum("bxyhd,xid->bhxyi", queries, rows,
                                   preferred_element_type=jnp.float32)[..., None]
      logits = logits + jnp.einsum("bxyhd,yjd->bhxyj", queries, cols,
                                   preferred_element_type=jnp.float32)[..., None, :]
    flat = logits.reshape(batch, heads, height, width, height * width)
    weights = jax.nn.softmax(flat, axis=-1).reshape(logits.shape)
    return jnp.einsum("bhxyij,bijhv->bxyhv", weights.astype(values.dtype), values)

  def _local(self, queries, keys, values) -> jax.Array:
    """Attention over each query's window×window neighbourhood."""
    _, height, width, _, _ = queries.shape
    keys = _neighbourhoods(keys, self.window)  # [B, H, W, w², heads, d]
    values = _neighbourhoods(values, self.window)
    inside = _neighbourhoods(jnp.ones((1, height, width), bool), self.window)[0]
    logits = jnp.einsum("bxyhd,bxyohd->bxyho", queries, keys,
                        preferred_element_type=jnp.float32)
    if self.row_embeddings is not None:
      rows = jnp.einsum("bxyhd,rd->bxyhr", queries,
                        self.row_embeddings[...].astype(queries.dtype),
                        preferred_element_type=jnp.float32)
      cols = jnp.einsum("bxyhd,cd->bxyhc", queries,
                        self.col_embeddings[...].astype(queries.dtype),
                        preferred_element_type=jnp.float32)
      logits = logits + (rows[..., :, None] + cols[..., None, :]).reshape(
          logits.shape)
    logits = jnp.where(inside[None, :, :, None, :], logits, -jnp.inf)
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bxyho,bxyohv->bxyhv", weights.astype(values.dtype), values)


class AxialSelfAttention(nnx.Module):
  """Axial self-attention: along the height axis, then along the width axis.

  Each pass is multi-head self-attention over one axis with 1D relative
  position logits (Ho et al., 2019; Axial-DeepLab, Wang et al., 2020), so two
  passes reach the whole map at a cost of Θ(n·(H + W)) instead of Θ(n²). The
  first pass maps in→out features, the second out→out; the relative tables
  cover 2·size − 1 offsets per axis and so need `input_size`.
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      *,
      heads: int = 8,
      input_size: int | tuple[int, int] | None = None,
      relative_positions: bool = True,
      dtype: jnp.dtype | None = None,
      param_dtype: jnp.dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    """Creates the layer; the key and value depth per head is out/heads."""
    _check_heads(out_features, heads, in_features)
    self.in_features = in_features
    self.out_features = out_features
    self.heads = heads
    self.key_depth = out_features // heads
    self.dtype = dtype
    self.max_size = None
    if relative_positions:
      self.max_size = _spatial_sizes(input_size, 2, "AxialSelfAttention with "
                                     "relative_positions")
    self.height_proj = nnx.List(_qkv_projections(
        in_features, out_features, dtype, param_dtype, rngs))
    self.width_proj = nnx.List(_qkv_projections(
        out_features, out_features, dtype, param_dtype, rngs))
    widths = None if self.max_size is None else tuple(
        2 * size - 1 for size in self.max_size)
    self.height_embeddings, self.width_embeddings = _relative_tables(
        widths, self.key_depth, param_dtype, rngs)

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Maps [B, H, W, in_features] to [B, H, W, out_features]."""
    inputs, (batch, height, width, _) = _prepare_input(
        inputs, self.in_features, 2, self.dtype, self.max_size,
        "AxialSelfAttention")
    out = self._axis_pass(inputs, self.height_proj, self.height_embeddings)
    out = jnp.swapaxes(out, 1, 2)  # Attend along the width axis next.
    out = self._axis_pass(out, self.width_proj, self.width_embeddings)
    return jnp.swapaxes(out, 1, 2)

  def _axis_pass(self, inputs, projections, table) -> jax.Array:
    """Self-attention along axis 1 of [B, L, M, C] (M acts as a batch axis)."""
    batch, length, other, _ = inputs.shape
    shape = (batch, length, other, self.heads, self.key_depth)
    query_proj, key_proj, value_proj = projections
    queries = query_proj(inputs).reshape(shape) * self.key_depth ** -0.5
    keys = key_proj(inputs).reshape(shape)
    values = value_proj(inputs).reshape(shape)
    logits = jnp.einsum("bxyhd,biyhd->bhyxi", queries, keys,
                        preferred_element_type=jnp.float32)
    if table is not None:
      offsets = _gather_offsets(table[...], length).astype(queries.dtype)
      logits = logits + jnp.einsum("bxyhd,xid->bhyxi", queries, offsets,
                                   preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1).astype(values.dtype)
    out = jnp.einsum("bhyxi,biyhv->bxyhv", weights, values)
    return out.reshape(batch, length, other, self.out_features)


def _check_heads(out_features: int, heads: int, in_features: int = 1) -> None:
  _check_positive(in_features=in_features, out_features=out_features, heads=heads)
  if out_features % heads:
    raise ValueError(
        f"out_features ({out_features}) must be divisible by heads ({heads}): "
        "the key and value depth per head is out_features / heads."
    )


def _spatial_sizes(input_size, spatial_dims: int, who: str) -> tuple[int, ...]:
  """Normalises input_size to one positive int per spatial axis."""
  if input_size is None:
    raise ValueError(
        f"{who} needs input_size (the largest spatial size the layer sees) to "
        "size its relative position tables of 2·size − 1 offsets per axis."
    )
  sizes = ((input_size,) * spatial_dims if isinstance(input_size, int)
           else tuple(input_size))
  if len(sizes) != spatial_dims or min(sizes) < 1:
    raise ValueError(
        f"input_size must be a positive int or {spatial_dims} positive ints, "
        f"got {input_size!r}."
    )
  return sizes


def _check_size(spatial, max_size, who: str) -> None:
  if max_size is not None and any(s > m for s, m in zip(spatial, max_size)):
    raise ValueError(
        f"input spatial shape {tuple(spatial)} exceeds input_size {max_size} "
        f"of this {who} layer; build it with a larger input_size."
    )


def _projection(in_features, out_features, dtype, param_dtype, rngs):
  """A bias-free projection in→out, N(0, in^-1/2) initialised."""
  return nnx.Linear(in_features, out_features, use_bias=False, dtype=dtype,
                    param_dtype=param_dtype,
                    kernel_init=nnx.initializers.normal(in_features ** -0.5),
                    rngs=rngs)


def _qkv_projections(in_features, out_features, dtype, param_dtype, rngs):
  """Bias-free query, key and value projections in→out."""
  return tuple(_projection(in_features, out_features, dtype, param_dtype, rngs)
               for _ in range(3))


def _relative_tables(widths, depth, param_dtype, rngs):
  """Two relative position tables [width_i, depth] (None, None: no tables)."""
  if widths is None:
    return None, None
  return tuple(
      nnx.Param(depth ** -0.5 * jax.random.normal(rngs.params(), (width, depth),
                                                   param_dtype))
      for width in widths
  )


def _gather_offsets(table: jax.Array, size: int) -> jax.Array:
  """[n, m, D] = table[m − n + width//2] for a table [width, D], width ≥ 2·size − 1."""
  pos = jnp.arange(size)
  return table[pos[None, :] - pos[:, None] + table.shape[0] // 2]


def _neighbourhoods(x: jax.Array, window: int) -> jax.Array:
  """Gathers the zero-padded window×window neighbours of every position.

  [B, H, W, ...] -> [B, H, W, w², ...], offsets in row-major (dy, dx) order.
  """
  radius = window // 2
  batch, height, width = x.shape[:3]
  pad = [(0, 0), (radius, radius), (radius, radius)] + [(0, 0)] * (x.ndim - 3)
  padded = jnp.pad(x, pad).reshape(batch, -1, *x.shape[3:])
  offsets = jnp.arange(window)
  rows = jnp.arange(height)[:, None, None, None] + offsets[:, None]  # [H, 1, w, 1]
  cols = jnp.arange(width)[None, :, None, None] + offsets[None, :]  # [1, W, 1, w]
  index = (rows * (width + 2 * radius) + cols).reshape(-1)  # [H·W·w·w]
  gathered = jnp.take(padded, index, axis=1)
  return gathered.reshape(batch, height, width, window * window, *x.shape[3:])
