"""Tests of the model zoo (lambda_networks/models): layouts, forwards, modes.

Full-size models are only built abstractly (nnx.eval_shape); forward passes
use tiny variants (width_multiplier, stage_depths) at small, odd sizes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lambda_networks import layers
from lambda_networks.models import common
from lambda_networks.models import mixers
from lambda_networks.models import resnet
from lambda_networks.models import get_config
from lambda_networks.models import get_model
from conftest import abstract_model as _abstract
from conftest import jit_apply as _forward
from conftest import rbg_rngs as _rngs

TINY = dict(width_multiplier=1 / 16)
ONE_BLOCK = dict(TINY, stage_depths=(1, 1, 1, 1), attention_heads=2)
# lambda_resnet26's block kinds once each: c4 holds a conv and a plain lambda
# block, c5 a strided lambda block.
LAMBDA_BLOCKS = dict(TINY, stage_depths=(1, 1, 2, 1))


def _images(height, width=None, channels=3, batch=2, seed=0):
  shape = (batch, height, width or height, channels)
  return jax.random.normal(jax.random.key(seed), shape)


def _tiny_family_member(depth):
  """A tiny abstract LambdaResNet (the layout does not depend on the width)."""
  return _abstract(f"lambda_resnet{depth}", num_classes=10, **TINY)


# c4 lambda blocks of the family: 1/3/6/6/6/6/8 (docs/paper.md#lambdaresnets; 1 for our 26),
# each the last block of one of n equal chunks of c4, written out by hand.
FAMILY_C4_LAMBDA_BLOCKS = {
    26: (1,),
    50: (5,),
    101: (6, 14, 22),
    152: (5, 11, 17, 23, 29, 35),
    200: (5, 11, 17, 23, 29, 35),
    270: (7, 16, 25, 34, 43, 52),
    350: (11, 23, 35, 47, 59, 71),
    420: (9, 20, 31, 42, 53, 64, 75, 86),
}
FAMILY_STAGE_DEPTHS = {
    26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
    200: (3, 24, 36, 3), 270: (4, 29, 53, 4), 350: (4, 36, 72, 4),
    420: (4, 44, 87, 4),
}


@pytest.mark.parametrize("depth", sorted(FAMILY_C4_LAMBDA_BLOCKS))
def test_lambda_resnet_family_layout(depth):
  """The config's layout (pure Python); the built model follows it (below)."""
  config = get_config(f"lambda_resnet{depth}")
  layout = config.block_mixers()
  assert tuple(len(stage) for stage in layout) == FAMILY_STAGE_DEPTHS[depth]
  lambda_blocks = [
      tuple(i for i, mixer in enumerate(stage) if mixer == "lambda")
      for stage in layout
  ]
  c5_depth = FAMILY_STAGE_DEPTHS[depth][3]
  assert lambda_blocks == [(), (), FAMILY_C4_LAMBDA_BLOCKS[depth],
                           tuple(range(c5_depth))]
  assert {mixer for stage in layout for mixer in stage} == {"conv", "lambda"}
  # Squeeze-excitation in the convolutional blocks only.
  assert config.se_ratio > 0 and not config.se_in_non_conv_blocks
  assert (config.query_depth, config.heads, config.intra_depth,
          config.receptive_field) == (16, 4, 1, 23)


@pytest.mark.parametrize("depth", [26, 50])
def test_lambda_resnet_blocks_follow_the_config_layout(depth):
  model = _tiny_family_member(depth)
  layout = model.config.block_mixers()
  assert tuple(len(stage) for stage in model.stages) == FAMILY_STAGE_DEPTHS[depth]
  for stage, names in zip(model.stages, layout, strict=True):
    for block, name in zip(stage, names, strict=True):
      is_lambda = isinstance(block.mixer, layers.LambdaLayer)
      assert is_lambda == (name == "lambda") and block.mixer_name == name
      assert isinstance(block.mixer, nnx.Conv) != is_lambda
      # Squeeze-excitation in the convolutional blocks only.
      assert (block.se is None) == is_lambda
      if is_lambda:
        assert (block.mixer.query_depth, block.mixer.heads,
                block.mixer.intra_depth, block.mixer.table_shape) == (
                    16, 4, 1, (23, 23))


