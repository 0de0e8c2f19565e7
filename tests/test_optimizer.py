"""The optimisers and gradient clipping against hand-computed updates.

Small parameter trees shaped like a model's (a classifier `head`, a conv
kernel, batch-norm scale and bias), a constant learning rate, NumPy
references written from the papers' formulas. Then two train steps of a
tiny model (LAMB with both clippings: the masks fit a real model's tree) and
the EMA they keep: weights and batch-norm statistics, evaluated together.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import tiny_config
from configs import default
from lambda_networks.data import DatasetInfo
from lambda_networks.train import evaluation
from lambda_networks.train import config_checks
from lambda_networks.train import optimizer
from lambda_networks.train import state as state_lib
from lambda_networks.train import steps

LEARNING_RATE = 0.1
INFO = DatasetInfo("synthetic", 2, (16, 16, 3), 100, 10)


def _config(**changes) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.update(changes)
  return config


def _params(seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  return {"stem": {"conv": {"kernel": normal(3, 3, 2, 4)},
                   "bn": {"scale": normal(4), "bias": normal(4)}},
          "head": {"kernel": normal(4, 3), "bias": normal(3)}}


def _run(config, params, grads_list):
  """Updates of config's optimiser for successive gradients, from `params`."""
  tx = optimizer.create_optimizer(config,
                                  optax.constant_schedule(LEARNING_RATE))
  opt_state, all_updates = tx.init(params), []
  for grads in grads_list:
    updates, opt_state = tx.update(grads, opt_state, params)
    all_updates.append(updates)
    params = optax.apply_updates(params, updates)
  return all_updates


def _decayed(path) -> bool:
  return "kernel" in jax.tree_util.keystr(path)


def _adam_steps(grads_list, b1, b2, eps):
  """Adam's bias-corrected m̂ / (√v̂ + eps) per step (Kingma & Ba, Alg. 1)."""
  m = v = 0.0
  out = []
  for t, g in enumerate(grads_list, start=1):
    g = np.asarray(g, np.float64)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    out.append((m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
  return out


def reference_updates(kind, params, grads_list, weight_decay, b1=0.9,
                      b2=0.999, eps=1e-8, momentum=0.9):
  """Per-leaf NumPy updates: SGD with coupled L2, AdamW, LAMB (decay on
  kernels only)."""
  flat_params = jax.tree_util.tree_flatten_with_path(params)[0]
  treedef = jax.tree.structure(params)
  flat_grads = [jax.tree.leaves(g) for g in grads_list]
  per_leaf = []
  for index, (path, p0) in enumerate(flat_params):
    decay = weight_decay if _decayed(path) else 0.0
    grads = [g[index] for g in flat_grads]
    p = np.asarray(p0, np.float64)
    updates = []
    if kind == "sgd":
      trace = 0.0
      for g in grads:
        trace = momentum * trace + np.asarray(g) + decay * p
        updates.append(-LEARNING_RATE * trace)
        p = p + updates[-1]
    else:
      adam = _adam_steps(grads, b1, b2, eps)
      for step in adam:  # Adam's moments depend on the gradients only.
        direction = step + decay * p
        if kind == "lamb" and decay:
          direction = direction * np.linalg.norm(p) / np.linalg.norm(direction)
        updates.append(-LEARNING_RATE * direction)
        p = p + updates[-1]
    per_leaf.append(updates)
  return [jax.tree.unflatten(treedef, [leaf[t] for leaf in per_leaf])
          for t in range(len(grads_list))]


@pytest.mark.parametrize("kind", optimizer.OPTIMIZERS)
def test_each_optimiser_matches_its_formula_with_decay_on_kernels_only(kind):
  params = _params()
  grads_list = [_params(seed) for seed in (1, 2)]
  config = _config(optimizer=kind, weight_decay=0.05, momentum=0.9,
                   adam_b1=0.8, adam_b2=0.95, adam_eps=1e-6)
  got = _run(config, params, grads_list)
  want = reference_updates(kind, params, grads_list, 0.05, b1=0.8, b2=0.95,
                           eps=1e-6, momentum=0.9)
  for got_step, want_step in zip(got, want):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5,
                                                         atol=1e-7),
                 got_step, want_step)


