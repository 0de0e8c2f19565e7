"""The causal lambda layer one position at a time (pure JAX, no parameters).

`ops.lambda_interactions(..., causal=True)` computes every position of a
sequence at once. Decoding needs position n from a state of positions < n:

- content lambda: λᶜₙ[k, v] = Σᵤ Σ_{m≤n} softmax_m(keys[·, k, u]) vₘ[v, u].
  The softmax over the prefix is a running (max, Σexp, Σexp·value) per (k, u),
  updated per position: [K, U] + [K, U] + [K, V, U] numbers, whatever n is.
- position lambda: λᵖₙ = Σ_{o=−r//2..0} E[o + r//2] v_{n+o} needs the values
  of the last r//2 + 1 positions, kept in a ring buffer. For a local
  receptive field that is constant memory per layer. For a "global" table
  (width 2·L − 1 for a context of L) the window is all L positions: the
  state is fixed-size but linear in the context (V·U numbers per position and
  layer, against 2·width for attention's key/value cache). No constant-size
  state reproduces an arbitrary relative table over the whole context: each
  offset weighs a different past value, so all of them must be kept.

Shapes: B batch, H heads, K query depth, U intra-depth, V value depth,
W = r//2 + 1 positions of values kept.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class LambdaState(NamedTuple):
  """What one causal lambda layer keeps between positions."""
  key_max: jax.Array  # [B, K, U] running max of the keys (−inf at first).
  key_norm: jax.Array  # [B, K, U] Σ exp(key − key_max).
  numerator: jax.Array  # [B, K, V, U] Σ exp(key − key_max) · value.
  values: jax.Array  # [B, W, V, U] the last W values, slot = position mod W.
  position: jax.Array  # int32 scalar, the next position.


def position_window(table_width: int | None) -> int:
  """Values a causal table of `table_width` offsets reaches: r//2 + 1 (0: none)."""
  return 0 if table_width is None else table_width // 2 + 1


def init_lambda_state(batch: int, query_depth: int, value_depth: int,
                      intra_depth: int, window: int,
                      dtype: jnp.dtype = jnp.float32) -> LambdaState:
  """The state before position 0 (`window` from `position_window`)."""
  depth_shape = (batch, query_depth, intra_depth)
  return LambdaState(
      key_max=jnp.full(depth_shape, -jnp.inf, dtype),
      key_norm=jnp.zeros(depth_shape, dtype),
      numerator=jnp.zeros((batch, query_depth, value_depth, intra_depth), dtype),
      values=jnp.zeros((batch, window, value_depth, intra_depth), dtype),
      position=jnp.zeros((), jnp.int32))


def lambda_step(state: LambdaState, query: jax.Array, key: jax.Array,
                value: jax.Array, embeddings: jax.Array | None = None
                ) -> tuple[jax.Array, LambdaState]:
  """Output [B, H, V] of one new position and the state after it.

  Args:
    state: the state after the previous positions.
    query: [B, H, K]; key: [B, K, U]; value: [B, V, U] of the new position.
    embeddings: the layer's relative table [R, K, U] (offset m − n + R//2),
      or None for content only; its causal half must fit the state's window.
  """
  accumulate = jnp.promote_types(key.dtype, jnp.float32)
  key, value = key.astype(accumulate), value.astype(accumulate)
  key_max = jnp.maximum(state.key_max, key)
  old_scale = jnp.exp(state.key_max - key_max)
  new_weight = jnp.exp(key - key_max)
  key_norm = state.key_norm * old_scale + new_weight
  numerator = (state.numerator * old_scale[:, :, None, :]
               + new_weight[:, :, None, :] * value[:, None, :, :])
  lambdas = jnp.sum(numerator / key_norm[:, :, None, :], axis=-1)  # [B, K, V]

  values = state.values
  if embeddings is not None:
    window = values.shape[1]
    if position_window(embeddings.shape[0]) != window:
      raise ValueError(f"a table of {embeddings.shape[0]} offsets needs a window "
                       f"of {position_window(embeddings.shape[0])} values, the "
                       f"state keeps {window}.")
    values = jax.lax.dynamic_update_index_in_dim(
        values, value, state.position % window, axis=1)
    # Slot s holds position n − ((n − s) mod W), i.e. offset −((n − s) mod W).
    # Slots not written yet hold zeros, like the parallel pass's padding.
    offsets = -((state.position - jnp.arange(window)) % window)
    table = embeddings[embeddings.shape[0] // 2 + offsets].astype(accumulate)
    lambdas = lambdas + jnp.einsum("sku,bsvu->bkv", table, values)
  out = jnp.einsum("bhk,bkv->bhv", query.astype(accumulate), lambdas)
  new_state = LambdaState(key_max, key_norm, numerator, values,
                          state.position + 1)
  return out.astype(query.dtype), new_state