def test_lambda_resnet_uses_resnet_d_stem_and_shortcuts():
  model = _tiny_family_member(50)
  assert [conv.kernel_size for conv in model.stem.convs] == [(3, 3)] * 3
  assert [conv.strides for conv in model.stem.convs] == [(2, 2), (1, 1), (1, 1)]
  # ResNet-RS: a 3×3/2 conv (+ BN, ReLU) instead of the stem's max pool.
  assert model.stem.pool_conv.kernel_size == (3, 3)
  assert model.stem.pool_conv.strides == (2, 2)
  strided = model.stages[1][0]
  assert strided.pool_shortcut and strided.shortcut_conv.strides == (1, 1)
  # The strided c5 lambda block runs the lambda layer, then a 3×3/2 avg pool.
  assert model.stages[3][0].pool_after_mixer
  assert not model.stages[2][0].pool_after_mixer  # A 3×3/2 conv block.
  assert model.stages[2][0].mixer.strides == (2, 2)


@pytest.mark.slow
def test_lambda_resnet_squeeze_excitation_width():
  model = _abstract("lambda_resnet50")
  se = model.stages[0][0].se  # 256 output channels, ratio 0.25 -> 64.
  assert se.reduce.kernel.shape == (1, 1, 256, 64)
  assert se.expand.kernel.shape == (1, 1, 64, 256)


