"""Mixup and CutMix (train/mixing.py) against NumPy transcriptions of timm's
batch-mode formulas (timm/data/mixup.py): the box, the mixed images and
soft targets per device shard, λ's distribution, a train step against a
hand-computed one, exact resume, and the refusals of bad values.
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from flax import nnx

import tiny_config
from conftest import assert_same_state, run
from configs import lambda_lm
from lambda_networks import data
from lambda_networks.errors import UserError
from lambda_networks.train import config_checks
from lambda_networks.train import mixing
from lambda_networks.train import optimizer
from lambda_networks.train import state as state_lib
from lambda_networks.train import steps
from lambda_networks.train import tasks
from lambda_networks.train import trainer
from test_optimizer import LEARNING_RATE, reference_updates

NUM_CLASSES = 5
SMOOTHING = 0.1
# Seed 0 draws mixup at steps 0, 2, 3, 4 and CutMix at steps 1, 5 (asserted
# where a test relies on it).
BOTH = mixing.Mixing(mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5,
                     prob=1.0, seed=0)
_draw = jax.jit(mixing.draw, static_argnums=(0, 2, 3))


def timm_box(ratio, center_y, center_x, height, width):
  """timm's `rand_bbox` (margin 0) for a given λ and centre, in float32."""
  side = np.sqrt(np.float32(1) - np.float32(ratio))
  cut_h, cut_w = int(height * side), int(width * side)
  return (np.clip(center_y - cut_h // 2, 0, height),
          np.clip(center_y + cut_h // 2, 0, height),
          np.clip(center_x - cut_w // 2, 0, width),
          np.clip(center_x + cut_w // 2, 0, width))


def partner_indices(batch_size: int, shards: int) -> np.ndarray:
  """Index of each example's partner: reversed within each shard."""
  size = batch_size // shards
  return np.array([i // size * size + size - 1 - i % size
                   for i in range(batch_size)])


def timm_mixed(images, labels, mix, shards, num_classes, smoothing):
  """(images, targets) as timm's `_mix_batch` and `mixup_target` make them
  from λ and the box of `mix`, per shard."""
  images, labels = np.asarray(images), np.asarray(labels)
  other = partner_indices(len(labels), shards)
  ratio = float(mix.ratio)
  if bool(mix.use_cutmix):
    top, bottom, left, right = np.asarray(mix.box)
    mixed = images.copy()
    mixed[:, top:bottom, left:right] = images[other][:, top:bottom, left:right]
  else:
    mixed = images * ratio + images[other] * (1 - ratio)
  off = smoothing / num_classes
  one_hot = lambda y: np.where(np.arange(num_classes) == y[:, None],
                               1 - smoothing + off, off)
  return mixed, one_hot(labels) * ratio + one_hot(labels[other]) * (1 - ratio)


def test_cutmix_box_is_timms_rand_bbox():
  height, width = 7, 6
  ratios = np.float32([0.0, 0.05, 0.3, 0.5, 0.77, 0.99, 1.0])
  grid = np.array([(r, y, x) for r in ratios for y in range(height)
                   for x in range(width)])
  boxes = jax.vmap(lambda r, y, x: mixing.cutmix_box(r, y, x, height, width))(
      jnp.float32(grid[:, 0]), jnp.int32(grid[:, 1]), jnp.int32(grid[:, 2]))
  want = [timm_box(r, int(y), int(x), height, width) for r, y, x in grid]
  np.testing.assert_array_equal(boxes, np.array(want))
  assert (boxes[:, 0] == 0).any() and (boxes[:, 1] == height).any()  # Clipped.


def _step_of_kind(cutmix: bool, height: int, width: int) -> int:
  """The first step whose draw (seed 0) is of that kind and really mixes."""
  for step in range(20):
    mix = _draw(BOTH, mixing.key(BOTH.seed, step), height, width)
    if bool(mix.use_cutmix) == cutmix and 0.05 < float(mix.ratio) < 0.95:
      return step
  raise AssertionError("no such step")


@pytest.mark.parametrize("shards", [1, 2, 4])
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
def test_mixed_batch_equals_the_formula_per_shard(cutmix, shards):
  rng = np.random.default_rng(shards)
  height, width = 9, 8
  images = rng.normal(size=(8, height, width, 3)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, 8).astype(np.int32)
  step = _step_of_kind(cutmix, height, width)
  mix = _draw(BOTH, mixing.key(BOTH.seed, step), height, width)
  got = mixing.mix_batch(BOTH, {"image": jnp.asarray(images),
                                "label": jnp.asarray(labels)}, step,
                         shards=shards)
  want_images, want_targets = timm_mixed(images, labels, mix, shards,
                                         NUM_CLASSES, SMOOTHING)
  np.testing.assert_allclose(got["image"], want_images, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(
      tasks.mixed_targets(got, NUM_CLASSES, SMOOTHING), want_targets,
      rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(got["label"], labels)
  if cutmix:  # timm's `cutmix_bbox_and_lam`: λ = 1 − the box's area share.
    top, bottom, left, right = np.asarray(mix.box)
    assert 0 < (bottom - top) * (right - left)
    np.testing.assert_allclose(
        mix.ratio, 1 - (bottom - top) * (right - left) / (height * width),
        rtol=1e-6)


def test_partners_stay_within_each_shard_of_each_micro_batch():
  # 2 devices hold 0..7 and 8..15; micro-batch i is chunk i of each.
  micro = steps.micro_batches({"label": jnp.arange(16)}, 2, data_shards=2)
  partners = [mixing.partner(m, 2) for m in micro["label"]]
  np.testing.assert_array_equal(partners, [[3, 2, 1, 0, 11, 10, 9, 8],
                                           [7, 6, 5, 4, 15, 14, 13, 12]])


def test_lambda_its_kind_and_cutmix_share_follow_the_config():
  """4000 draws of one config: the switch and mix probabilities, mixup's λ
  ~ Beta(α, α), and CutMix's corrected λ equal to the exact share of the
  image left to the example."""
  config = mixing.Mixing(0.4, 1.0, switch_prob=0.3, prob=0.8, seed=1)
  count, height, width = 4000, 12, 10
  keys = jax.vmap(lambda step: mixing.key(config.seed, step))(
      jnp.arange(count))
  draws = jax.jit(jax.vmap(
      lambda rng: mixing.draw(config, rng, height, width)))(keys)
  use_cutmix, ratio = np.asarray(draws.use_cutmix), np.asarray(draws.ratio)
  mixup = ~use_cutmix & (ratio < 1)
  assert abs(use_cutmix.mean() - 0.8 * 0.3) < 0.03
  assert abs(mixup.mean() - 0.8 * 0.7) < 0.03
  assert scipy.stats.kstest(ratio[mixup], "beta", args=(0.4, 0.4)).pvalue > 0.01
  assert not np.asarray(draws.box)[~use_cutmix].any()  # No box for mixup.
  # The pixels that come from the partner: mix zeros (own) with ones.
  images = jnp.concatenate([jnp.zeros((1, height, width, 1)),
                            jnp.ones((1, height, width, 1))])
  cut = jax.tree.map(lambda x: x[use_cutmix], draws)
  pasted = jax.vmap(lambda mix: mixing.mix_images(images, mix, 1)[0])(cut)
  share_left = 1 - np.asarray(pasted).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(cut.ratio, share_left, rtol=1e-6, atol=1e-7)
  # Corrected: a box clipped at a border leaves more than the drawn λ, so
  # CutMix's λ is no longer Beta(1, 1) = uniform but leans towards 1.
  assert np.mean(cut.ratio) > 0.55 and (cut.ratio < 1).mean() > 0.9


INFO = data.DatasetInfo("test", NUM_CLASSES, (16, 16, 3), 160, 16)
WEIGHT_DECAY = 1e-3


def _one_stage_config(**changes):
  """The one-stage tiny config (mixing does not depend on the model)."""
  config = tiny_config.get_one_stage_config()
  config.update(mixup_alpha=BOTH.mixup_alpha, cutmix_alpha=BOTH.cutmix_alpha,
                seed=BOTH.seed, **changes)
  return config


def _hand_loss_and_grads(parts):
  """Jitted (loss, logits), grads of the model on given images and soft
  targets: softmax cross-entropy written out, batch norm in training mode."""

  @jax.jit
  def loss_and_grads(params, batch_stats, images, targets):
    def loss_fn(params):
      model = nnx.merge(parts.graphdef, params, batch_stats, parts.rest)
      model.train()
      logits = model(images)
      loss = -jnp.sum(targets * jax.nn.log_softmax(logits), -1).mean()
      return loss, logits
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  return loss_and_grads


def _train_step(config, data_shards: int = 2, initial=None):
  """(parts, first state, jitted train step) of SGD at LEARNING_RATE.

  `initial` (parts, state) skips initialising (it costs about as much as
  compiling) where the config changes the step, not the model.
  """
  config_checks.check(config)
  schedule = optax.constant_schedule(LEARNING_RATE)
  tx = optimizer.create_optimizer(config, schedule)
  parts, state = initial or state_lib.create_train_state(config, INFO, tx)
  return parts, state, jax.jit(steps.make_train_step(
      parts, tx, schedule, config, data_shards=data_shards))


def _random_batch(rng, size: int = 8) -> dict:
  images = rng.normal(size=(size, *INFO.image_shape)).astype(np.float32)
  return {"image": images,
          "label": rng.integers(0, NUM_CLASSES, size).astype(np.int32)}


_STEP_CHANGES = dict(label_smoothing=SMOOTHING, global_batch_size=8,
                     dropout_rate=0.0, stochastic_depth_rate=0.0,
                     ema_decay=0.0, momentum=0.9, weight_decay=WEIGHT_DECAY)


@pytest.fixture(scope="module")
def two_steps():
  """Two jitted SGD steps with mixup (step 0) and CutMix (step 1) on 2
  shards: (parts, states, batches, metrics)."""
  parts, state, train_step = _train_step(_one_stage_config(**_STEP_CHANGES))
  rng = np.random.default_rng(0)
  states, batches, all_metrics = [state], [], []
  for _ in range(2):
    batches.append(_random_batch(rng))
    state, metrics = train_step(state, batches[-1])
    states.append(state)
    all_metrics.append(metrics)
  return parts, states, batches, all_metrics


@pytest.mark.slow  # About 10 s of compiling.
def test_train_step_with_mixing_equals_a_hand_computed_step(two_steps):
  parts, states, batches, all_metrics = two_steps
  loss_and_grads = _hand_loss_and_grads(parts)
  grads_list = []
  for step, batch in enumerate(batches):
    mix = _draw(BOTH, mixing.key(BOTH.seed, step), 16, 16)
    assert bool(mix.use_cutmix) == (step == 1) and float(mix.ratio) < 0.95
    images, targets = timm_mixed(batch["image"], batch["label"], mix, 2,
                                 NUM_CLASSES, SMOOTHING)
    (loss, logits), grads = loss_and_grads(
        states[step].params, states[step].batch_stats, images, targets)
    np.testing.assert_allclose(all_metrics[step]["loss"], loss, rtol=1e-5)
    larger = np.where(float(mix.ratio) >= 0.5, batch["label"],
                      batch["label"][partner_indices(8, 2)])
    np.testing.assert_allclose(all_metrics[step]["accuracy"],
                               np.mean(np.argmax(logits, -1) == larger))
    grads_list.append(grads)
  want = reference_updates("sgd", states[0].params, grads_list, WEIGHT_DECAY,
                           momentum=0.9)  # Decay on kernels only.
  for step in (0, 1):
    got = jax.tree.map(lambda new, old: new - old, states[step + 1].params,
                       states[step].params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4,
                                                         atol=2e-7),
                 got, want[step])


@pytest.mark.slow  # About 8 s of compiling.
def test_each_micro_batch_draws_its_own_mix_within_its_shards(two_steps):
  """Accumulation 2 on 2 shards: micro-batch i (chunk i of each device's
  4 examples) is mixed with the key of (seed, step 0, i); the step's loss
  and update are the means of the micro-batches' hand-computed ones."""
  first_parts, states, _, _ = two_steps
  parts, state, train_step = _train_step(_one_stage_config(
      gradient_accumulation_steps=2, **_STEP_CHANGES),
      initial=(first_parts, states[0]))
  batch = _random_batch(np.random.default_rng(1))
  new_state, metrics = train_step(state, batch)
  loss_and_grads = _hand_loss_and_grads(parts)
  micro = steps.micro_batches(batch, 2, data_shards=2)
  losses, grads_list, ratios = [], [], []
  for index in range(2):
    mix = _draw(BOTH, mixing.key(BOTH.seed, 0, index), 16, 16)
    images, targets = timm_mixed(micro["image"][index], micro["label"][index],
                                 mix, 2, NUM_CLASSES, SMOOTHING)
    (loss, _), grads = loss_and_grads(state.params, state.batch_stats, images,
                                      targets)
    losses.append(loss)
    grads_list.append(grads)
    ratios.append(float(mix.ratio))
  assert ratios[0] != ratios[1]  # Two draws.
  np.testing.assert_allclose(metrics["loss"], np.mean(losses), rtol=1e-5)
  mean_grads = jax.tree.map(lambda a, b: (a + b) / 2, *grads_list)
  want = reference_updates("sgd", state.params, [mean_grads], WEIGHT_DECAY,
                           momentum=0.9)[0]
  got = jax.tree.map(lambda new, old: new - old, new_state.params,
                     state.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4,
                                                       atol=2e-7), got, want)


@pytest.fixture(scope="module")
def resumed_and_straight(tmp_path_factory):
  """Mixup and CutMix (and dropout), in-process on one device: 8 steps
  straight, and a copy of that workdir cut back to its step-3 checkpoint,
  run again to step 8."""
  config = _one_stage_config()
  straight = tmp_path_factory.mktemp("mixup") / "straight"
  trainer.train_and_evaluate(config, str(straight))
  resumed = straight.parent / "resumed"
  shutil.copytree(straight, resumed)
  for checkpoint in (resumed / "checkpoints").iterdir():
    if int(checkpoint.name) > 3:
      shutil.rmtree(checkpoint)
  (resumed / "final_metrics.json").unlink()
  lines, original_console = [], trainer.console
  trainer.console = lines.append
  try:
    trainer.train_and_evaluate(config, str(resumed))
  finally:
    trainer.console = original_console
  return straight, resumed, lines


@pytest.mark.slow  # About 20 s: two runs of the trainer, in-process.
def test_resume_with_mixup_and_cutmix_is_bit_identical(resumed_and_straight):
  kinds = {bool(_draw(BOTH, mixing.key(BOTH.seed, step), 32, 32).use_cutmix)
           for step in range(3, 8)}
  assert kinds == {False, True}  # Both kinds after the resume.
  straight, resumed, lines = resumed_and_straight
  assert any(line.startswith("Resumed from step 3 ") for line in lines), lines
  assert_same_state(straight, resumed)


def test_mixing_is_refused_for_language_models():
  config = lambda_lm.get_config()
  config.cutmix_alpha = 1.0
  with pytest.raises(UserError, match=r"Mixup/CutMix \(config.cutmix_alpha="
                     r"1.0\) mixes images and their labels, which "
                     r"config.task='language_model' does not have"):
    config_checks.check(config)


def test_mixing_is_refused_when_a_device_holds_one_example():
  config = tiny_config.get_config()
  config.update(mixup_alpha=0.2, global_batch_size=16,
                gradient_accumulation_steps=2)
  config_checks.check_against_mesh(config, 4)  # 2 per micro-batch: fine.
  with pytest.raises(UserError, match="holds 1 example") as error:
    config_checks.check_against_mesh(config, 8)
  assert "\n" not in str(error.value)


_COLLECTIVES_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from lambda_networks.train import mixing
sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)),
                         PartitionSpec("data"))
batch = {"image": jnp.zeros((32, 8, 8, 3)), "label": jnp.zeros(32, jnp.int32)}
batch = jax.device_put(batch, sharding)
both = mixing.Mixing(0.2, 1.0, 0.5, 1.0, seed=0)
for shards in (8, 1):
  step = jax.jit(lambda batch: mixing.mix_batch(both, batch, 0, shards=shards))
  text = step.lower(batch).compile().as_text()
  print(shards, [op for op in ("collective-permute", "all-to-all", "all-gather")
                 if op in text])
"""


@pytest.mark.slow  # A subprocess with 8 simulated devices, about 5 s.
def test_partners_within_shards_move_nothing_between_devices():
  """XLA's compiled mixing of a batch sharded over 8 devices: per-shard
  partners need no collective; the whole batch reversed would."""
  _, output = run(["-c", _COLLECTIVES_SCRIPT], devices=8)
  assert "8 []" in output.splitlines(), output
  assert "1 ['collective-permute']" in output.splitlines(), output
