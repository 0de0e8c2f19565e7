"""Named models: `get_model(name, num_classes=..., rngs=..., **overrides)`.

Every model of the paper's comparisons is one named configuration; overrides
replace fields of its config (`ResNetConfig` or `EfficientNetConfig`), e.g.
`get_model('resnet50', num_classes=10, rngs=rngs, stage_mixers='CCLL')`.

Names:
  resnet26, resnet50 … resnet420   ResNet v1.5 (plain stem, 1×1/2 shortcuts);
      resnet26 ([2, 2, 2, 2] blocks) is the small model for tests and quick runs.
  resnet50_se                      + SE (1/16 of the block output): Table 3.
  resnet50_lambda                  every 3×3 conv a lambda layer (Table 3).
  resnet50_lambda_shared           ... one position table per stage, shared by
      its lambda layers (Table 4, "shared embeddings").
  resnet50_attention               every 3×3 conv global relative self-attention.
  resnet50_augmented               every 3×3 conv attention-augmented (Bello et
      al. 2019): 10% of its output channels (d_v) from global relative
      self-attention with d_k = 20% and an output projection, 90% from the
      3×3 conv, concatenated (Table 3, "conv + relative self-attention").
  resnet50_local_attention         ... 7×7 local relative self-attention (SASA).
  resnet50_axial                   ... axial self-attention.
  lambda_resnet26, lambda_resnet50 … lambda_resnet420   the LambdaResNet family
      on ResNet-RS: ResNet-D stem whose max pool is a 3×3/2 conv, ResNet-D
      shortcuts, SE 0.25 in conv blocks, every c5 block a lambda block and
      1/3/6/6/6/6/8 lambda blocks in c4 (26: 1) at LAMBDA_C4_BLOCK_INDICES,
      ResNet-RS dropout and per-stage stochastic depth (`resnet_rs.py`).
  lambda_resnet26t, lambda_resnet50ts, lambda_resnet26rpt_256   timm's three
      ImageNet-trained lambda networks (`timm/models/byoanet.py`), so that
      their weights load (`lambda_networks.pretrained`): tiered stem (3×3
      convs of 3w/8, w/2, w, then a max pool), 1×1/2 conv shortcuts, lambda
      k16 h4 u1 at the block indices timm's configs interleave, r = 9 with a
      position bias (26t, 50ts) or a global relative table sized for 256 px
      (26rpt), a stride-2 lambda block pooling 2×2/2 after the layer, ReLU
      (26t, 26rpt) or SiLU (50ts), no SE; 256 px.
  efficientnet_b0 … efficientnet_b7
  lambda_lm_tiny, lambda_lm_small, lambda_lm_base   byte-level causal language
      models with lambda layers (`lm.py`); num_classes is the vocabulary (256).
  transformer_lm_tiny, transformer_lm_small, transformer_lm_base   the same
      blocks with causal self-attention (RoPE), the baseline; each pair has
      equal parameters (the lambda blocks' MLP is widened to match).

Choices where the paper is not explicit (likely in docs/paper.md), all config
values: the family uses the ResNet-RS depths, lambda k16 h4 u1 r23, no SE in
lambda blocks, the c4 lambda blocks at the end of equal chunks of the stage
(`ResNetConfig.mixer_block_indices`), and the ResNet-RS regularisers of the
largest size ResNet-RS trains each depth at as defaults (the training config
sets them per image size). resnet50_augmented has 25.11M parameters where
the paper quotes 25.8M: augmenting a 3×3 conv at κ = 2υ removes weights
(see docs/models.md).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

from flax import nnx

from lambda_networks import paper
from lambda_networks.models import lm, resnet_rs

from lambda_networks.models import position_tables
from lambda_networks.models.efficientnet import EfficientNet, EfficientNetConfig
from lambda_networks.models.lm import LanguageModel, LanguageModelConfig
from lambda_networks.models.resnet import ResNet, ResNetConfig

# Blocks per stage (c2..c5): ResNet / ResNet-RS depths (docs/paper.md#lambdaresnets).
RESNET_DEPTHS = {
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
    270: (4, 29, 53, 4),
    350: (4, 36, 72, 4),
    420: (4, 44, 87, 4),
}
# Where the lambda blocks of c4 sit in a LambdaResNet, block indices (0-based)
# per depth. The counts are quoted from the paper (1/3/6/6/6/6/8; 26 is ours);
# the positions are our reading of "spread uniformly" [likely]: the last
# block of each of n equal chunks of the stage, ⌊j·N/n⌋ − 1 for j = 1..n.
LAMBDA_C4_BLOCK_INDICES = {
    26: (1,),
    50: (5,),
    101: (6, 14, 22),
    152: (5, 11, 17, 23, 29, 35),
    200: (5, 11, 17, 23, 29, 35),
    270: (7, 16, 25, 34, 43, 52),
    350: (11, 23, 35, 47, 59, 71),
    420: (9, 20, 31, 42, 53, 64, 75, 86),
}
# timm's lambda ResNets: (blocks per stage, lambda block indices per stage
# (None: every block), config changes). The indices are what timm's
# `interleave_blocks` gives (byoanet.py: every=1 → 1, 3, 5, …; every=4 in a
# stage of 4 → its last block).
TIMM_LAMBDA_RESNETS = {
    "lambda_resnet26t": ((2, 2, 2, 2), ((), (), (1,), None),
                         dict(receptive_field=9, lambda_position_bias=True)),
    "lambda_resnet50ts": ((3, 4, 6, 3), ((), (3,), (1, 3, 5), (1,)),
                          dict(receptive_field=9, lambda_position_bias=True,
                               activation="silu")),
    "lambda_resnet26rpt_256": ((2, 2, 2, 2), ((), (), (1,), None),
                               dict(receptive_field="global")),
}
# (width, depth, image size, dropout): standard EfficientNet compound scaling.
EFFICIENTNET_SCALING = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A named model: its class and default config."""

  model_class: Callable[..., nnx.Module]
  config: ResNetConfig | EfficientNetConfig | LanguageModelConfig
  name: str = ""

  @property
  def paper_image_sizes(self) -> tuple[int, ...]:
    """Sizes the paper reports this model at (docs/paper_reference.csv);
    the config's image size when the paper has none (none: a sequence model)."""
    size = getattr(self.config, "image_size", None)
    return paper.image_sizes(self.name) or ((size,) if size else ())