@pytest.mark.slow
def test_resnet50_is_v1_5_with_plain_stem_and_projection_shortcuts():
  model = _abstract("resnet50")
  assert [conv.kernel_size for conv in model.stem.convs] == [(7, 7)]
  block = model.stages[1][0]
  assert block.conv1.strides == (1, 1)
  assert block.mixer.strides == (2, 2)  # The stride sits in the 3×3 conv.
  assert block.shortcut_conv.strides == (2, 2) and not block.pool_shortcut
  assert model.stages[0][0].shortcut_conv is not None  # 64 -> 256 channels.
  assert model.stages[0][1].shortcut_conv is None
  assert all(block.se is None for stage in model.stages for block in stage)
  assert model.head.kernel.shape == (2048, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("name, mixer_type", [
    ("resnet50", nnx.Conv),
    ("resnet50_lambda", layers.LambdaLayer),
    ("resnet50_attention", layers.RelativeSelfAttention),
    ("resnet50_local_attention", layers.RelativeSelfAttention),
    ("resnet50_axial", layers.AxialSelfAttention),
])
def test_named_models_use_their_mixer_in_every_block(name, mixer_type):
  model = _abstract(name)
  assert all(isinstance(block.mixer, mixer_type)
             for stage in model.stages for block in stage)


def test_every_mixer_runs_forward_at_an_odd_size():
  """One hybrid covers lambda, global, local and axial attention (strided too)."""
  model = get_model("resnet50", num_classes=7, rngs=_rngs(), image_size=35,
                    stage_mixers="LAWX", **ONE_BLOCK)
  assert [type(stage[0].mixer) for stage in model.stages] == [
      layers.LambdaLayer, layers.RelativeSelfAttention,
      layers.RelativeSelfAttention, layers.AxialSelfAttention]
  assert [stage[0].pool_after_mixer for stage in model.stages] == [
      False, True, True, True]
  logits = _forward(model, _images(35))
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  # Global and axial attention size their tables from image_size=35.
  with pytest.raises(ValueError, match="image_size=35"):
    _forward(model, _images(40))  # Raised while tracing: nothing compiles.


def test_augmented_mixer_splits_channels_and_runs_strided():
  """Conv + relative self-attention (Table 3), concatenated, at an odd size."""
  model = get_model("resnet50_augmented", num_classes=7, rngs=_rngs(),
                    image_size=35, **ONE_BLOCK)
  widths = [4, 8, 16, 32]  # 1/16 of 64…512; 20% attention, 2 heads.
  for stage, width in zip(model.stages, widths):
    mixer = stage[0].mixer
    assert isinstance(mixer, mixers.AugmentedConv)
    assert isinstance(mixer.attention, layers.RelativeSelfAttention)
    assert mixer.attention.window is None
    assert mixer.conv_features + mixer.attention_features == width
    assert mixer.attention_features % 2 == 0 and mixer.conv_features > 0
  assert [stage[0].pool_after_mixer for stage in model.stages] == [
      False, True, True, True]
  logits = _forward(model, _images(35))
  assert logits.shape == (2, 7) and bool(jnp.all(jnp.isfinite(logits)))
  with pytest.raises(ValueError, match="image_size=35"):
    _forward(model, _images(40))


@pytest.mark.slow
def test_augmented_attention_channels_at_full_size():
  """AA's κ = 2υ = 0.2: d_v = 0.1·w, d_k = 0.2·w (multiples of 8 heads), W^O."""
  model = _abstract("resnet50_augmented")
  mixers_c2_c5 = [stage[0].mixer for stage in model.stages]
  assert [m.attention_features for m in mixers_c2_c5] == [8, 16, 24, 48]
  assert [m.key_features for m in mixers_c2_c5] == [16, 24, 48, 104]
  for mixer in mixers_c2_c5:
    attention = mixer.attention
    d_v, d_k = mixer.attention_features, mixer.key_features
    assert attention.query_proj.kernel.shape[1] == d_k
    assert attention.key_proj.kernel.shape[1] == d_k
    assert attention.value_proj.kernel.shape[1] == d_v
    assert attention.output_proj.kernel.shape == (d_v, d_v)
    assert attention.row_embeddings.shape[1] == d_k // 8
  with pytest.raises(ValueError, match="leave no channels for the 3×3 conv"):
    mixers.augmented_attention_features(4, 0.5, heads=4)


def _shared_lambda_model(share, abstract=False, stage_depths=(2, 3, 1, 1)):
  def build():
    return get_model(
        "resnet50_lambda_shared", num_classes=3, rngs=_rngs(), image_size=16,
        share_lambda_embeddings=share, stage_depths=stage_depths,
        query_depth=4, receptive_field=5, zero_init_last_bn=False, **TINY)
  return nnx.eval_shape(build) if abstract else build()


def test_shared_lambda_embeddings_are_one_param_per_stage():
  """Table 4 "shared embeddings": a stage's lambda layers hold one table."""
  shared = _shared_lambda_model(True, abstract=True)
  separate = _shared_lambda_model(False, abstract=True)
  tables = [[block.mixer.embeddings for block in stage]
            for stage in shared.stages]
  for stage in tables:
    assert all(table is stage[0] for table in stage)
  assert len({id(stage[0]) for stage in tables}) == 4  # One per stage.
  assert not any(a.mixer.embeddings is b.mixer.embeddings
                 for a, b in zip(separate.stages[1], separate.stages[1][1:]))
  # (layers_in_stage − 1)·r²·k·u fewer parameters per stage.
  drop = sum(depth - 1 for depth in (2, 3, 1, 1)) * 5 * 5 * 4 * 1
  assert (common.count_parameters(separate)
          - common.count_parameters(shared)) == drop


def test_shared_lambda_embeddings_train_as_one_param():
  model = _shared_lambda_model(True, stage_depths=(1, 2, 1, 1))
  stage = model.stages[1]
  table = stage[0].mixer.embeddings
  before = np.asarray(table[...])
  images = _images(16, batch=4)

  optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    grads = nnx.grad(lambda m: jnp.mean(m(images) ** 2))(model)
    optimizer.update(model, grads)
    return grads

  grads = step(model, optimizer)
  table_grads = [g for g in jax.tree.leaves(grads) if g.shape == (5, 5, 4, 1)]
  assert len(table_grads) == 4  # One gradient per stage, not per layer.
  np.testing.assert_allclose(
      before - 0.5 * np.asarray(table_grads[1]), np.asarray(table[...]),
      rtol=1e-5, atol=1e-6)
  after = np.asarray(table[...])
  assert not np.allclose(before, after)
  for block in stage:
    assert block.mixer.embeddings is table
    np.testing.assert_array_equal(np.asarray(block.mixer.embeddings[...]), after)


@pytest.mark.slow
def test_local_attention_mixer_uses_a_7x7_window():
  model = _abstract("resnet50_local_attention")
  assert {block.mixer.window for stage in model.stages for block in stage} == {7}
  assert model.stages[0][0].mixer.heads == 8


def test_global_layers_size_tables_from_image_size():
  model = nnx.eval_shape(lambda: get_model(
      "resnet26", num_classes=10, rngs=nnx.Rngs(0), stage_mixers="CCLA",
      receptive_field="global", image_size=64, **TINY))
  # 64 -> stem 16 -> c3 8 -> the first c4 block sees 8×8, c5's 4×4.
  assert model.stages[2][0].mixer.embeddings.shape == (15, 15, 16, 1)
  assert model.stages[2][1].mixer.embeddings.shape == (7, 7, 16, 1)
  assert model.stages[3][0].mixer.row_embeddings.shape[0] == 7
  assert model.stages[3][1].mixer.row_embeddings.shape[0] == 3


def test_resnet_runs_at_odd_non_square_sizes_in_grayscale():
  model = get_model("resnet26", num_classes=4, rngs=_rngs(), in_channels=1,
                    **ONE_BLOCK)
  model.eval()
  assert _forward(model, _images(33, 47, channels=1)).shape == (2, 4)
  with pytest.raises(ValueError, match="in_channels"):
    _forward(model, _images(32, channels=3))


def test_lambda_resnet_forward_in_bfloat16():
  """Every kind of block once (LAMBDA_BLOCKS), in bfloat16."""
  model = get_model("lambda_resnet26", num_classes=5, rngs=_rngs(),
                    dtype="bfloat16", **LAMBDA_BLOCKS)
  assert model.config.block_mixers() == (
      ("conv",), ("conv",), ("conv", "lambda"), ("lambda",))
  model.eval()
  logits = _forward(model, _images(41))
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))


