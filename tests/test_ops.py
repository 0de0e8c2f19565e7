"""Tests of ops.lambda_interactions against a slow reference and its invariances."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lambda_networks import ops
from lambda_networks.ops import lambda_interactions

ALL_METHODS = ("einsum", "conv", "row_conv", "auto")


def reference_lambda(queries, keys, values, embeddings=None, causal=False):
  """The paper's definition, position by position, in float64 numpy."""
  queries, keys, values = (np.asarray(a, np.float64) for a in (queries, keys, values))
  batch, *spatial, heads, depth = queries.shape
  value_depth = values.shape[-2]
  positions = list(itertools.product(*(range(s) for s in spatial)))
  out = np.zeros((batch, *spatial, heads, value_depth))
  for b in range(batch):
    for n in positions:
      visible = [m for m in positions if not causal or m <= n]
      logits = np.stack([keys[(b, *m)] for m in visible])  # [M, K, U]
      weights = np.exp(logits - logits.max(axis=0))
      weights /= weights.sum(axis=0)
      lam = np.zeros((depth, value_depth))
      for weight, m in zip(weights, visible):
        lam += weight @ values[(b, *m)].T  # content: [K, U] @ [U, V]
        if embeddings is not None:
          offset = tuple(mi - ni + w // 2
                         for mi, ni, w in zip(m, n, embeddings.shape))
          if all(0 <= o < w for o, w in zip(offset, embeddings.shape)):
            lam += np.asarray(embeddings, np.float64)[offset] @ values[(b, *m)].T
      out[(b, *n)] = queries[(b, *n)] @ lam
  return out