def _build_registry() -> dict[str, ModelSpec]:
  specs = {}
  for depth, blocks in RESNET_DEPTHS.items():
    specs[f"resnet{depth}"] = ModelSpec(ResNet, ResNetConfig(stage_depths=blocks))
  resnet50 = specs["resnet50"].config
  # ResNet-50 with every 3×3 conv replaced by one mixer (SENet: SE 1/16).
  for suffix, changes in (
      ("se", dict(se_ratio=1 / 16)),
      ("lambda", dict(stage_mixers="lambda")),
      ("lambda_shared", dict(stage_mixers="lambda", share_lambda_embeddings=True)),
      ("attention", dict(stage_mixers="attention")),
      ("augmented", dict(stage_mixers="augmented", augmented_attention_fraction=0.1,
                         augmented_key_fraction=0.2,
                         augmented_output_projection=True)),
      ("local_attention", dict(stage_mixers="local_attention")),
      ("axial", dict(stage_mixers="axial_attention")),
  ):
    specs[f"resnet50_{suffix}"] = ModelSpec(
        ResNet, dataclasses.replace(resnet50, **changes))
  for depth, blocks in RESNET_DEPTHS.items():
    size = resnet_rs.default_image_size(depth)
    regularisation = resnet_rs.recipe(depth, size)
    config = ResNetConfig(
        stage_depths=blocks, stem="deep", replace_stem_max_pool=True,
        downsample="avg", se_ratio=0.25,
        stage_mixers=("conv", "conv", "lambda", "lambda"),
        mixer_blocks=(0, 0, len(LAMBDA_C4_BLOCK_INDICES[depth]), None),
        mixer_block_indices=(None, None, LAMBDA_C4_BLOCK_INDICES[depth], None),
        dropout_rate=regularisation.dropout_rate,
        stochastic_depth_rate=regularisation.stochastic_depth_rate,
        stochastic_depth_schedule="per_stage", image_size=size)
    specs[f"lambda_resnet{depth}"] = ModelSpec(ResNet, config)
  for name, (blocks, indices, changes) in TIMM_LAMBDA_RESNETS.items():
    specs[name] = ModelSpec(ResNet, ResNetConfig(
        stage_depths=blocks, stem="tiered", stage_mixers="lambda",
        mixer_block_indices=indices, query_depth=16, heads=4, intra_depth=1,
        strided_mixer_pool="avg2x2", image_size=256, **changes))
  for variant, (width, depth, size, dropout) in EFFICIENTNET_SCALING.items():
    specs[f"efficientnet_{variant}"] = ModelSpec(
        EfficientNet,
        EfficientNetConfig(width_multiplier=width, depth_multiplier=depth,
                           image_size=size, dropout_rate=dropout))
  for size, fields in lm.sizes().items():
    for family, mixer in (("lambda", "lambda"), ("transformer", "attention")):
      specs[f"{family}_lm_{size}"] = ModelSpec(
          LanguageModel, LanguageModelConfig(mixer=mixer, **fields))
  return {name: dataclasses.replace(spec, name=name)
          for name, spec in specs.items()}


