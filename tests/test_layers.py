"""Tests of the LambdaLayer and MultiHeadSelfAttention modules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lambda_networks.layers import LambdaLayer, MultiHeadSelfAttention
from lambda_networks.ops import lambda_interactions


def kernel(linear: nnx.Linear) -> np.ndarray:
  return np.asarray(linear.kernel[...])


def test_feature_map_and_sequence_shapes():
  layer = LambdaLayer(12, 32, query_depth=8, heads=4, receptive_field=5, rngs=nnx.Rngs(0))
  assert layer(jnp.ones((2, 7, 9, 12))).shape == (2, 7, 9, 32)
  seq = LambdaLayer(12, 32, receptive_field=7, spatial_dims=1, rngs=nnx.Rngs(0))
  assert seq(jnp.ones((3, 10, 12))).shape == (3, 10, 32)


def test_parameters_follow_the_paper():
  d, out, k, h, u, r = 64, 128, 16, 4, 2, 7
  layer = LambdaLayer(d, out, query_depth=k, heads=h, intra_depth=u,
                      receptive_field=r, rngs=nnx.Rngs(0))
  v = out // h
  assert kernel(layer.query_proj).shape == (d, h * k)
  assert kernel(layer.key_proj).shape == (d, k * u)
  assert kernel(layer.value_proj).shape == (d, v * u)
  assert layer.embeddings[...].shape == (r, r, k, u)
  assert layer.query_proj.bias is None and layer.value_proj.bias is None
  params = nnx.state(layer, nnx.Param)
  count = sum(x.size for x in jax.tree.leaves(params))
  # projections + batch-norm scale/bias on queries and values + table
  assert count == d * (h * k + k * u + v * u) + 2 * (h * k + v * u) + r * r * k * u


def test_embeddings_argument_shares_the_table():
  first = LambdaLayer(8, 16, query_depth=4, receptive_field=5, rngs=nnx.Rngs(0))
  second = LambdaLayer(16, 32, query_depth=4, receptive_field=5,
                       embeddings=first.embeddings, rngs=nnx.Rngs(1))
  assert second.embeddings is first.embeddings
  assert second(first(jnp.ones((1, 6, 6, 8)))).shape == (1, 6, 6, 32)


@pytest.mark.parametrize("kwargs, match", [
    (dict(receptive_field=7), r"shape \(5, 5, 4, 1\), but .* \(7, 7, 4, 1\)"),
    (dict(receptive_field=5, query_depth=8), "needs \\(5, 5, 8, 1\\)"),
    (dict(receptive_field=None), "receptive_field=None has no position table"),
])
def test_embeddings_of_the_wrong_shape_are_refused(kwargs, match):
  table = LambdaLayer(8, 16, query_depth=4, receptive_field=5,
                      rngs=nnx.Rngs(0)).embeddings
  kwargs = dict(dict(query_depth=4), **kwargs)
  with pytest.raises(ValueError, match=match):
    LambdaLayer(8, 16, embeddings=table, rngs=nnx.Rngs(0), **kwargs)
  with pytest.raises(ValueError, match="must be an nnx.Param"):
    LambdaLayer(8, 16, query_depth=4, receptive_field=5,
                embeddings=table[...], rngs=nnx.Rngs(0))


def test_paper_initialisation_scales():
  d, k = 256, 16
  layer = LambdaLayer(d, 256, query_depth=k, rngs=nnx.Rngs(1))
  np.testing.assert_allclose(kernel(layer.query_proj).std(), (d * k) ** -0.5, rtol=0.05)
  np.testing.assert_allclose(kernel(layer.key_proj).std(), d ** -0.5, rtol=0.05)
  np.testing.assert_allclose(kernel(layer.value_proj).std(), d ** -0.5, rtol=0.05)


@pytest.mark.parametrize("method", ["einsum", "conv"])
def test_layer_wires_projections_into_the_lambda_math(method):
  """With no normalisation the layer is lambda_interactions of projections."""
  layer = LambdaLayer(6, 8, query_depth=4, heads=2, intra_depth=3, receptive_field=3,
                      normalization="none", method=method, rngs=nnx.Rngs(2))
  x = jax.random.normal(jax.random.key(0), (2, 5, 4, 6))
  q = (x @ kernel(layer.query_proj)).reshape(2, 5, 4, 2, 4)
  k = (x @ kernel(layer.key_proj)).reshape(2, 5, 4, 4, 3)
  v = (x @ kernel(layer.value_proj)).reshape(2, 5, 4, 4, 3)
  expected = lambda_interactions(q, k, v, layer.embeddings[...], method="einsum")
  np.testing.assert_allclose(layer(x), expected.reshape(2, 5, 4, 8), rtol=1e-5, atol=1e-5)


def test_position_bias_adds_queries_dot_bias_to_every_value_channel():
  """λᵖₙ[k, v] + b[k] gives yₙ[h, v] + Σₖ qₙ[h, k]·b[k] (timm's Conv3d bias)."""
  x = jax.random.normal(jax.random.key(0), (2, 5, 4, 6))
  plain = LambdaLayer(6, 8, query_depth=4, heads=2, receptive_field=3,
                      normalization="none", rngs=nnx.Rngs(2))
  biased = LambdaLayer(6, 8, query_depth=4, heads=2, receptive_field=3,
                       normalization="none", position_bias=True, rngs=nnx.Rngs(2))
  bias = jnp.arange(1.0, 5.0)
  biased.position_bias[...] = bias
  q = (x @ kernel(plain.query_proj)).reshape(2, 5, 4, 2, 4)
  expected = plain(x).reshape(2, 5, 4, 2, 4) + (q @ bias)[..., None]
  np.testing.assert_allclose(biased(x), expected.reshape(2, 5, 4, 8),
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="position_bias"):
    LambdaLayer(6, 8, receptive_field=None, position_bias=True, rngs=nnx.Rngs(0))


def test_global_layer_sizes_its_table_and_refuses_larger_inputs():
  layer = LambdaLayer(8, 8, receptive_field="global", input_size=(6, 5), rngs=nnx.Rngs(0))
  assert layer.embeddings[...].shape[:2] == (11, 9)
  assert layer(jnp.ones((1, 6, 5, 8))).shape == (1, 6, 5, 8)
  assert layer(jnp.ones((1, 4, 3, 8))).shape == (1, 4, 3, 8)
  with pytest.raises(ValueError, match="exceeds input_size"):
    layer(jnp.ones((1, 7, 5, 8)))
  with pytest.raises(ValueError, match="input_size"):
    LambdaLayer(8, 8, receptive_field="global", rngs=nnx.Rngs(0))


def test_content_only_layer_has_no_table():
  layer = LambdaLayer(8, 8, receptive_field=None, rngs=nnx.Rngs(0))
  assert layer.embeddings is None
  assert layer(jnp.ones((2, 4, 4, 8))).shape == (2, 4, 4, 8)


def test_batch_norm_updates_statistics_in_training_only():
  layer = LambdaLayer(8, 8, receptive_field=3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (4, 5, 5, 8)) * 3 + 1
  before = np.asarray(layer.query_norm.mean[...]).copy()
  layer.eval()
  layer(x)
  np.testing.assert_array_equal(layer.query_norm.mean[...], before)
  layer.train()
  layer(x)
  assert not np.allclose(layer.query_norm.mean[...], before)


@pytest.mark.parametrize("normalization,train", [("layer", True), ("batch", False)])
def test_causal_layer_never_looks_ahead(normalization, train):
  layer = LambdaLayer(6, 8, heads=2, receptive_field=5, spatial_dims=1, causal=True,
                      normalization=normalization, rngs=nnx.Rngs(0))
  layer.train() if train else layer.eval()
  x = jax.random.normal(jax.random.key(2), (2, 12, 6))
  changed = x.at[:, 7:].set(jax.random.normal(jax.random.key(3), (2, 5, 6)))
  np.testing.assert_array_equal(layer(changed)[:, :7], layer(x)[:, :7])


def test_bfloat16_layer_is_finite_and_keeps_float32_params():
  layer = LambdaLayer(16, 32, receptive_field=7, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  out = layer(jax.random.normal(jax.random.key(0), (2, 9, 9, 16)))
  assert out.dtype == jnp.bfloat16 and jnp.isfinite(out).all()
  assert layer.embeddings[...].dtype == jnp.float32


def test_layer_gradients_are_finite_under_jit():
  layer = LambdaLayer(8, 16, receptive_field=5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 8))

  @nnx.jit
  def grads(model):
    return nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)

  leaves = jax.tree.leaves(grads(layer))
  assert leaves and all(jnp.isfinite(g).all() for g in leaves)
  assert any(float(jnp.abs(g).max()) > 0 for g in leaves)