def test_lamb_differs_from_optax_lamb_only_where_decay_is_off():
  """Like timm's and TensorFlow's LAMB, the trust ratio skips the parameters
  kept out of weight decay; optax.lamb scales every parameter."""
  params, grads = _params(), _params(1)
  ours = _run(_config(optimizer="lamb", weight_decay=0.05, adam_eps=1e-6),
              params, [grads])[0]
  tx = optax.lamb(LEARNING_RATE, eps=1e-6, weight_decay=0.05,
                  mask=optimizer.decay_mask)
  theirs, _ = tx.update(grads, tx.init(params), params)
  for path, a in jax.tree_util.tree_flatten_with_path(ours)[0]:
    b = theirs
    for key in path:
      b = b[key.key]
    if _decayed(path):
      np.testing.assert_allclose(a, b, rtol=1e-5)
    else:
      assert not np.allclose(a, b, rtol=1e-3), jax.tree_util.keystr(path)


def _sgd_update(grads, **clipping):
  """The plain SGD step (no momentum, decay) after clipping: -lr · clipped."""
  config = _config(momentum=0.0, weight_decay=0.0, **clipping)
  return _run(config, _params(), [grads])[0]


def test_global_norm_clipping_rescales_all_gradients_together():
  grads = _params(1)
  norm = float(optax.tree.norm(grads))
  clipped = _sgd_update(grads, grad_clip_norm=norm / 4)
  jax.tree.map(lambda u, g: np.testing.assert_allclose(
      u, -LEARNING_RATE * g / 4, rtol=1e-5), clipped, grads)
  untouched = _sgd_update(grads, grad_clip_norm=norm * 2)
  jax.tree.map(lambda u, g: np.testing.assert_allclose(
      u, -LEARNING_RATE * g, rtol=1e-6), untouched, grads)


def _unit_norms(x: np.ndarray) -> np.ndarray:
  """NFNets' unit-wise norm: per output unit (last axis) of kernels."""
  if x.ndim <= 1:
    return np.full(x.shape, np.linalg.norm(x))
  axes = tuple(range(x.ndim - 1))
  return np.broadcast_to(np.sqrt(np.sum(x**2, axis=axes, keepdims=True)),
                         x.shape)


def test_adaptive_clipping_is_unit_wise_and_spares_the_classifier():
  params, clip = _params(), 0.05
  grads = jax.tree.map(lambda g: 10 * g, _params(1))
  got = _sgd_update(grads, agc_clip=clip)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    p = np.asarray(_leaf(params, path))
    g = np.asarray(g)
    limit = clip * np.maximum(_unit_norms(p), optimizer.AGC_EPS)
    g_norm = _unit_norms(g)
    want = np.where(g_norm > limit, g * limit / g_norm, g)
    if jax.tree_util.keystr(path).startswith("['head']"):
      want = g  # The classifier is never clipped.
    else:
      assert (g_norm > limit).any()  # The test clips something.
    np.testing.assert_allclose(_leaf(got, path), -LEARNING_RATE * want,
                               rtol=1e-5)


def test_adaptive_clipping_comes_before_global_norm_clipping():
  grads = jax.tree.map(lambda g: 10 * g, _params(1))
  after_agc = jax.tree.map(lambda u: -u / LEARNING_RATE,
                           _sgd_update(grads, agc_clip=0.05))
  limit = float(optax.tree.norm(after_agc)) / 3
  both = _sgd_update(grads, agc_clip=0.05, grad_clip_norm=limit)
  jax.tree.map(lambda u, g: np.testing.assert_allclose(
      u, -LEARNING_RATE * g / 3, rtol=1e-5), both, after_agc)