def test_efficientnet_tiny_forward():
  model = get_model("efficientnet_b0", num_classes=6, rngs=_rngs(),
                    width_multiplier=0.1, depth_multiplier=0.25)
  assert len(model.blocks) == 7  # ceil(0.25 · repeats) = 1 per stage.
  assert model.blocks[1].se.reduce.kernel.shape == (1, 1, 48, 2)  # 0.25 · 8 in.
  assert _forward(model, _images(37)).shape == (2, 6)


def test_efficientnet_b7_scaling():
  config = get_config("efficientnet_b7")
  repeats = [config.repeats(r) for r in (1, 2, 2, 3, 3, 4, 1)]
  assert repeats == [4, 7, 7, 10, 10, 13, 4]  # ceil(3.1 · repeats).
  assert [config.filters(f) for f in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == [
      64, 32, 48, 80, 160, 224, 384, 640, 2560]


def test_train_and_eval_modes():
  model = get_model("resnet26", num_classes=3, rngs=_rngs(),
                    dropout_rate=0.5, stochastic_depth_rate=0.5,
                    **dict(TINY, stage_depths=(2, 1, 1, 1)))
  drop_paths = [block.drop_path for stage in model.stages for block in stage]
  np.testing.assert_allclose([d.rate for d in drop_paths],
                             0.5 * np.arange(1, 6) / 5)
  images = _images(32, batch=4)

  def batch_stats():
    return jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))

  start = batch_stats()
  first, second = _forward(model, images), _forward(model, images)
  assert not np.allclose(first, second)  # Dropout / stochastic depth act.
  trained = batch_stats()
  assert any(not np.allclose(a, b) for a, b in
             zip(jax.tree.leaves(start), jax.tree.leaves(trained)))

  model.eval()
  assert all(d.deterministic for d in drop_paths) and model.dropout.deterministic
  first, second = _forward(model, images), _forward(model, images)
  np.testing.assert_array_equal(first, second)
  for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(batch_stats())):
    np.testing.assert_array_equal(a, b)


def test_last_batch_norm_of_each_block_starts_at_zero():
  model = get_model("lambda_resnet26", num_classes=10, rngs=_rngs(), **TINY)
  for stage in model.stages:
    for block in stage:
      assert not np.any(block.bn3.scale[...])
      assert np.all(block.bn1.scale[...] == 1)
  kept = get_model("resnet26", num_classes=2, rngs=_rngs(),
                   zero_init_last_bn=False, **TINY)
  assert np.all(kept.stages[0][0].bn3.scale[...] == 1)


def test_stochastic_depth_drops_whole_examples_in_training_only():
  drop = common.StochasticDepth(0.5, rngs=nnx.Rngs(dropout=0))
  x = jnp.ones((256, 2, 2, 3))
  out = np.asarray(drop(x))
  per_example = out.reshape(256, -1)
  assert np.all((per_example == 0).all(1) | (per_example == 2).all(1))
  assert 0.3 < (per_example[:, 0] == 0).mean() < 0.7
  drop.eval()
  np.testing.assert_array_equal(drop(x), x)
  with pytest.raises(ValueError, match="rate"):
    common.StochasticDepth(1.0)