_REGISTRY = _build_registry()


def available_models() -> tuple[str, ...]:
  """Names accepted by `get_model`."""
  return tuple(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
  """The registry entry of `name`; a clear error for unknown names."""
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown model {name!r}.{hint} Available models: "
        f"{', '.join(_REGISTRY)}.")
  return _REGISTRY[name]


def get_config(name: str, **overrides: Any
               ) -> ResNetConfig | EfficientNetConfig | LanguageModelConfig:
  """The config of `name` with `overrides` applied (checked field names)."""
  config = get_spec(name).config
  fields = [field.name for field in dataclasses.fields(config)]
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise ValueError(
        f"unknown override(s) {unknown} for model {name!r} "
        f"({type(config).__name__}); valid overrides: {', '.join(fields)}.")
  if ("stage_depths" in overrides and "mixer_block_indices" not in overrides
      and getattr(config, "mixer_block_indices", None) is not None
      and tuple(overrides["stage_depths"]) != tuple(config.stage_depths)):
    # The model's block positions belong to its own depths: with others,
    # its mixer_blocks are placed evenly instead.
    overrides = dict(overrides, mixer_block_indices=None)
  return dataclasses.replace(config, **overrides)


def get_model(name: str, *, num_classes: int, rngs: nnx.Rngs,
              **overrides: Any) -> nnx.Module:
  """Builds model `name` for `num_classes` classes.

  Args:
    name: one of `available_models()`.
    num_classes: size of the classifier output.
    rngs: 'params' initialises the weights; 'dropout' (or the default stream)
      drives stochastic depth and dropout in training mode.
    **overrides: config fields to replace, e.g. dropout_rate=0.3,
      stochastic_depth_rate=0.1, image_size=256, in_channels=1,
      dtype='bfloat16', query_depth=8, stage_mixers='CCLL', width_multiplier=0.25.

  Returns:
    An nnx.Module mapping images [B, H, W, C] to float32 logits
    [B, num_classes]; `model.train()` / `model.eval()` switch modes.
  """
  if (isinstance(num_classes, bool) or not isinstance(num_classes, int)
      or num_classes < 1):
    raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
  config = get_config(name, **overrides)
  if isinstance(config, ResNetConfig):
    position_tables.warn_if_oversized(config)
  return get_spec(name).model_class(config, num_classes=num_classes, rngs=rngs)
