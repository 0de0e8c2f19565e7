"""The attention baselines' math as pure JAX functions (no parameters, no Flax).

Shapes use B batch, an H×W map (or N positions), `heads` heads, D query/key
depth and V value depth per head. Relative position tables [R, D] are indexed
by offset m − n + R//2 (`ops.gather_offsets`) and shared by the heads. Except
in `dot_product_attention`, queries arrive already scaled by D^-1/2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lambda_networks import ops


def dot_product_attention(queries: jax.Array, keys: jax.Array, values: jax.Array,
                          *, causal: bool = False) -> jax.Array:
  """Content-only softmax attention over all positions (logits scaled by D^-1/2).

  Args:
    queries: [B, N, heads, D].
    keys: [B, N, heads, D].
    values: [B, N, heads, V].
    causal: position n only sees positions m ≤ n.

  Returns:
    [B, N, heads, V]; the [B, heads, N, N] maps are materialised.
  """
  num_positions = queries.shape[1]
  logits = jnp.einsum("bnhd,bmhd->bhnm", queries, keys,
                      preferred_element_type=jnp.float32)
  logits = logits * queries.shape[-1] ** -0.5
  if causal:
    visible = jnp.tril(jnp.ones((num_positions, num_positions), bool))
    logits = jnp.where(visible, logits, -jnp.inf)
  weights = jax.nn.softmax(logits, axis=-1).astype(values.dtype)
  return jnp.einsum("bhnm,bmhv->bnhv", weights, values)


def axial_attention(queries: jax.Array, keys: jax.Array, values: jax.Array,
                    table: jax.Array | None = None) -> jax.Array:
  """Attention along axis 1 of [B, L, M, heads, ·] (M acts as a batch axis).

  logits[x, i] = q_x·k_i + q_x·table[i − x + R//2], the table [R, D] covering
  every offset of the L positions (R ≥ 2·L − 1). Returns [B, L, M, heads, V].
  """
  logits = jnp.einsum("bxyhd,biyhd->bhyxi", queries, keys,
                      preferred_element_type=jnp.float32)
  if table is not None:
    offsets = ops.gather_offsets(table, queries.shape[1]).astype(queries.dtype)
    logits = logits + jnp.einsum("bxyhd,xid->bhyxi", queries, offsets,
                                 preferred_element_type=jnp.float32)
  weights = jax.nn.softmax(logits, axis=-1).astype(values.dtype)
  return jnp.einsum("bhyxi,biyhv->bxyhv", weights, values)


def global_relative_attention(
    queries: jax.Array, keys: jax.Array, values: jax.Array,
    row_table: jax.Array | None = None, col_table: jax.Array | None = None,
) -> jax.Array:
  """2-D attention over all H·W positions with factorised relative logits.

  logits[(x, y), (i, j)] = q·k + q·row_table[i − x + R//2] +
  q·col_table[j − y + C//2] per head; the tables [R, D], [C, D] cover every
  offset of the map (R ≥ 2·H − 1, C ≥ 2·W − 1), or are both None (content
  only). Maps [B, H, W, heads, ·] to [B, H, W, heads, V] through
  [B, heads, H, W, H, W] attention maps.
  """
  batch, height, width, heads, _ = queries.shape
  logits = jnp.einsum("bxyhd,bijhd->bhxyij", queries, keys,
                      preferred_element_type=jnp.float32)
  if row_table is not None:
    rows = ops.gather_offsets(row_table, height).astype(queries.dtype)
    cols = ops.gather_offsets(col_table, width).astype(queries.dtype)
    logits = logits + jnp.einsum("bxyhd,xid->bhxyi", queries, rows,
                                 preferred_element_type=jnp.float32)[..., None]
    logits = logits + jnp.einsum("bxyhd,yjd->bhxyj", queries, cols,
                                 preferred_element_type=jnp.float32)[..., None, :]
  flat = logits.reshape(batch, heads, height, width, height * width)
  weights = jax.nn.softmax(flat, axis=-1).reshape(logits.shape)
  return jnp.einsum("bhxyij,bijhv->bxyhv", weights.astype(values.dtype), values)


def local_relative_attention(
    queries: jax.Array, keys: jax.Array, values: jax.Array, window: int,
    row_table: jax.Array | None = None, col_table: jax.Array | None = None,
) -> jax.Array:
  """Attention over each query's window×window neighbourhood (SASA).

  logits[(x, y), (x + a, y + b)] = q·k + q·row_table[a + w//2] +
  q·col_table[b + w//2] for |a|, |b| ≤ w//2, the tables [w, D] (or both None);
  neighbours outside the map are masked out. Maps [B, H, W, heads, ·] to
  [B, H, W, heads, V].
  """
  _, height, width, _, _ = queries.shape
  keys = neighbourhoods(keys, window)  # [B, H, W, w², heads, D]
  values = neighbourhoods(values, window)
  inside = neighbourhoods(jnp.ones((1, height, width), bool), window)[0]
  logits = jnp.einsum("bxyhd,bxyohd->bxyho", queries, keys,
                      preferred_element_type=jnp.float32)
  if row_table is not None:
    rows = jnp.einsum("bxyhd,rd->bxyhr", queries, row_table.astype(queries.dtype),
                      preferred_element_type=jnp.float32)
    cols = jnp.einsum("bxyhd,cd->bxyhc", queries, col_table.astype(queries.dtype),
                      preferred_element_type=jnp.float32)
    logits = logits + (rows[..., :, None] + cols[..., None, :]).reshape(
        logits.shape)
  logits = jnp.where(inside[None, :, :, None, :], logits, -jnp.inf)
  weights = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum("bxyho,bxyohv->bxyhv", weights.astype(values.dtype), values)


def neighbourhoods(x: jax.Array, window: int) -> jax.Array:
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
