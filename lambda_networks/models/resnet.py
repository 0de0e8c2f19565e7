"""ResNets with a choice of spatial mixer per stage: conv, lambda or attention.

One `ResNetConfig` describes the ResNet-50…420 baselines (v1.5: the stride
sits in the 3×3 conv), the all-lambda ResNet-50 of the paper's Table 3 (also
with one position table per stage, Table 4), the attention and
attention-augmented baselines, and the hybrid LambdaResNet family (ResNet-RS style:
ResNet-D stem and shortcuts, squeeze-excitation, lambda blocks in c4/c5).
Named configurations live in `registry.py`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lambda_networks import group_batch_norm
from lambda_networks import ops
from lambda_networks.models import common
from lambda_networks.models import mixers


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
  """One stage output of `ResNet.features` (as timm's `feature_info`).

  Attributes:
    name: 'c2' … 'c5': stage s (0-based) gives c{s + 2}, the detection
      literature's name for a map 2^(s + 2) times smaller than the image
      (with the ImageNet stems).
    channels: its channels (bottleneck width × expansion).
    reduction: image size / map size; a map is ceil(H / reduction) ×
      ceil(W / reduction).
    size: (H, W) of the map for the config's image_size.
  """

  name: str
  channels: int
  reduction: int
  size: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
  """Architecture of a (lambda) ResNet with bottleneck blocks.

  Attributes:
    stage_depths: bottleneck blocks per stage (c2, c3, c4, c5).
    stage_widths: bottleneck (mixer) width per stage; outputs are
      `expansion` times wider.
    width_multiplier: scales the stem and every stage width (tiny test
      models use e.g. 1/16).
    expansion: output / bottleneck width of a block.
    stage_mixers: spatial mixer per stage: names (see `mixers.py`), e.g.
      ('conv', 'conv', 'lambda', 'lambda'), one name for every stage, or
      the letter shorthand 'CCLL'.
    mixer_blocks: per stage, how many blocks use the stage's mixer (the
      others use 3×3 convs), spread evenly: block j·N/n − 1 (j = 1..n) of
      a stage of N blocks, so the stage's last block is always one of them.
      None (for the tuple or an entry): all blocks.
    mixer_block_indices: per stage, the indices of the blocks that use the
      stage's mixer, written out (overrides mixer_blocks for that stage);
      None (for the tuple or an entry): use mixer_blocks.
    query_depth: lambda layer query/key depth k.
    heads: lambda layer query heads h.
    intra_depth: lambda layer intra-depth u.
    receptive_field: lambda layer scope r (odd), 'global' (tables sized from
      image_size) or None (content lambdas only).
    lambda_method: how the lambda layers compute their position term (see
      `ops.lambda_interactions`): one of 'auto', 'einsum', 'conv',
      'row_conv' for every stage, one of those per stage (a tuple, or
      'auto,auto,conv,einsum'), or 'measure': train.py times each on the
      run's devices and records the fastest per stage
      (`train/lambda_measure.py`); needs a lambda layer in the model.
    share_lambda_embeddings: all lambda layers of a stage hold one relative
      position table (the same nnx.Param; paper Table 4); needs an int
      receptive_field.
    attention_heads: heads of the self-attention mixers.
    attention_window: window of the local self-attention mixer.
    attention_relative: relative position logits in the attention mixers.
    augmented_attention_fraction: share υ of the augmented mixer's ('G')
      output channels that come from attention (d_v = υ·F_out, rounded to a
      multiple of attention_heads); the rest come from the 3×3 conv.
    augmented_key_fraction: the augmented mixer's query/key channels as a
      share κ of its output channels (d_k = κ·F_out, rounded to a multiple
      of attention_heads); None: d_k = d_v.
    augmented_output_projection: the augmented mixer's attention ends with
      the d_v×d_v output projection W^O of multi-head attention.
    stem: 'plain' (7×7/2 conv), 'deep' (ResNet-D: three 3×3 convs,
      stem_width/2, /2, then full) or 'tiered' (timm's ResNet-T: three 3×3
      convs, 3·stem_width/8, stem_width/2, then full); all followed by a
      3×3/2 max pool, or see replace_stem_max_pool. 'small' (for 28–96 px
      images, as in the CIFAR ResNets): one 3×3 stride-1 conv, no pool, so
      the stages see the full image.
    replace_stem_max_pool: replace the stem's 3×3/2 max pool by a 3×3/2
      conv (stem_width → stem_width) with batch norm and ReLU, as ResNet-RS
      does (`replace_stem_max_pool: True` in its configs); ignored by 'small'.
    stem_width: stem output channels.
    activation: 'relu', or 'silu' (timm's lambda_resnet50ts): after every
      batch norm that has one, in the stem and the blocks (SE keeps ReLU).
    downsample: projection shortcut of strided blocks: 'conv' (1×1/2 conv)
      or 'avg' (ResNet-D: 2×2/2 average pool, then 1×1 conv).
    strided_mixer_pool: the pool after a strided non-conv mixer (which runs
      at full resolution): 'avg3x3' (3×3/2, padded) or 'avg2x2' (2×2/2, as
      timm's lambda layer).
    lambda_position_bias: the lambda layers' position lambdas get a learned
      bias per query-depth channel (timm's conv_lambda is a Conv3d with a
      bias); needs a receptive_field.
    se_ratio: squeeze-excitation bottleneck as a fraction of the block's
      output channels (0: none; 0.25 in ResNet-RS, 1/16 in SENet).
    se_in_non_conv_blocks: also add SE to blocks whose mixer is not a conv.
    stochastic_depth_rate: drop rate of the last block (see
      stochastic_depth_schedule).
    stochastic_depth_schedule: 'per_block': block i (0-based) of N drops
      with rate·(i+1)/N; 'per_stage' (ResNet-RS): every block of stage s
      (0-based) of S drops with rate·(s+2)/(S+1), the stem counted as stage
      1 (tensorflow/tpu resnet_model.py, keras resnet_rs.py).
    dropout_rate: dropout before the classifier.
    zero_init_last_bn: start each block's last batch-norm scale at zero.
    bn_momentum: batch-norm running-average decay.
    bn_epsilon: batch-norm epsilon.
    batch_norm_group_size: batch-norm training statistics over groups of
      this many consecutive examples (`group_batch_norm.GroupBatchNorm`); 0: over the
      whole batch.
    remat: 'none', or 'block' to recompute each residual block in the
      backward pass (`common.REMAT_POLICIES`): same gradients, less memory.
    image_size: input size (int or (H, W)) the global layers' tables are
      sized for; inputs may be smaller, not larger.
    in_channels: input image channels (1 for grayscale).
    dtype: computation dtype (None: float32); a name like 'bfloat16' works.
    param_dtype: parameter dtype.
  """

  stage_depths: tuple[int, ...] = (3, 4, 6, 3)
  stage_widths: tuple[int, ...] = (64, 128, 256, 512)
  width_multiplier: float = 1.0
  expansion: int = 4
  stage_mixers: str | tuple[str, ...] = "CCCC"
  mixer_blocks: tuple[int | None, ...] | None = None
  mixer_block_indices: tuple[tuple[int, ...] | None, ...] | None = None
  query_depth: int = 16
  heads: int = 4
  intra_depth: int = 1
  receptive_field: int | str | None = 23
  lambda_method: str | tuple[str, ...] = "auto"
  share_lambda_embeddings: bool = False
  attention_heads: int = 8
  attention_window: int = 7
  attention_relative: bool = True
  augmented_attention_fraction: float = 0.2
  augmented_key_fraction: float | None = None
  augmented_output_projection: bool = False
  stem: str = "plain"
  stem_width: int = 64
  replace_stem_max_pool: bool = False
  activation: str = "relu"
  downsample: str = "conv"
  strided_mixer_pool: str = "avg3x3"
  lambda_position_bias: bool = False
  se_ratio: float = 0.0
  se_in_non_conv_blocks: bool = False
  stochastic_depth_rate: float = 0.0
  stochastic_depth_schedule: str = "per_block"
  dropout_rate: float = 0.0
  zero_init_last_bn: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  batch_norm_group_size: int = 0
  remat: str = "none"
  image_size: int | tuple[int, int] = 224
  in_channels: int = 3
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    def fix(name, value):
      object.__setattr__(self, name, value)

    for name in ("stage_depths", "stage_widths"):
      fix(name, tuple(int(v) for v in getattr(self, name)))
    if not isinstance(self.stage_mixers, str):
      fix("stage_mixers", tuple(self.stage_mixers))
    if not isinstance(self.lambda_method, str) or "," in self.lambda_method:
      fix("lambda_method", mixers.parse_lambda_methods(
          self.lambda_method, len(self.stage_depths)))
    if self.mixer_blocks is not None:
      fix("mixer_blocks", tuple(self.mixer_blocks))
    if self.mixer_block_indices is not None:
      fix("mixer_block_indices", tuple(
          None if entry is None else tuple(int(i) for i in entry)
          for entry in self.mixer_block_indices))
    if not isinstance(self.image_size, int):
      fix("image_size", tuple(self.image_size))
    fix("dtype", common.as_dtype(self.dtype))
    fix("param_dtype", common.as_dtype(self.param_dtype))
    self._validate()

  @property
  def num_stages(self) -> int:
    return len(self.stage_depths)

  @property
  def image_hw(self) -> tuple[int, int]:
    size = self.image_size
    return (size, size) if isinstance(size, int) else size

  @property
  def stem_stride(self) -> int:
    """How much the stem downsamples (the first stage sees size / this)."""
    return 1 if self.stem == "small" else 4

  def widths(self) -> tuple[int, ...]:
    """Bottleneck widths per stage after the width multiplier."""
    return tuple(_scale(w, self.width_multiplier) for w in self.stage_widths)

  def block_mixers(self) -> tuple[tuple[str, ...], ...]:
    """Mixer name of every block, per stage."""
    names = mixers.parse_stage_mixers(self.stage_mixers, self.num_stages)
    counts = self.mixer_blocks or (None,) * self.num_stages
    explicit = self.mixer_block_indices or (None,) * self.num_stages
    layout = []
    for name, depth, count, indices in zip(names, self.stage_depths, counts,
                                           explicit):
      if indices is not None:
        chosen = frozenset(indices)
      else:
        chosen = spread_evenly(depth, depth if count is None else count)
      layout.append(tuple(name if i in chosen else "conv" for i in range(depth)))
    return tuple(layout)

  def stage_lambda_methods(self) -> tuple[str, ...]:
    """The lambda layers' method per stage ('measure' until it is resolved)."""
    return mixers.parse_lambda_methods(self.lambda_method, self.num_stages)

  def mixer_spec(self, stage: int) -> mixers.MixerSpec:
    """The options of stage `stage`'s mixers (its lambda method included)."""
    method = self.stage_lambda_methods()[stage]
    if method == mixers.MEASURE:
      raise ValueError(
          "lambda_method='measure' is resolved by train.py before the model is "
          "built (train/lambda_measure.py); to build the model yourself, name "
          f"a method of {ops.METHODS} (one, or one per stage).")
    return mixers.MixerSpec(
        query_depth=self.query_depth, heads=self.heads,
        intra_depth=self.intra_depth, receptive_field=self.receptive_field,
        lambda_method=method, lambda_position_bias=self.lambda_position_bias,
        attention_heads=self.attention_heads,
        attention_window=self.attention_window,
        attention_relative=self.attention_relative,
        augmented_attention_fraction=self.augmented_attention_fraction,
        augmented_key_fraction=self.augmented_key_fraction,
        augmented_output_projection=self.augmented_output_projection,
        norm_momentum=self.bn_momentum, norm_epsilon=self.bn_epsilon,
        norm_group_size=self.batch_norm_group_size, dtype=self.dtype,
        param_dtype=self.param_dtype)

  def block_strides(self) -> tuple[tuple[int, ...], ...]:
    """Stride of every block, per stage: 2 in the first block from c3 on."""
    return tuple(tuple(2 if stage > 0 and block == 0 else 1
                       for block in range(depth))
                 for stage, depth in enumerate(self.stage_depths))

  def block_input_sizes(self) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Input map (H, W) of every block, per stage: what its mixer runs on.

    A block's output is its input downsampled by its stride
    (`common.downsampled`).
    """
    size = tuple(common.downsampled(s, self.stem_stride) for s in self.image_hw)
    sizes = []
    for strides in self.block_strides():
      stage = []
      for stride in strides:
        stage.append(size)
        size = tuple(common.downsampled(s, stride) for s in size)
      sizes.append(tuple(stage))
    return tuple(sizes)

  def feature_info(self) -> tuple[FeatureInfo, ...]:
    """Name, channels, reduction and size of every stage's output."""
    reduction = self.stem_stride
    size = tuple(common.downsampled(s, reduction) for s in self.image_hw)
    info = []
    for stage, (width, strides) in enumerate(zip(self.widths(),
                                                 self.block_strides())):
      for stride in strides:
        reduction *= stride
        size = tuple(common.downsampled(s, stride) for s in size)
      info.append(FeatureInfo(f"c{stage + 2}", width * self.expansion,
                              reduction, size))
    return tuple(info)

  def block_drop_rates(self) -> tuple[tuple[float, ...], ...]:
    """Stochastic-depth drop rate of every block, per stage."""
    rate, stages = self.stochastic_depth_rate, self.num_stages
    total, index, rates = sum(self.stage_depths), 0, []
    for stage, depth in enumerate(self.stage_depths):
      if self.stochastic_depth_schedule == "per_stage":
        rates.append((rate * (stage + 2) / (stages + 1),) * depth)
      else:
        rates.append(tuple(rate * (index + i + 1) / total for i in range(depth)))
      index += depth
    return tuple(rates)

  def _check_one_per_stage(self, field: str, none_means: str) -> None:
    value = getattr(self, field)
    if len(value) != self.num_stages:
      raise ValueError(
          f"{field} needs one entry per stage ({self.num_stages} from "
          f"stage_depths={self.stage_depths}), got {value}; give one per "
          f"stage, or None {none_means} (`none` on the command line).")

  def _validate(self) -> None:
    # Fields that are wrong on their own first, so that the field the user
    # set is named rather than a layout clash it does not cause.
    _check_receptive_field(self.receptive_field)
    stages = self.num_stages
    if stages < 1 or min(self.stage_depths) < 1:
      raise ValueError(f"stage_depths must be positive ints, got {self.stage_depths}.")
    if len(self.stage_widths) != stages:
      raise ValueError(
          f"stage_widths needs one width per stage ({stages} stages from "
          f"stage_depths={self.stage_depths}), got {self.stage_widths}.")
    mixers.parse_stage_mixers(self.stage_mixers, stages)
    mixers.parse_lambda_methods(self.lambda_method, stages)
    if self.mixer_blocks is not None:
      self._check_one_per_stage("mixer_blocks", "for 'every block'")
      for count, depth in zip(self.mixer_blocks, self.stage_depths):
        if count is not None and not 0 <= count <= depth:
          raise ValueError(
              f"mixer_blocks={self.mixer_blocks} asks for {count} blocks in a "
              f"stage of {depth} (stage_depths={self.stage_depths}); lower "
              "mixer_blocks or deepen stage_depths.")
    if self.mixer_block_indices is not None:
      self._check_one_per_stage("mixer_block_indices",
                                "to fall back to mixer_blocks")
      for indices, depth in zip(self.mixer_block_indices, self.stage_depths):
        if indices is not None and any(not 0 <= i < depth for i in indices):
          raise ValueError(
              f"mixer_block_indices={self.mixer_block_indices} names block "
              f"indices outside a stage of {depth} blocks (stage_depths="
              f"{self.stage_depths}); indices run from 0 to depth − 1. With "
              "other stage_depths, also set mixer_block_indices (None: place "
              "mixer_blocks evenly).")
    if self.width_multiplier <= 0:
      raise ValueError(
          f"width_multiplier must be positive, got {self.width_multiplier}.")
    _check_choice("stem", self.stem, ("plain", "deep", "tiered", "small"))
    _check_choice("activation", self.activation, tuple(common.ACTIVATIONS))
    _check_choice("downsample", self.downsample, ("conv", "avg"))
    _check_choice("strided_mixer_pool", self.strided_mixer_pool,
                  ("avg3x3", "avg2x2"))
    _check_choice("stochastic_depth_schedule", self.stochastic_depth_schedule,
                  ("per_block", "per_stage"))
    common.check_remat(self.remat)
    group_batch_norm.check_group_size(self.batch_norm_group_size)
    rf = self.receptive_field
    if self.lambda_position_bias and rf is None:
      raise ValueError(
          "lambda_position_bias=True needs a receptive_field (the bias is "
          "added to the position lambdas); got receptive_field=None.")
    if self.lambda_method == mixers.MEASURE and not any(
        "lambda" in names for names in self.block_mixers()):
      raise ValueError(
          "lambda_method='measure' times the lambda layers, but no block of "
          f"this model has one (stage_mixers={self.stage_mixers!r}); drop "
          "lambda_method or add a lambda stage.")
    if self.share_lambda_embeddings and not isinstance(rf, int):
      raise ValueError(
          f"share_lambda_embeddings=True needs an int receptive_field (one "
          f"r×r table fits every lambda layer of a stage), got {rf!r}.")
    if not 0.0 < self.augmented_attention_fraction < 1.0:
      raise ValueError(
          f"augmented_attention_fraction must be in (0, 1), got "
          f"{self.augmented_attention_fraction}.")
    if self.augmented_key_fraction is not None and not (
        0.0 < self.augmented_key_fraction <= 1.0):
      raise ValueError(
          f"augmented_key_fraction must be in (0, 1] or None, got "
          f"{self.augmented_key_fraction}.")
    if not 0.0 <= self.se_ratio <= 1.0:
      raise ValueError(f"se_ratio must be in [0, 1], got {self.se_ratio}.")
    for name in ("stochastic_depth_rate", "dropout_rate"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
    hw = self.image_hw
    if len(hw) != 2 or min(hw) < 1:
      raise ValueError(f"image_size must be a positive int or (H, W), got "
                       f"{self.image_size!r}.")
    if self.in_channels < 1:
      raise ValueError(f"in_channels must be positive, got {self.in_channels}.")


def _check_receptive_field(rf: Any) -> None:
  """An odd positive int, 'global' or None; says which of these was meant."""
  if rf is None or rf == "global":
    return
  paper = "the paper uses 23, or 7 with intra_depth=4"
  if isinstance(rf, str):
    digits = rf.strip().isdigit()
    raise ValueError(
        f"receptive_field must be an int, 'global' or None, got the string "
        f"{rf!r}" + (f"; pass {rf.strip()} without quotes" if digits else "")
        + f" ({paper}).")
  if isinstance(rf, bool) or not isinstance(rf, int):
    raise ValueError(f"receptive_field must be an int, 'global' or None, got "
                     f"{type(rf).__name__} {rf!r} ({paper}).")
  if rf < 1 or rf % 2 == 0:
    nearest = f"; use {rf - 1} or {rf + 1}" if rf > 1 else ""
    raise ValueError(
        f"receptive_field={rf} must be odd and positive so the r×r window of "
        f"relative positions is centred on the query{nearest} ({paper}, or "
        "'global' / None).")


def spread_evenly(num_blocks: int, count: int) -> frozenset[int]:
  """Indices ⌊j·N/n⌋ − 1 (j = 1..n): the last block of n equal chunks."""
  return frozenset(math.floor(j * num_blocks / count) - 1
                   for j in range(1, count + 1))


class Bottleneck(nnx.Module):
  """1×1 conv → mixer (→ 3×3/2 or 2×2/2 avg pool) → 1×1 conv, plus the shortcut.

  Each conv and the mixer are followed by batch norm (the config's activation
  except after the last); optional SE on the residual branch, then stochastic
  depth; the activation again after the sum.
  """

  def __init__(self, in_features: int, width: int, out_features: int, *,
               strides: int, mixer: str, input_size: tuple[int, int],
               drop_rate: float, config: ResNetConfig,
               mixer_spec: mixers.MixerSpec, rngs: nnx.Rngs,
               lambda_embeddings: nnx.Param | None = None):
    cfg = config
    kwargs = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
    norm = dict(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                group_size=cfg.batch_norm_group_size, **kwargs)
    self.mixer_name = mixer
    self.strides = strides
    self.activation = common.ACTIVATIONS[cfg.activation]
    self.pool_after_mixer = mixer != "conv" and strides > 1
    self.mixer_pool = cfg.strided_mixer_pool
    self.conv1 = common.conv(in_features, width, 1, **kwargs)
    self.bn1 = common.batch_norm(width, **norm)
    self.mixer = mixers.build_mixer(
        mixer, width, strides=strides, input_size=input_size,
        spec=mixer_spec, rngs=rngs, lambda_embeddings=lambda_embeddings)
    self.bn2 = common.batch_norm(width, **norm)
    self.conv3 = common.conv(width, out_features, 1, **kwargs)
    self.bn3 = common.batch_norm(out_features, zero_scale=cfg.zero_init_last_bn,
                                 **norm)
    use_se = cfg.se_ratio > 0 and (mixer == "conv" or cfg.se_in_non_conv_blocks)
    self.se = (common.SqueezeExcite(
        out_features, max(1, int(out_features * cfg.se_ratio)), **kwargs)
               if use_se else None)
    self.drop_path = common.StochasticDepth(drop_rate, rngs=rngs)
    self.pool_shortcut = strides > 1 and cfg.downsample == "avg"
    if strides > 1 or in_features != out_features:
      self.shortcut_conv = common.conv(
          in_features, out_features, 1,
          strides=1 if self.pool_shortcut else strides, **kwargs)
      self.shortcut_bn = common.batch_norm(out_features, **norm)
    else:
      self.shortcut_conv = self.shortcut_bn = None

  def __call__(self, x: jax.Array) -> jax.Array:
    act = self.activation
    out = act(self.bn1(self.conv1(x)))
    out = self.mixer(out)
    if self.pool_after_mixer and self.mixer_pool == "avg2x2":
      out = _pool_same(out, self.strides)
    elif self.pool_after_mixer:
      out = common.pool(out, "avg", 3, self.strides)
    out = act(self.bn2(out))
    out = self.bn3(self.conv3(out))
    if self.se is not None:
      out = self.se(out)
    out = self.drop_path(out)
    shortcut = x
    if self.shortcut_conv is not None:
      if self.pool_shortcut:
        shortcut = _pool_same(shortcut, self.strides)
      shortcut = self.shortcut_bn(self.shortcut_conv(shortcut))
    return act(out + shortcut.astype(out.dtype))


class Stem(nnx.Module):
  """The ResNet stem: conv(s) with BN and activation, then a 3×3/2 max pool.

  'plain' is one 7×7/2 conv; 'deep' (ResNet-D) and 'tiered' (timm's
  ResNet-T) are three 3×3 convs, the first with stride 2. With
  `replace_stem_max_pool` (ResNet-RS) a 3×3/2 conv with BN and activation
  takes the max pool's place.
  """

  def __init__(self, config: ResNetConfig, *, rngs: nnx.Rngs):
    cfg = config
    kwargs = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
    norm = dict(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                group_size=cfg.batch_norm_group_size, **kwargs)
    width = _scale(cfg.stem_width, cfg.width_multiplier)
    self.activation = common.ACTIVATIONS[cfg.activation]
    if cfg.stem == "plain":
      plan = [(cfg.in_channels, width, 7, 2)]
    else:
      half = max(1, width // 2)
      first = max(1, 3 * width // 8) if cfg.stem == "tiered" else half
      plan = [(cfg.in_channels, first, 3, 2), (first, half, 3, 1),
              (half, width, 3, 1)]
    self.out_features = width
    self.convs = nnx.List([common.conv(i, o, k, strides=s, **kwargs)
                           for i, o, k, s in plan])
    self.norms = nnx.List([common.batch_norm(o, **norm) for _, o, _, _ in plan])
    if cfg.replace_stem_max_pool:
      self.pool_conv = common.conv(width, width, 3, strides=2, **kwargs)
      self.pool_norm = common.batch_norm(width, **norm)
    else:
      self.pool_conv = self.pool_norm = None

  def __call__(self, x: jax.Array) -> jax.Array:
    for conv, norm in zip(self.convs, self.norms):
      x = self.activation(norm(conv(x)))
    if self.pool_conv is not None:
      return self.activation(self.pool_norm(self.pool_conv(x)))
    return common.pool(x, "max", 3, 2)


class SmallStem(nnx.Module):
  """Stem for small images: one 3×3 stride-1 conv with BN and activation, no pool."""

  def __init__(self, config: ResNetConfig, *, rngs: nnx.Rngs):
    cfg = config
    kwargs = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
    self.out_features = _scale(cfg.stem_width, cfg.width_multiplier)
    self.activation = common.ACTIVATIONS[cfg.activation]
    self.conv = common.conv(cfg.in_channels, self.out_features, 3, **kwargs)
    self.norm = common.batch_norm(self.out_features, momentum=cfg.bn_momentum,
                                  epsilon=cfg.bn_epsilon,
                                  group_size=cfg.batch_norm_group_size, **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.activation(self.norm(self.conv(x)))


class ResNet(nnx.Module):
  """Stem, bottleneck stages (stride 2 from the second on), pooled classifier.

  `model.stages[s][b]` is block b of stage s; `.mixer_name` and `.mixer` say
  which spatial mixer it uses. With `share_lambda_embeddings`, the first
  lambda layer of a stage creates the position table and the stage's other
  lambda layers hold that same nnx.Param.
  """

  def __init__(self, config: ResNetConfig, *, num_classes: int, rngs: nnx.Rngs):
    cfg = config
    self.config = cfg
    self.stem = (SmallStem(cfg, rngs=rngs) if cfg.stem == "small"
                 else Stem(cfg, rngs=rngs))
    layout = cfg.block_mixers()
    # Global layers size their tables from the feature map they see.
    input_sizes = cfg.block_input_sizes()
    all_strides = cfg.block_strides()
    drop_rates = cfg.block_drop_rates()
    in_features = self.stem.out_features
    stages = []
    for stage, (width, names) in enumerate(zip(cfg.widths(), layout)):
      blocks = []
      shared = None  # The stage's position table, once a lambda layer made it.
      mixer_spec = cfg.mixer_spec(stage)
      for block, mixer in enumerate(names):
        out_features = width * cfg.expansion
        blocks.append(Bottleneck(
            in_features, width, out_features,
            strides=all_strides[stage][block], mixer=mixer,
            input_size=input_sizes[stage][block],
            drop_rate=drop_rates[stage][block],
            config=cfg, mixer_spec=mixer_spec, rngs=rngs,
            lambda_embeddings=shared))
        if cfg.share_lambda_embeddings and mixer == "lambda":
          shared = blocks[-1].mixer.embeddings
        in_features = out_features
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.sized_for_image = any(
        (m in mixers.GLOBAL_MIXERS and cfg.attention_relative)
        or (m == "lambda" and cfg.receptive_field == "global")
        for names in layout for m in names)
    self.dropout, self.head = common.classifier_head(
        in_features, num_classes, cfg.dropout_rate, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype, rngs=rngs)

  @property
  def feature_info(self) -> tuple[FeatureInfo, ...]:
    """What `features` returns: name, channels, reduction, size per stage."""
    return self.config.feature_info()

  def features(self, images: jax.Array,
               names: tuple[str, ...] | None = None) -> dict[str, jax.Array]:
    """Stage outputs by name, for detection and segmentation heads.

    Args:
      images: [B, H, W, in_channels].
      names: which of `feature_info`'s names ('c2' … 'c5' for four stages);
        None: all. Stages after the last one asked for are not run.

    Returns:
      name -> [B, ceil(H / reduction), ceil(W / reduction), channels], in
      the computation dtype; the last stage's is what the classifier pools.
    """
    available = [info.name for info in self.feature_info]
    names = tuple(available) if names is None else tuple(names)
    unknown = [name for name in names if name not in available]
    if unknown:
      raise ValueError(f"no feature map {unknown[0]!r}; this model has "
                       f"{', '.join(available)}.")
    common.check_images(images, self.config.in_channels)
    if self.sized_for_image and any(
        s > m for s, m in zip(images.shape[1:3], self.config.image_hw)):
      raise ValueError(
          f"images of size {images.shape[1:3]} exceed image_size="
          f"{self.config.image_size} that this model's global layers were "
          f"built for; rebuild it with image_size={images.shape[1]} (or larger).")
    last = max(available.index(name) for name in names) if names else -1
    outputs = {}
    x = self.stem(images)
    for name, stage in zip(available[:last + 1], self.stages):
      for block in stage:
        x = common.call_block(block, x, self.config.remat)
      if name in names:
        outputs[name] = x
    return outputs

  def __call__(self, images: jax.Array) -> jax.Array:
    """Maps images [B, H, W, in_channels] to float32 logits [B, num_classes]."""
    last = self.feature_info[-1].name
    x = self.features(images, (last,))[last]
    x = jnp.mean(x, axis=(1, 2))
    if self.dropout is not None:
      x = self.dropout(x)
    return self.head(x).astype(jnp.float32)


def _pool_same(x: jax.Array, strides: int) -> jax.Array:
  """ResNet-D shortcut pool: 2×2 windows, stride 2, ceil(size/2) outputs."""
  pad = [(0, (-s) % strides) for s in x.shape[1:3]]
  return nnx.avg_pool(x, (strides, strides), (strides, strides), pad,
                      count_include_pad=False)


def _scale(width: int, multiplier: float) -> int:
  return max(1, int(round(width * multiplier)))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
