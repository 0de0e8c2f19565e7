"""The lambda math of LambdaNetworks as pure JAX functions (no parameters).

The equations are the paper's (docs/paper.md#the-lambda-layer: content and
position lambdas, multi-query heads, the lambda convolution, masked contexts).

Shapes use B batch, S one or two spatial axes (N positions in all), H query
heads, K query/key depth, U intra-depth and V value depth. The single public
entry point is `lambda_interactions`; everything else here is an execution
detail of it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
from typing import Literal

import jax
import jax.numpy as jnp

Method = Literal["auto", "einsum", "conv", "row_conv"]
METHODS = ("auto", "einsum", "conv", "row_conv")

# Relative cost per visited (query, context-offset) pair of each execution of
# the position term, per JAX platform, in pair_cost.json next to this file
# (measured with scripts/benchmark_layers.py, a forward+backward pass, and
# written by its --calibrate). "auto" multiplies these by the
# pairs each method visits and picks the cheapest. The einsum also gathers
# and scatters its [N, N, K, U] embeddings; the 2-D convolution has few
# channels (U in, K out) and a large batch (B·V), which convolution kernels
# run poorly; the row convolution is a dense 1-D convolution with W·U in and
# W·K out channels. A platform without a measured table ("calibrated": false)
# uses the documented default in the file. The file is read when a cost is
# first needed (`pair_costs`), not at import.
PAIR_COST_FILE = pathlib.Path(__file__).with_name("pair_cost.json")


def load_pair_costs(path: str | os.PathLike = PAIR_COST_FILE) -> dict[str, dict]:
  """Reads {platform: {"costs": {method: cost}, "calibrated": bool, ...}}."""
  tables = json.loads(pathlib.Path(path).read_text())
  if "default" not in tables:
    raise ValueError(f"{path} needs a 'default' entry for unmeasured platforms.")
  for platform, table in tables.items():
    if platform.startswith("_"):
      continue
    costs = table.get("costs", {})
    missing = {"einsum", "conv", "row_conv"} - set(costs)
    if missing or any(not cost > 0 for cost in costs.values()):
      raise ValueError(
          f"{path}: platform {platform!r} needs a positive cost for each of "
          f"einsum, conv and row_conv (missing {sorted(missing)}); rerun "
          "python -m scripts.benchmark_layers --calibrate.")
  return {k: v for k, v in tables.items() if not k.startswith("_")}


@functools.cache
def pair_costs() -> dict[str, dict]:
  """The shipped table, `load_pair_costs()`, read once."""
  return load_pair_costs()


def pair_cost_table(platform: str | None = None) -> dict:
  """The cost entry of `platform` (default: jax.default_backend()).

  A platform absent from the file gets the "default" entry.
  """
  platform = platform or jax.default_backend()
  tables = pair_costs()
  return tables.get(platform, tables["default"])


@functools.partial(jax.jit, static_argnames=("causal", "method"))
def lambda_interactions(
    queries: jax.Array,
    keys: jax.Array,
    values: jax.Array,
    embeddings: jax.Array | None = None,
    *,
    causal: bool = False,
    method: Method = "auto",
) -> jax.Array:
  """Applies content and position lambdas to the queries.

  Args:
    queries: [B, *S, H, K] queries.
    keys: [B, *S, K, U] keys (normalised here by a softmax over positions).
    values: [B, *S, V, U] values.
    embeddings: [*R, K, U] relative position embeddings indexed by offset
      m − n + R//2, R odd per spatial axis; offsets outside the table
      contribute nothing. None computes the content term only.
    causal: if True (one spatial axis only) position n only sees m ≤ n.
    method: how to compute the position term, all giving the same function:
      "einsum" gathers the table into per-pair embeddings [N, N, K, U]
      (memory quadratic in N); "conv" is the lambda convolution, the table
      as an [*R] kernel from U to K channels over values with V folded into
      the batch; "row_conv" (2-D) is the same convolution run as a 1-D
      convolution over rows whose kernel holds every column offset (more
      multiply-adds, far better shaped for matrix units); "auto" picks the
      cheapest for these shapes (see `choose_method`).

  Returns:
    [B, *S, H, V] outputs in the dtype of `queries`.
  """
  spatial_shape = _check_shapes(queries, keys, values, embeddings, causal, method)
  batch = queries.shape[0]
  heads, depth = queries.shape[-2:]
  value_depth, intra_depth = values.shape[-2:]
  num_positions = math.prod(spatial_shape)

  flat_keys = keys.reshape(batch, num_positions, depth, intra_depth)
  flat_values = values.reshape(batch, num_positions, value_depth, intra_depth)
  if causal:
    lambdas = _causal_content_lambdas(flat_keys, flat_values)  # [B, N, K, V]
  else:
    lambdas = _content_lambda(flat_keys, flat_values)[:, None]  # [B, 1, K, V]

  if embeddings is not None:
    table = _crop_table(embeddings, spatial_shape)
    method = resolved_method(spatial_shape, embeddings.shape[:-2], method)
    if method == "einsum":
      position = _position_lambdas_einsum(values, table, causal)
    elif method == "row_conv":
      position = _position_lambdas_row_conv(values, table)
    else:
      position = _position_lambdas_conv(values, table, causal)
    lambdas = lambdas + position.reshape(batch, num_positions, depth, value_depth)

  flat_queries = queries.reshape(batch, num_positions, heads, depth)
  out = jnp.einsum(
      "bnhk,bnkv->bnhv",
      flat_queries,
      lambdas.astype(_accumulation_dtype(queries.dtype)),
      preferred_element_type=_accumulation_dtype(queries.dtype),
  )
  return out.reshape(*queries.shape[:-1], value_depth).astype(queries.dtype)


def resolved_method(spatial_shape: tuple[int, ...],
                    table_shape: tuple[int, ...], method: Method = "auto"
                    ) -> Literal["einsum", "conv", "row_conv"]:
  """The execution `lambda_interactions` runs for these shapes.

  `table_shape` is the embedding table's spatial shape before cropping to
  the map; "auto" resolves through `choose_method`, and on one spatial axis
  the row convolution is the convolution.
  """
  cropped = tuple(min(width, 2 * size - 1)
                  for size, width in zip(spatial_shape, table_shape))
  if method == "auto":
    method = choose_method(spatial_shape, cropped)
  return "conv" if method == "row_conv" and len(spatial_shape) != 2 else method


def choose_method(
    spatial_shape: tuple[int, ...], table_shape: tuple[int, ...],
    platform: str | None = None,
) -> Literal["einsum", "conv", "row_conv"]:
  """Picks the cheapest execution of the position term for these shapes.

  Each method costs B·V·K·U multiply-adds per (query, offset) pair it
  visits: the einsum visits all N² pairs, the convolution N·prod(R) and the
  row convolution N·R_rows·W (a table wider than the input is cropped first,
  so no method wastes work on offsets no input reaches). The row convolution
  is a candidate only for tables with fewer rows than the map: on CPU its
  cost per pair grows steeply with the kernel height (measured 7× per pair
  from R_rows = 23 to 55), so global-size tables go to the einsum. The cost
  per pair is `platform`'s table (default: the default JAX backend's).
  """
  pairs = visited_pairs(spatial_shape, table_shape)
  if not (len(spatial_shape) == 2 and table_shape[0] < spatial_shape[0]):
    del pairs["row_conv"]
  costs = pair_cost_table(platform)["costs"]
  return min(pairs, key=lambda method: pairs[method] * costs[method])


def visited_pairs(spatial_shape: tuple[int, ...],
                  table_shape: tuple[int, ...]) -> dict[str, int]:
  """(query, offset) pairs each execution visits (table already cropped)."""
  num_positions = math.prod(spatial_shape)
  pairs = {"einsum": num_positions ** 2,
           "conv": num_positions * math.prod(table_shape)}
  if len(spatial_shape) == 2:
    pairs["row_conv"] = num_positions * table_shape[0] * spatial_shape[1]
  else:  # On one axis the row convolution is the convolution.
    pairs["row_conv"] = pairs["conv"]
  return pairs


def relative_embeddings(table: jax.Array, spatial_shape: tuple[int, ...]) -> jax.Array:
  """Gathers a relative table [*R, K, U] into per-pair embeddings [N, N, K, U].

  Entry [n, m] is table[m − n + R//2] (per axis), or zero where that offset is
  outside the table.
  """
  num_axes = len(spatial_shape)
  gathered = table
  for axis, size in enumerate(spatial_shape):  # R_i -> [n_i, m_i] in place.
    gathered = gather_offsets(gathered, size, axis=2 * axis)
  # [n_1, m_1, n_2, m_2, K, U] -> [n_1, n_2, m_1, m_2, K, U]
  order = [*range(0, 2 * num_axes, 2), *range(1, 2 * num_axes, 2)]
  gathered = jnp.transpose(gathered, (*order, *range(2 * num_axes, gathered.ndim)))
  num_positions = math.prod(spatial_shape)
  return gathered.reshape(num_positions, num_positions, *table.shape[num_axes:])


def gather_offsets(table: jax.Array, size: int, axis: int = 0) -> jax.Array:
  """The offset lookup: [.., n, m, ..] = table[.., m − n + R//2, ..] along `axis`.

  The table axis of width R becomes the two axes [n, m] of `size` positions
  each; entries whose offset falls outside the table are zero.
  """
  width = table.shape[axis]
  pos = jnp.arange(size)
  offset = pos[None, :] - pos[:, None] + width // 2  # [n, m]
  inside = (offset >= 0) & (offset < width)
  gathered = jnp.take(table, jnp.clip(offset, 0, width - 1), axis=axis)
  inside = inside.reshape(inside.shape + (1,) * (table.ndim - axis - 1))
  return jnp.where(inside, gathered, 0)


def _accumulation_dtype(dtype) -> jnp.dtype:
  """float32, or the input's dtype when it is wider (float64 under x64)."""
  return jnp.promote_types(dtype, jnp.float32)


def _content_lambda(keys: jax.Array, values: jax.Array) -> jax.Array:
  """λc[b, k, v] = Σ_{m,u} softmax_m(keys)[b, m, k, u] · values[b, m, v, u]."""
  accumulate = _accumulation_dtype(keys.dtype)
  weights = jax.nn.softmax(keys.astype(accumulate), axis=1)
  return jnp.einsum(
      "bmku,bmvu->bkv", weights, values, preferred_element_type=accumulate
  )


def _causal_content_lambdas(keys: jax.Array, values: jax.Array) -> jax.Array:
  """Per-position content lambdas [B, N, K, V] over the visible prefix m ≤ n.

  The prefix softmax is computed as a running (max, Σexp, Σexp·value) with an
  associative scan, so it is exact and stable for any key magnitudes.
  """
  accumulate = _accumulation_dtype(keys.dtype)
  logits = keys.astype(accumulate)  # [B, N, K, U]
  values = values.astype(accumulate)  # [B, N, V, U]
  numerators = values[:, :, None, :, :]  # [B, N, 1, V, U] with weight exp(0)

  def combine(left, right):
    max_l, norm_l, num_l = left
    max_r, norm_r, num_r = right
    new_max = jnp.maximum(max_l, max_r)
    scale_l = jnp.exp(max_l - new_max)
    scale_r = jnp.exp(max_r - new_max)
    return (
        new_max,
        norm_l * scale_l + norm_r * scale_r,
        num_l * scale_l[..., None, :] + num_r * scale_r[..., None, :],
    )

  init = (logits, jnp.ones_like(logits),
          jnp.broadcast_to(numerators, (*logits.shape[:3], *values.shape[2:])))
  _, norms, nums = jax.lax.associative_scan(combine, init, axis=1)
  # nums: [B, N, K, V, U], norms: [B, N, K, U].
  return jnp.sum(nums / norms[..., None, :], axis=-1)


def _crop_table(table: jax.Array, spatial_shape: tuple[int, ...]) -> jax.Array:
  """Drops table entries for offsets no input of this size can reach."""
  slices = []
  for size, width in zip(spatial_shape, table.shape):
    useful = min(width, 2 * size - 1)
    start = (width - useful) // 2
    slices.append(slice(start, start + useful))
  return table[tuple(slices)]


def _position_lambdas_einsum(
    values: jax.Array, table: jax.Array, causal: bool
) -> jax.Array:
  """λp[b, n, k, v] = Σ_{m,u} E[n, m, k, u] · values[b, m, v, u]."""
  batch, *spatial, _, _ = values.shape
  if causal:
    # Offsets m − n > 0 are the future: they contribute nothing.
    center = table.shape[0] // 2
    table = jnp.where(jnp.arange(table.shape[0])[:, None, None] <= center, table, 0)
  embeddings = relative_embeddings(table, tuple(spatial))
  flat_values = values.reshape(batch, -1, *values.shape[-2:])
  return jnp.einsum(
      "nmku,bmvu->bnkv", embeddings, flat_values,
      preferred_element_type=_accumulation_dtype(values.dtype)
  )


def _position_lambdas_conv(values: jax.Array, table: jax.Array, causal: bool) -> jax.Array:
  """λp as the lambda convolution: values [B, *S, V, U] ⋆ table [*R, K, U].

  V is folded into the batch, U are the input channels and K the output
  channels; zero padding keeps the output at the input size. The correlation
  convolution computes out[n] = Σ_o table[o + R//2] · values[n + o].
  """
  batch, *spatial, value_depth, intra_depth = values.shape
  num_axes = len(spatial)
  depth = table.shape[-2]
  # [B, *S, V, U] -> [B, V, *S, U] -> [B·V, *S, U]
  moved = jnp.moveaxis(values, -2, 1).reshape(batch * value_depth, *spatial, intra_depth)
  kernel = jnp.swapaxes(table, -1, -2)  # [*R, U, K]
  if causal:
    # Keep offsets −R//2..0 only and pad on the past side alone.
    kernel = kernel[: table.shape[0] // 2 + 1]
    padding = [(kernel.shape[0] - 1, 0)]
  else:
    padding = [(width // 2, width // 2) for width in table.shape[:num_axes]]
  spatial_chars = "HW"[:num_axes] if num_axes == 2 else "W"
  dimension_numbers = (
      f"N{spatial_chars}C", f"{spatial_chars}IO", f"N{spatial_chars}C"
  )
  out = jax.lax.conv_general_dilated(
      moved,
      kernel.astype(moved.dtype),
      window_strides=(1,) * num_axes,
      padding=padding,
      dimension_numbers=dimension_numbers,
      preferred_element_type=_accumulation_dtype(moved.dtype),
  )  # [B·V, *S, K]
  out = out.reshape(batch, value_depth, *spatial, depth)
  return jnp.moveaxis(out, 1, -1)  # [B, *S, K, V]


def _position_lambdas_row_conv(values: jax.Array, table: jax.Array) -> jax.Array:
  """λp for 2-D maps as a 1-D convolution over rows.

  The kernel for row offset a maps (column j', u) to (column j, k) with
  table[a, j' − j + R_cols//2, k, u] (zero outside the table), so one dense
  1-D convolution with W·U input and W·K output channels covers every column
  offset at once.
  """
  batch, height, width, value_depth, intra_depth = values.shape
  rows, _, depth, _ = table.shape
  kernel = gather_offsets(table, width, axis=1)  # [a, j, j', K, U]
  kernel = jnp.transpose(kernel, (0, 2, 4, 1, 3)).reshape(
      rows, width * intra_depth, width * depth)  # [a, (j', u), (j, k)]
  # [B, H, W, V, U] -> [B·V, H, W·U]
  moved = jnp.moveaxis(values, 3, 1).reshape(batch * value_depth, height,
                                             width * intra_depth)
  out = jax.lax.conv_general_dilated(
      moved,
      kernel.astype(moved.dtype),
      window_strides=(1,),
      padding=[(rows // 2, rows // 2)],
      dimension_numbers=("NWC", "WIO", "NWC"),
      preferred_element_type=_accumulation_dtype(moved.dtype),
  )  # [B·V, H, W·K]
  out = out.reshape(batch, value_depth, height, width, depth)
  return jnp.moveaxis(out, 1, -1)  # [B, H, W, K, V]


def _check_shapes(queries, keys, values, embeddings, causal, method) -> tuple[int, ...]:
  """Validates the inputs of `lambda_interactions`; returns the spatial shape."""
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
  for name, array in (("queries", queries), ("keys", keys), ("values", values),
                      ("embeddings", embeddings)):
    if array is not None and not jnp.issubdtype(array.dtype, jnp.floating):
      raise TypeError(
          f"{name} must be floating point, got {array.dtype}; cast them first "
          "(integer inputs would come back truncated).")
  if queries.ndim not in (4, 5):
    raise ValueError(
        "queries must have rank 4 [B, N, H, K] or 5 [B, H, W, heads, K], got "
        f"shape {queries.shape}."
    )
  num_axes = queries.ndim - 3
  leading = queries.shape[: 1 + num_axes]
  for name, array in (("keys", keys), ("values", values)):
    if array.ndim != queries.ndim or array.shape[: 1 + num_axes] != leading:
      raise ValueError(
          f"{name} must have shape [B, *S, ., .] = [{', '.join(map(str, leading))}, "
          f"., .] like queries, got {array.shape}."
      )
  depth = queries.shape[-1]
  if keys.shape[-2] != depth:
    raise ValueError(
        f"keys depth (axis -2) must equal the query depth {depth}, got "
        f"keys shape {keys.shape}."
    )
  intra_depth = keys.shape[-1]
  if values.shape[-1] != intra_depth:
    raise ValueError(
        f"values intra-depth (axis -1) must equal the keys intra-depth "
        f"{intra_depth}, got values shape {values.shape}."
    )
  if 0 in queries.shape or 0 in keys.shape or 0 in values.shape:
    raise ValueError(
        f"queries, keys and values must not have an empty axis (an empty "
        f"batch, map or depth), got shapes {queries.shape}, {keys.shape}, "
        f"{values.shape}.")
  if causal and num_axes != 1:
    raise ValueError(
        "causal=True needs one spatial axis ([B, N, ...] inputs); got "
        f"{num_axes} spatial axes."
    )
  if embeddings is not None:
    if embeddings.ndim != num_axes + 2:
      raise ValueError(
          f"embeddings must have rank {num_axes + 2} [*R, K, U] for {num_axes} "
          f"spatial axes, got shape {embeddings.shape}."
      )
    if embeddings.shape[-2:] != (depth, intra_depth):
      raise ValueError(
          f"embeddings must end in [K, U] = [{depth}, {intra_depth}] to match "
          f"the keys, got shape {embeddings.shape}."
      )
    if any(width % 2 == 0 for width in embeddings.shape[:num_axes]):
      raise ValueError(
          f"embeddings table widths must be odd per spatial axis (offsets "
          f"−R//2..R//2), got {embeddings.shape[:num_axes]}."
      )
  return tuple(queries.shape[1 : 1 + num_axes])