def test_resnet_rs_stem_has_no_max_pool_and_the_same_shapes():
  """The stem conv replaces the max pool: same output size, other function."""
  images = _images(35)
  stems = {}
  for replace in (True, False):
    config = get_config("lambda_resnet26", replace_stem_max_pool=replace, **TINY)
    stems[replace] = resnet.Stem(config, rngs=_rngs())
    stems[replace].eval()
  assert stems[False].pool_conv is None
  out_conv, out_pool = stems[True](images), stems[False](images)
  channels = stems[True].out_features
  assert out_conv.shape == out_pool.shape == (2, 9, 9, channels)  # 35→18→9
  # Same convs and norms (same seed); then max pool versus conv + BN + ReLU.
  x = images
  for conv, norm in zip(stems[False].convs, stems[False].norms):
    x = nnx.relu(norm(conv(x)))
  np.testing.assert_allclose(out_pool, common.pool(x, "max", 3, 2), rtol=1e-6)
  assert not np.allclose(out_conv, out_pool)
  np.testing.assert_allclose(
      out_conv, nnx.relu(stems[True].pool_norm(stems[True].pool_conv(x))),
      rtol=1e-5, atol=1e-6)


def test_resnet_rs_stochastic_depth_is_per_stage():
  """ResNet-RS: every block of stage s of 4 drops with rate·(s + 2)/5."""
  config = get_config("lambda_resnet200")
  assert config.stochastic_depth_schedule == "per_stage"
  rates = config.block_drop_rates()
  assert [len(stage) for stage in rates] == [3, 24, 36, 3]
  for stage, group in zip(rates, (2, 3, 4, 5)):
    assert stage == pytest.approx((0.1 * group / 5,) * len(stage))
  # The model gives its blocks these rates (a small member, same schedule).
  model = nnx.eval_shape(lambda: get_model(
      "lambda_resnet26", num_classes=10, rngs=nnx.Rngs(0),
      stochastic_depth_rate=0.1, **TINY))
  rates = model.config.block_drop_rates()
  assert rates[0][0] == pytest.approx(0.04) and rates[3][0] == pytest.approx(0.1)
  for stage, stage_rates in zip(model.stages, rates):
    assert [block.drop_path.rate for block in stage] == list(stage_rates)
  # The plain ResNets keep the linear per-block rule.
  per_block = get_config("resnet50", stochastic_depth_rate=0.2).block_drop_rates()
  flat = [rate for stage in per_block for rate in stage]
  assert flat == pytest.approx([0.2 * (i + 1) / 16 for i in range(16)])


def test_lambda_layers_use_the_model_batch_norm_settings():
  model = nnx.eval_shape(lambda: get_model(
      "lambda_resnet50", num_classes=10, rngs=nnx.Rngs(0), bn_momentum=0.99,
      bn_epsilon=1e-3, **TINY))
  mixer = model.stages[3][0].mixer
  assert isinstance(mixer, layers.LambdaLayer)
  for norm in (mixer.query_norm, mixer.value_norm):
    assert (norm.momentum, norm.epsilon) == (0.99, 1e-3)


def test_family_with_other_depths_places_its_lambda_blocks_evenly():
  config = get_config("lambda_resnet101", stage_depths=(1, 2, 6, 1))
  assert config.mixer_block_indices is None
  assert config.block_mixers()[2] == ("conv", "lambda") * 3  # Blocks 1, 3, 5.
  assert config.block_mixers()[3] == ("lambda",)
  # Given explicitly, positions are kept (and checked against the depths).
  with pytest.raises(ValueError, match="mixer_block_indices"):
    get_config("lambda_resnet101", stage_depths=(1, 2, 6, 1),
               mixer_block_indices=(None, None, (6, 14, 22), None))
  assert get_config("lambda_resnet101").mixer_block_indices[2] == (6, 14, 22)


def test_explicit_mixer_block_indices():
  config = get_config("resnet50", stage_mixers="CCLL",
                      mixer_block_indices=(None, None, (0, 4), (2,)))
  assert config.block_mixers()[2] == ("lambda", "conv", "conv", "conv",
                                      "lambda", "conv")
  assert config.block_mixers()[3] == ("conv", "conv", "lambda")
  with pytest.raises(ValueError, match="mixer_block_indices"):
    get_config("resnet50", mixer_block_indices=(None, None, (6,), None))
  with pytest.raises(ValueError, match="stochastic_depth_schedule"):
    get_config("resnet50", stochastic_depth_schedule="per_layer")

