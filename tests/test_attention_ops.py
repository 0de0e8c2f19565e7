"""Tests of attention_ops against slow references that loop over positions."""

import itertools

import numpy as np
import pytest

from lambda_networks import attention_ops


def _softmax_combine(logits, values):
  """Σ_m softmax(logits)_m · values_m, in float64."""
  weights = np.exp(np.asarray(logits) - np.max(logits))
  return (weights / weights.sum()) @ np.asarray(values)


def reference_2d_attention(queries, keys, values, row_table=None, col_table=None,
                           window=None):
  """logits[(x, y), (i, j)] = q·k + q·row[i − x + R//2] + q·col[j − y + C//2].

  Loops over every query, head and key position of the map; window=w keeps
  the keys with |i − x|, |j − y| ≤ w//2 (and inside the map) only.
  """
  q, k, v = (np.asarray(a, np.float64) for a in (queries, keys, values))
  batch, height, width, heads, _ = q.shape
  out = np.zeros((*q.shape[:-1], v.shape[-1]))
  for b, x, y, h in itertools.product(range(batch), range(height), range(width),
                                      range(heads)):
    logits, visible = [], []
    for i, j in itertools.product(range(height), range(width)):
      if window is not None and max(abs(i - x), abs(j - y)) > window // 2:
        continue
      logit = q[b, x, y, h] @ k[b, i, j, h]
      if row_table is not None:
        logit += q[b, x, y, h] @ row_table[i - x + len(row_table) // 2]
        logit += q[b, x, y, h] @ col_table[j - y + len(col_table) // 2]
      logits.append(logit)
      visible.append(v[b, i, j, h])
    out[b, x, y, h] = _softmax_combine(logits, visible)
  return out


def reference_axial_attention(queries, keys, values, table=None):
  """logits[x, i] = q_x·k_i + q_x·table[i − x + R//2] along axis 1, per (b, y, h)."""
  q, k, v = (np.asarray(a, np.float64) for a in (queries, keys, values))
  batch, length, other, heads, _ = q.shape
  out = np.zeros((*q.shape[:-1], v.shape[-1]))
  for b, y, h, x in itertools.product(range(batch), range(other), range(heads),
                                      range(length)):
    logits = [q[b, x, y, h] @ k[b, i, y, h]
              + (0 if table is None else q[b, x, y, h] @ table[i - x + len(table) // 2])
              for i in range(length)]
    out[b, x, y, h] = _softmax_combine(logits, v[b, :, y, h])
  return out


def reference_dot_product_attention(queries, keys, values, causal=False):
  """softmax_m(q_n·k_m / √D) over m (m ≤ n when causal), per (b, n, h)."""
  q, k, v = (np.asarray(a, np.float64) for a in (queries, keys, values))
  batch, num_positions, heads, depth = q.shape
  out = np.zeros((*q.shape[:-1], v.shape[-1]))
  for b, n, h in itertools.product(range(batch), range(num_positions), range(heads)):
    visible = range(n + 1) if causal else range(num_positions)
    logits = [q[b, n, h] @ k[b, m, h] / np.sqrt(depth) for m in visible]
    out[b, n, h] = _softmax_combine(logits, v[b, list(visible), h])
  return out


def _random(*shapes, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=shape).astype(np.float32) for shape in shapes]


def _close(got, expected):
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("table_widths", [(5, 7), (9, 11), None])
def test_global_relative_attention_matches_reference(table_widths):
  """Tables exactly 2·size − 1 wide, wider (centre-indexed), or none."""
  queries, keys, values = _random((2, 3, 4, 2, 3), (2, 3, 4, 2, 3), (2, 3, 4, 2, 5))
  tables = [None, None]
  if table_widths is not None:
    tables = _random((table_widths[0], 3), (table_widths[1], 3), seed=1)
  got = attention_ops.global_relative_attention(queries, keys, values, *tables)
  _close(got, reference_2d_attention(queries, keys, values, *tables))


@pytest.mark.parametrize("window,positions", [(3, True), (5, True), (3, False)])
def test_local_relative_attention_matches_reference(window, positions):
  """Windows reaching past the map's edges (masked), with and without tables."""
  queries, keys, values = _random((2, 4, 5, 2, 3), (2, 4, 5, 2, 3), (2, 4, 5, 2, 2))
  tables = _random((window, 3), (window, 3), seed=1) if positions else [None, None]
  got = attention_ops.local_relative_attention(queries, keys, values, window, *tables)
  _close(got, reference_2d_attention(queries, keys, values, *tables, window=window))


@pytest.mark.parametrize("table_width", [9, 13, None])
def test_axial_attention_matches_reference(table_width):
  queries, keys, values = _random((2, 5, 3, 2, 4), (2, 5, 3, 2, 4), (2, 5, 3, 2, 3))
  table = None if table_width is None else _random((table_width, 4), seed=1)[0]
  got = attention_ops.axial_attention(queries, keys, values, table)
  _close(got, reference_axial_attention(queries, keys, values, table))


@pytest.mark.parametrize("causal", [False, True])
def test_dot_product_attention_matches_reference(causal):
  queries, keys, values = _random((2, 7, 2, 3), (2, 7, 2, 3), (2, 7, 2, 4))
  got = attention_ops.dot_product_attention(queries, keys, values, causal=causal)
  _close(got, reference_dot_product_attention(queries, keys, values, causal))


def test_neighbourhoods_are_zero_padded_row_major_windows():
  x = np.arange(1, 13, dtype=np.float32).reshape(1, 3, 4)
  got = np.asarray(attention_ops.neighbourhoods(x, 3))
  padded = np.pad(x[0], 1)
  for i, j in itertools.product(range(3), range(4)):
    np.testing.assert_array_equal(got[0, i, j], padded[i:i + 3, j:j + 3].reshape(-1))