@pytest.mark.parametrize("kwargs,match", [
    (dict(out_features=30, heads=4), "out_features"),
    (dict(receptive_field=22), "receptive_field must be odd .* got 22; use 21 or 23"),
    (dict(receptive_field=0), "receptive_field"),
    (dict(receptive_field="local"), "receptive_field must be an int"),
    (dict(receptive_field="23"), "got the string '23'; pass 23 without quotes"),
    (dict(receptive_field=2.0), "receptive_field must be an int"),
    (dict(causal=True), "causal"),
    (dict(spatial_dims=3), "spatial_dims"),
    (dict(normalization="group"), "normalization"),
    (dict(method="fast"), "method"),
    (dict(query_depth=0), "query_depth"),
])
def test_bad_configuration_raises_naming_the_argument(kwargs, match):
  args = dict(in_features=8, out_features=32) | kwargs
  with pytest.raises((ValueError, TypeError), match=match):
    LambdaLayer(**args, rngs=nnx.Rngs(0))


def test_bad_inputs_raise_clear_errors():
  layer = LambdaLayer(8, 8, receptive_field=3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="rank 4"):
    layer(jnp.ones((2, 16, 8)))
  with pytest.raises(ValueError, match="in_features=8"):
    layer(jnp.ones((2, 4, 4, 5)))