def _leaf(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree


@pytest.fixture(scope="module")
def tiny_steps():
  """Two jitted train steps of the one-stage tiny model: LAMB, both
  clippings, EMA."""
  config = tiny_config.get_one_stage_config()
  config.update(optimizer="lamb", weight_decay=0.02, grad_clip_norm=1.0,
                agc_clip=0.05, ema_decay=0.9, global_batch_size=4,
                dropout_rate=0.0, stochastic_depth_rate=0.0)
  config_checks.check(config)
  schedule = optax.constant_schedule(0.01)
  tx = optimizer.create_optimizer(config, schedule)
  parts, state = state_lib.create_train_state(config, INFO, tx)
  train_step = jax.jit(steps.make_train_step(parts, tx, schedule, config))
  rng = np.random.default_rng(0)
  states, all_metrics = [state], []
  for _ in range(2):
    batch = {"image": jnp.asarray(rng.normal(size=(4, *INFO.image_shape)),
                                  jnp.float32),
             "label": jnp.asarray(rng.integers(0, INFO.num_classes, 4))}
    state, metrics = train_step(state, batch)
    states.append(state)
    all_metrics.append(metrics)
  return parts, states, all_metrics


@pytest.mark.slow  # About 3 s of compiling (shared by the three).
def test_lamb_with_clipping_trains_the_tiny_model(tiny_steps):
  """The loss is finite; the stem and classifier move (the blocks' residual
  branches start at zero, zero-initialised last batch-norm scale, so most of
  their parameters get no gradient in the first step)."""
  _, states, all_metrics = tiny_steps
  assert all(bool(metrics["finite"]) for metrics in all_metrics)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), states[0].params,
                       states[1].params)
  for module in ("stem", "head"):
    assert all(jax.tree.leaves(moved[module])), moved[module]
  assert jax.tree.structure(states[2].opt_state) == jax.tree.structure(
      states[0].opt_state)


@pytest.mark.slow  # About 3 s of compiling (shared by the three).
def test_ema_averages_the_batch_norm_statistics_with_the_weights(tiny_steps):
  _, states, _ = tiny_steps
  assert states[0].ema_batch_stats and jax.tree.structure(
      states[0].ema_batch_stats) == jax.tree.structure(states[0].batch_stats)
  ema = {"params": states[0].params, "stats": states[0].batch_stats}
  for step in (0, 1):
    decay = min(0.9, (1 + step) / (10 + step))  # The EMA's warm-up.
    new = {"params": states[step + 1].params,
           "stats": states[step + 1].batch_stats}
    ema = jax.tree.map(lambda e, x, d=decay: d * e + (1 - d) * x, ema, new)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                         atol=1e-7),
                 {"params": states[step + 1].ema_params,
                  "stats": states[step + 1].ema_batch_stats}, ema)
  differs = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         states[2].ema_batch_stats, states[2].batch_stats)
  assert any(jax.tree.leaves(differs))  # Not the raw statistics.


@pytest.mark.slow  # About 3 s of compiling (shared by the three).
def test_eval_use_ema_picks_the_ema_weights_and_statistics(tiny_steps):
  parts, states, _ = tiny_steps
  state = states[2]
  params, stats, name = evaluation.eval_weights(state, use_ema=True)
  assert name == "ema"
  assert params is state.ema_params and stats is state.ema_batch_stats
  params, stats, name = evaluation.eval_weights(state, use_ema=False)
  assert name == "raw"
  assert params is state.params and stats is state.batch_stats
  # The statistics matter: EMA weights score differently with raw ones.
  eval_step = jax.jit(steps.make_eval_step(parts))
  batch = {"image": jnp.asarray(np.random.default_rng(1).normal(
               size=(8, *INFO.image_shape)), jnp.float32),
           "label": jnp.arange(8) % INFO.num_classes, "mask": jnp.ones(8)}
  with_ema = eval_step(state.ema_params, state.ema_batch_stats, batch)
  with_raw = eval_step(state.ema_params, state.batch_stats, batch)
  assert float(with_ema["loss_sum"]) != float(with_raw["loss_sum"])
