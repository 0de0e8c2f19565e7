"""Tests of the attention baselines in layers.py (RelativeSelfAttention, Axial).

LambdaLayer and MultiHeadSelfAttention are tested in test_layers.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lambda_networks import layers
from conftest import jit_apply as _apply
from conftest import rbg_rngs as _rngs


def _inputs(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def test_local_window_covering_the_map_equals_global_attention():
  """Two execution strategies of the same function agree."""
  x = _inputs((2, 5, 6, 8))
  global_attn = layers.RelativeSelfAttention(8, 16, heads=4, input_size=(5, 6),
                                             rngs=_rngs(0))
  local_attn = layers.RelativeSelfAttention(8, 16, heads=4, window=11,
                                            rngs=_rngs(1))
  for name in ("query_proj", "key_proj", "value_proj"):
    setattr(local_attn, name, getattr(global_attn, name))
  # Global tables cover offsets ±4 (rows) and ±5 (cols); the window ±5.
  local_attn.row_embeddings[...] = jnp.pad(global_attn.row_embeddings[...],
                                           ((1, 1), (0, 0)))
  local_attn.col_embeddings[...] = global_attn.col_embeddings[...]
  np.testing.assert_allclose(_apply(local_attn, x), _apply(global_attn, x),
                             atol=1e-5)


def test_local_attention_sees_only_its_window():
  attn = layers.RelativeSelfAttention(4, 8, heads=2, window=3, rngs=_rngs(0))
  x = _inputs((1, 8, 8, 4))
  base = _apply(attn, x)
  far = _apply(attn, x.at[0, 5, 5].add(10.0))  # Offset (3, 3) from (2, 2).
  near = _apply(attn, x.at[0, 3, 3].add(10.0))  # Offset (1, 1) from (2, 2).
  np.testing.assert_allclose(far[0, 2, 2], base[0, 2, 2], atol=1e-6)
  assert not np.allclose(near[0, 2, 2], base[0, 2, 2], atol=1e-3)


def test_local_attention_is_translation_equivariant_in_the_interior():
  attn = layers.RelativeSelfAttention(4, 8, heads=2, window=3, rngs=_rngs(0))
  x = _inputs((1, 10, 10, 4))
  shifted = jnp.roll(x, (1, 2), axis=(1, 2))
  out, out_shifted = _apply(attn, x), _apply(attn, shifted)
  # Positions whose windows stay inside the map in both inputs.
  np.testing.assert_allclose(out_shifted[0, 3:8, 4:8], out[0, 2:7, 2:6], atol=1e-5)


def test_global_attention_without_positions_matches_multi_head_attention():
  x = _inputs((2, 4, 5, 6))
  relative = layers.RelativeSelfAttention(6, 8, heads=2, relative_positions=False,
                                          rngs=_rngs(0))
  plain = layers.MultiHeadSelfAttention(6, 8, heads=2, rngs=_rngs(1))
  for name in ("query_proj", "key_proj", "value_proj"):
    setattr(plain, name, getattr(relative, name))
  np.testing.assert_allclose(_apply(relative, x), _apply(plain, x), atol=1e-5)


def test_wider_keys_and_output_projection_match_multi_head_attention():
  """d_k ≠ d_v (AA's κ = 2υ) and W^O: MHA with key_depth, then the projection."""
  x = _inputs((2, 4, 5, 6))
  relative = layers.RelativeSelfAttention(
      6, 4, heads=2, relative_positions=False, key_features=8,
      output_projection=True, rngs=_rngs(0))
  assert (relative.key_depth, relative.value_depth) == (4, 2)
  plain = layers.MultiHeadSelfAttention(6, 4, heads=2, key_depth=4,
                                        rngs=_rngs(1))
  for name in ("query_proj", "key_proj", "value_proj"):
    setattr(plain, name, getattr(relative, name))
  expected = _apply(plain, x) @ relative.output_proj.kernel[...]
  np.testing.assert_allclose(_apply(relative, x), expected, atol=1e-5)


def test_axial_attention_is_height_then_width_attention():
  """Without positions, each pass is MultiHeadSelfAttention over one axis."""
  x = _inputs((2, 4, 5, 6))
  axial = layers.AxialSelfAttention(6, 8, heads=2, relative_positions=False,
                                    rngs=_rngs(0))
  height = layers.MultiHeadSelfAttention(6, 8, heads=2, spatial_dims=1,
                                         rngs=_rngs(1))
  width = layers.MultiHeadSelfAttention(8, 8, heads=2, spatial_dims=1,
                                        rngs=_rngs(2))
  for mhsa, projections in ((height, axial.height_proj), (width, axial.width_proj)):
    mhsa.query_proj, mhsa.key_proj, mhsa.value_proj = projections
  columns = jnp.swapaxes(x, 1, 2).reshape(10, 4, 6)  # [B·W, H, C]
  after_height = jnp.swapaxes(_apply(height, columns).reshape(2, 5, 4, 8), 1, 2)
  rows = after_height.reshape(8, 5, 8)  # [B·H, W, C]
  expected = _apply(width, rows).reshape(2, 4, 5, 8)
  np.testing.assert_allclose(_apply(axial, x), expected, atol=1e-5)


def test_axial_attention_reaches_the_whole_map_with_positions():
  axial = layers.AxialSelfAttention(4, 8, heads=2, input_size=6, rngs=_rngs(0))
  x = _inputs((1, 6, 6, 4))
  out = _apply(axial, x)
  assert out.shape == (1, 6, 6, 8)
  moved = _apply(axial, x.at[0, 0, 0].add(10.0))
  assert not np.allclose(moved[0, 5, 5], out[0, 5, 5], atol=1e-4)
  # Smaller inputs crop the tables; larger ones are refused.
  assert _apply(axial, x[:, :3, :5]).shape == (1, 3, 5, 8)
  with pytest.raises(ValueError, match="exceeds input_size"):
    _apply(axial, _inputs((1, 7, 6, 4)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(window=4), "window must be odd"),
    (dict(heads=3), "divisible by heads"),
    (dict(heads=2, key_features=5), r"key_features \(5\) must be divisible by heads"),
    (dict(window=3.0), "window must be an int, got a float 3.0"),
    (dict(), "needs input_size"),
])
def test_relative_attention_errors(kwargs, match):
  with pytest.raises((ValueError, TypeError), match=match):
    layers.RelativeSelfAttention(4, 8, rngs=_rngs(0), **kwargs)


def test_global_attention_refuses_inputs_beyond_its_tables():
  attn = layers.RelativeSelfAttention(4, 8, heads=2, input_size=4, rngs=_rngs(0))
  assert _apply(attn, _inputs((1, 3, 4, 4))).shape == (1, 3, 4, 8)
  with pytest.raises(ValueError, match="exceeds input_size"):
    _apply(attn, _inputs((1, 5, 4, 4)))