def test_small_stem_keeps_the_full_resolution():
  model = nnx.eval_shape(lambda: get_model(
      "lambda_resnet26", num_classes=10, rngs=nnx.Rngs(0), stem="small",
      image_size=28, in_channels=1, receptive_field="global", **ONE_BLOCK))

  def feature_maps(model, images):
    model.eval()
    maps = [model.stem(images)]
    for stage in model.stages:
      for block in stage:
        maps.append(block(maps[-1]))
    return maps, model(images)

  # Shapes only (no compile): nnx.eval_shape traces the forward abstractly.
  maps, logits = nnx.eval_shape(feature_maps, model,
                                jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32))
  assert maps[0].shape == (2, 28, 28, model.stem.out_features)  # No pooling.
  assert [m.shape[1] for m in maps[1:]] == [28, 14, 7, 4]
  assert logits.shape == (2, 10)
  # Global tables fit the maps the lambda layers see: c4's first block runs
  # on the 14×14 map before pooling, c5's on 7×7.
  assert model.stages[2][0].mixer.embeddings.shape[:2] == (27, 27)
  assert model.stages[3][0].mixer.embeddings.shape[:2] == (13, 13)
  # The default stem downsamples by 4 (c5 sees 2×2).
  plain = nnx.eval_shape(lambda: get_model(
      "lambda_resnet26", num_classes=10, rngs=nnx.Rngs(0), image_size=28,
      receptive_field="global", **ONE_BLOCK))
  assert plain.stages[3][0].mixer.embeddings.shape[:2] == (3, 3)


def test_oversized_position_tables_warn_once_per_stage():
  from lambda_networks.models import position_tables  # pylint: disable=g-import-not-at-top
  small = get_config("lambda_resnet26", image_size=28)  # r = 23 on 2×2 maps.
  messages = position_tables.table_warnings(small)
  assert len(messages) == 2 and "2×2 maps" in messages[0]
  assert "23×23" in messages[0] and "c4" in messages[0] and "c5" in messages[1]
  assert position_tables.lambda_map_sizes(small) == {2: (2, 2), 3: (2, 2)}
  # The paper's setting (r = 23 on 14×14 and 7×7 maps at 224 px) is quiet,
  # and so are tables sized to the maps.
  assert not position_tables.table_warnings(get_config("lambda_resnet50",
                                                       image_size=224))
  assert not position_tables.table_warnings(get_config(
      "lambda_resnet26", image_size=28, receptive_field="global"))
  with pytest.warns(UserWarning, match="23×23 position tables"):
    nnx.eval_shape(lambda: get_model("lambda_resnet26", num_classes=3,
                                     rngs=nnx.Rngs(0), image_size=28, **TINY))


@pytest.mark.filterwarnings("ignore:lambda layers of stage")
@pytest.mark.parametrize("name, stem, size", [
    ("lambda_resnet26", "deep", (41, 33)),
    ("lambda_resnet26t", "tiered", (64, 64)),
    ("resnet26", "small", (17, 20)),
])
def test_stage_features_have_their_documented_shapes_and_feed_the_head(
    name, stem, size):
  """features(): c2…c5 by name, shapes from feature_info; c5 pooled through
  the head gives the plain forward's logits."""
  overrides = dict(LAMBDA_BLOCKS if name == "lambda_resnet26" else ONE_BLOCK,
                   stem=stem, image_size=size)
  if name == "lambda_resnet26t":
    overrides = dict(stage_widths=(8, 8, 16, 16), stem_width=8, image_size=64)
  model = get_model(name, num_classes=3, rngs=_rngs(), **overrides)
  model.eval()
  images = _images(*size)
  features = nnx.jit(lambda m, x: m.features(x))(model, images)
  info = model.feature_info
  assert [i.name for i in info] == list(features) == ["c2", "c3", "c4", "c5"]
  reduction = 1 if stem == "small" else 4
  for i, (stage_info, value) in enumerate(zip(info, features.values())):
    assert stage_info.reduction == reduction * 2 ** i
    expected = tuple(-(-s // stage_info.reduction) for s in size)
    assert stage_info.size == expected
    assert value.shape == (2, *expected, stage_info.channels)
  logits = model.head(jnp.mean(features["c5"], axis=(1, 2)))
  np.testing.assert_allclose(logits, _forward(model, images), rtol=1e-5,
                             atol=1e-5)
  # A subset, by name; later stages are not run.
  assert list(nnx.jit(lambda m, x: m.features(x, ("c3",)))(model, images)) == ["c3"]
  with pytest.raises(ValueError, match="no feature map 'c6'"):
    model.features(images, ("c6",))