def reference_attention(x, layer, causal=False):
  """Softmax attention written out with numpy, one head at a time."""
  x = np.asarray(x, np.float64).reshape(x.shape[0], -1, x.shape[-1])
  q, k, v = (x @ kernel(p) for p in (layer.query_proj, layer.key_proj, layer.value_proj))
  heads = layer.heads
  out = []
  for h in range(heads):
    qh, kh, vh = (a.reshape(*a.shape[:2], heads, -1)[:, :, h] for a in (q, k, v))
    logits = qh @ kh.transpose(0, 2, 1) / np.sqrt(qh.shape[-1])
    if causal:
      logits = np.where(np.tril(np.ones(logits.shape[1:], bool)), logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out.append(weights @ vh)
  return np.concatenate(out, axis=-1)


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_reference(causal):
  spatial_dims = 1 if causal else 2
  layer = MultiHeadSelfAttention(6, 8, heads=2, spatial_dims=spatial_dims,
                                 causal=causal, rngs=nnx.Rngs(0))
  shape = (2, 10, 6) if causal else (2, 3, 4, 6)
  x = jax.random.normal(jax.random.key(0), shape)
  out = layer(x)
  assert out.shape == (*shape[:-1], 8)
  np.testing.assert_allclose(np.asarray(out).reshape(2, -1, 8),
                             reference_attention(x, layer, causal), rtol=1e-4, atol=1e-5)


def test_self_attention_errors():
  with pytest.raises(ValueError, match="out_features"):
    MultiHeadSelfAttention(8, 30, heads=4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="causal"):
    MultiHeadSelfAttention(8, 32, causal=True, rngs=nnx.Rngs(0))