def random_inputs(spatial, heads=2, depth=3, value_depth=4, intra_depth=1,
                  table=None, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  queries = rng.normal(size=(batch, *spatial, heads, depth)).astype(np.float32)
  keys = rng.normal(size=(batch, *spatial, depth, intra_depth)).astype(np.float32)
  values = rng.normal(size=(batch, *spatial, value_depth, intra_depth)).astype(np.float32)
  embeddings = None
  if table is not None:
    embeddings = rng.normal(size=(*table, depth, intra_depth)).astype(np.float32)
  return queries, keys, values, embeddings


# (spatial shape, table widths, intra-depth): 1-D and 2-D, local tables,
# global tables (2·size − 1), tables wider than the input, odd non-square maps.
CASES = [
    ((9,), (5,), 1),
    ((7,), (13,), 2),  # global
    ((6,), (21,), 1),  # wider than global: cropped
    ((5, 7), (3, 5), 1),  # non-square table on a non-square map
    ((5, 7), (9, 13), 3),  # global 2-D, U > 1
    ((4, 3), (11, 11), 2),  # table wider than the map
    ((6, 5), (1, 1), 1),  # position term of the position itself only
]


@pytest.mark.parametrize("spatial,table,intra_depth", CASES)
@pytest.mark.parametrize("method", ALL_METHODS)
def test_matches_reference_content_and_position(spatial, table, intra_depth, method):
  inputs = random_inputs(spatial, table=table, intra_depth=intra_depth)
  got = lambda_interactions(*inputs, method=method)
  np.testing.assert_allclose(got, reference_lambda(*inputs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spatial,intra_depth", [((11,), 1), ((4, 5), 3)])
def test_matches_reference_content_only(spatial, intra_depth):
  queries, keys, values, _ = random_inputs(spatial, intra_depth=intra_depth)
  got = lambda_interactions(queries, keys, values)
  np.testing.assert_allclose(got, reference_lambda(queries, keys, values),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spatial,table", [((10,), (5,)), ((5, 6), (3, 7)), ((4, 4), (7, 7))])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_position_term_alone_matches_reference(spatial, table, method):
  """The position term is the output minus the content-only output."""
  queries, keys, values, embeddings = random_inputs(spatial, table=table, intra_depth=2)
  position = (lambda_interactions(queries, keys, values, embeddings, method=method)
              - lambda_interactions(queries, keys, values))
  expected = (reference_lambda(queries, keys, values, embeddings)
              - reference_lambda(queries, keys, values))
  assert np.abs(expected).max() > 1.0  # the term is not trivially zero
  np.testing.assert_allclose(position, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("table", [(5,), (15,), (1,), None])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_causal_matches_reference(table, method):
  inputs = random_inputs((8,), table=table, intra_depth=2)
  got = lambda_interactions(*inputs, causal=True, method=method)
  np.testing.assert_allclose(got, reference_lambda(*inputs, causal=True),
                             rtol=1e-4, atol=1e-4)


def test_causal_prefix_softmax_is_stable_for_large_keys():
  queries, keys, values, embeddings = random_inputs((12,), table=(5,))
  keys = keys * 200.0  # exp overflows float32 without a running maximum
  got = lambda_interactions(queries, keys, values, embeddings, causal=True)
  assert np.isfinite(got).all()
  np.testing.assert_allclose(
      got, reference_lambda(queries, keys, values, embeddings, causal=True),
      rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("spatial,table,causal", [
    ((16,), (7,), False), ((16,), (7,), True), ((12,), (23,), False),
    ((9, 10), (5, 5), False), ((6, 8), (11, 15), False), ((14, 14), (23, 23), False),
])
def test_all_methods_agree(spatial, table, causal):
  inputs = random_inputs(spatial, heads=4, depth=8, value_depth=6, intra_depth=2,
                         table=table, batch=3, seed=1)
  einsum = lambda_interactions(*inputs, causal=causal, method="einsum")
  for method in ("conv", "row_conv", "auto"):
    other = lambda_interactions(*inputs, causal=causal, method=method)
    np.testing.assert_allclose(other, einsum, rtol=1e-4, atol=1e-4, err_msg=method)


def test_auto_avoids_quadratic_einsum_for_small_tables_on_large_inputs():
  assert ops.choose_method((4096,), (23,)) == "conv"
  assert ops.choose_method((64, 64), (23, 23)) != "einsum"
  assert ops.choose_method((8,), (15,)) == "einsum"


def _executed_method(inputs, method) -> str:
  """Which position execution the traced lambda_interactions contains."""
  def convolutions(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        yield eqn.invars[0].aval.ndim - 2  # Spatial axes of the convolution.
      for param in eqn.params.values():
        inner = getattr(param, "jaxpr", param)
        if hasattr(inner, "eqns"):
          yield from convolutions(inner)
  found = list(convolutions(jax.make_jaxpr(
      lambda *x: lambda_interactions(*x, method=method))(*inputs).jaxpr))
  if not found:
    return "einsum"
  spatial = inputs[0].ndim - 3
  return "row_conv" if spatial == 2 and found == [1] else "conv"


@pytest.mark.parametrize("spatial,table", [
    ((9,), (5,)), ((7,), (13,)), ((5, 7), (3, 5)), ((5, 7), (9, 13)),
    ((4, 3), (11, 11)), ((64, 64), (23, 23)), ((16, 16), (7, 7)),
    ((12, 12), (55, 55))])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_resolved_method_is_what_runs(spatial, table, method):
  inputs = random_inputs(spatial, table=table, batch=1)
  expected = ops.resolved_method(spatial, table, method)
  assert expected in ("einsum", "conv", "row_conv")
  assert _executed_method(inputs, method) == expected


@pytest.mark.parametrize("method", ALL_METHODS)
def test_translation_equivariance_1d(method):
  """Rolling the input rolls the output wherever the scope sees no seam."""
  length, width, shift = 20, 5, 3
  inputs = random_inputs((length,), table=(width,), intra_depth=2)
  out = np.asarray(lambda_interactions(*inputs, method=method))
  rolled = [np.roll(a, shift, axis=1) for a in inputs[:3]] + [inputs[3]]
  out_rolled = np.asarray(lambda_interactions(*rolled, method=method))
  half = width // 2
  interior = np.arange(half, length - half - shift)
  np.testing.assert_allclose(out_rolled[:, interior + shift], out[:, interior],
                             rtol=1e-4, atol=1e-4)
  # Near the seam the scopes differ: the check above is not vacuous.
  assert not np.allclose(out_rolled[:, shift], out[:, 0], atol=1e-3)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_translation_equivariance_2d(method):
  size, width, shift = (10, 11), (3, 5), (2, 3)
  inputs = random_inputs(size, table=width, intra_depth=1)
  out = np.asarray(lambda_interactions(*inputs, method=method))
  rolled = [np.roll(a, shift, axis=(1, 2)) for a in inputs[:3]] + [inputs[3]]
  out_rolled = np.asarray(lambda_interactions(*rolled, method=method))
  rows = slice(width[0] // 2, size[0] - width[0] // 2 - shift[0])
  cols = slice(width[1] // 2, size[1] - width[1] // 2 - shift[1])
  shifted_rows = slice(rows.start + shift[0], rows.stop + shift[0])
  shifted_cols = slice(cols.start + shift[1], cols.stop + shift[1])
  np.testing.assert_allclose(out_rolled[:, shifted_rows, shifted_cols],
                             out[:, rows, cols], rtol=1e-4, atol=1e-4)


def test_content_term_ignores_context_order():
  queries, keys, values, _ = random_inputs((4, 6), intra_depth=2)
  permutation = np.random.default_rng(3).permutation(24)

  def permute(a):
    flat = a.reshape(a.shape[0], 24, *a.shape[3:])[:, permutation]
    return flat.reshape(a.shape)

  out = lambda_interactions(queries, keys, values)
  out_permuted = lambda_interactions(queries, permute(keys), permute(values))
  np.testing.assert_allclose(out_permuted, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("table", [(7,), (31,), None])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_causal_future_never_changes_the_past(table, method):
  length, cut = 16, 9
  queries, keys, values, embeddings = random_inputs((length,), table=table, intra_depth=2)
  out = np.asarray(lambda_interactions(queries, keys, values, embeddings,
                                       causal=True, method=method))
  rng = np.random.default_rng(7)
  changed = [a.copy() for a in (queries, keys, values)]
  for a in changed:
    a[:, cut + 1:] = rng.normal(size=a[:, cut + 1:].shape) * 10
  out_changed = np.asarray(lambda_interactions(*changed, embeddings, causal=True,
                                               method=method))
  np.testing.assert_array_equal(out_changed[:, : cut + 1], out[:, : cut + 1])
  assert not np.allclose(out_changed[:, cut + 1:], out[:, cut + 1:])


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_reduced_precision_is_finite_and_close(method, dtype):
  queries, keys, values, embeddings = random_inputs((9, 9), heads=4, depth=16,
                                                    value_depth=8, table=(7, 7))
  keys = keys * 15.0  # exp(keys) overflows float16 unless the softmax is float32
  expected = lambda_interactions(queries, keys, values, embeddings, method=method)
  low = [jnp.asarray(a, dtype) for a in (queries, keys, values, embeddings)]
  got = lambda_interactions(*low, method=method)
  assert got.dtype == dtype
  assert jnp.isfinite(got).all()
  scale = float(jnp.abs(expected).max())
  np.testing.assert_allclose(np.asarray(got, np.float32), expected,
                             atol=0.03 * scale, rtol=0.03)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_are_finite_and_agree_across_methods(causal):
  spatial, table = ((12,), (5,)) if causal else ((6, 7), (5, 5))
  inputs = [jnp.asarray(a) for a in random_inputs(spatial, table=table, intra_depth=2)]

  def loss(method, *args):
    return jnp.sum(jnp.sin(lambda_interactions(*args, causal=causal, method=method)))

  grads = {m: jax.grad(lambda *a, m=m: loss(m, *a), argnums=(0, 1, 2, 3))(*inputs)
           for m in ("einsum", "conv", "row_conv")}
  for method in ("conv", "row_conv"):
    for g_einsum, g_other in zip(grads["einsum"], grads[method]):
      assert jnp.isfinite(g_einsum).all() and jnp.isfinite(g_other).all()
      assert float(jnp.abs(g_einsum).max()) > 0
      np.testing.assert_allclose(g_other, g_einsum, rtol=1e-4, atol=1e-4)


def test_bfloat16_gradients_are_finite():
  inputs = [jnp.asarray(a, jnp.bfloat16)
            for a in random_inputs((8, 8), depth=16, table=(23, 23))]
  grads = jax.grad(lambda *a: jnp.sum(lambda_interactions(*a).astype(jnp.float32)),
                   argnums=(0, 1, 2, 3))(*inputs)
  assert all(jnp.isfinite(g).all() for g in grads)


def test_traces_inside_an_outer_jit_and_vmap():
  """A user's jitted, vmapped function (one example at a time) gets it right."""
  queries, keys, values, embeddings = random_inputs((6, 6), table=(5, 5))

  @jax.jit
  def per_example(queries, keys, values, embeddings):
    def one(q, k, v):
      return lambda_interactions(q[None], k[None], v[None], embeddings)[0]
    return jax.vmap(one)(queries, keys, values)

  np.testing.assert_allclose(
      per_example(queries, keys, values, embeddings),
      reference_lambda(queries, keys, values, embeddings), rtol=1e-4, atol=1e-4)


def test_relative_embeddings_depend_only_on_offset():
  table = np.arange(5 * 7, dtype=np.float32).reshape(5, 7, 1, 1)
  embeddings = np.asarray(ops.relative_embeddings(jnp.asarray(table), (3, 4)))
  for (i, j), (p, q) in itertools.product(itertools.product(range(3), range(4)),
                                          repeat=2):
    expected = table[p - i + 2, q - j + 3, 0, 0]
    assert embeddings[i * 4 + j, p * 4 + q, 0, 0] == expected


@pytest.mark.parametrize("width", [3, 9])
def test_gather_offsets_looks_up_each_offset_and_zeroes_the_rest(width):
  """Along axis 1 of [2, R, 3]: [2, n, m, 3] = table[:, m − n + R//2] or 0."""
  table = np.arange(1, 2 * width * 3 + 1, dtype=np.float32).reshape(2, width, 3)
  got = np.asarray(ops.gather_offsets(jnp.asarray(table), 5, axis=1))
  assert got.shape == (2, 5, 5, 3)
  for n, m in itertools.product(range(5), repeat=2):
    offset = m - n + width // 2
    expected = table[:, offset] if 0 <= offset < width else np.zeros((2, 3))
    np.testing.assert_array_equal(got[:, n, m], expected)


@pytest.mark.parametrize("change,match", [
    (lambda q, k, v, e: (q[0, 0], k, v, e), "queries must have rank"),
    (lambda q, k, v, e: (q, k[:, :-1], v, e), "keys must have shape"),
    (lambda q, k, v, e: (q, k, v[..., None], e), "values must have shape"),
    (lambda q, k, v, e: (q, k[..., :2, :], v, e[..., :2, :]), "keys depth"),
    (lambda q, k, v, e: (q, k, v[..., :1], e), "values intra-depth"),
    (lambda q, k, v, e: (q, k, v, e[..., :2, :]), r"embeddings must end in \[K, U\]"),
    (lambda q, k, v, e: (q, k, v, e[..., :1]), r"embeddings must end in \[K, U\]"),
    (lambda q, k, v, e: (q, k, v, e[0]), "embeddings must have rank"),
    (lambda q, k, v, e: (q, k, v, e[:4]), "odd"),
])
def test_bad_shapes_raise_clear_errors(change, match):
  inputs = random_inputs((5, 6), table=(5, 5), intra_depth=2)
  with pytest.raises(ValueError, match=match):
    lambda_interactions(*change(*inputs))


def test_causal_on_2d_and_unknown_method_raise():
  inputs = random_inputs((5, 6), table=(5, 5))
  with pytest.raises(ValueError, match="causal=True needs one spatial axis"):
    lambda_interactions(*inputs, causal=True)
  with pytest.raises(ValueError, match="method must be one of"):
    lambda_interactions(*inputs, method="fft")


@pytest.mark.parametrize("method", ALL_METHODS)
def test_float64_matches_reference_tightly(method):
  """Under jax_enable_x64 every method runs, accumulates and returns float64."""
  queries, keys, values, embeddings = random_inputs((5, 6), intra_depth=2,
                                                    table=(3, 5))
  expected = reference_lambda(queries, keys, values, embeddings)
  with jax.enable_x64(True):
    wide = [jnp.asarray(a, jnp.float64) for a in (queries, keys, values, embeddings)]
    got = lambda_interactions(*wide, method=method)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-10)
