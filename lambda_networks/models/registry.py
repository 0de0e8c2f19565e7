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
  resnet50_augmented               every 3×3 conv attention-augmented: 20% of
      its output channels from global relative self-attention, 80% from the
      3×3 conv, concatenated (Table 3, "conv + relative self-attention").
  resnet50_local_attention         ... 7×7 local relative self-attention (SASA).
  resnet50_axial                   ... axial self-attention.
  lambda_resnet26, lambda_resnet50 … lambda_resnet420   the LambdaResNet family:
      ResNet-D stem and shortcuts, SE 0.25 in conv blocks, every c5 block a
      lambda block and 1/3/6/6/6/6/8 lambda blocks in c4 (26: 1), spread evenly.
  efficientnet_b0 … efficientnet_b7

Choices where the paper is not explicit ([likely] in PAPER.md), all config
values: the family uses the ResNet-RS depths, lambda k16 h4 u1 r23, no SE in
lambda blocks, the c4 lambda blocks at the end of equal chunks of the stage
(`ResNetConfig.mixer_blocks`), and ResNet-RS-like regularisers (dropout
0.25–0.4, stochastic depth 0–0.1 growing with depth) as defaults.
resnet50_augmented takes 20% attention channels (`augmented_attention_fraction`,
rounded to a multiple of the 8 heads) with key depth = value depth and no
output projection; splitting the 3×3 conv's outputs can only remove weights,
so it has 24.07M parameters where the paper lists 25.8M (see docs/models.md).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

from flax import nnx

from lambda_networks.models import position_tables
from lambda_networks.models.efficientnet import EfficientNet, EfficientNetConfig
from lambda_networks.models.resnet import ResNet, ResNetConfig

# Blocks per stage (c2..c5): ResNet / ResNet-RS depths (PAPER.md §3).
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
# Lambda blocks in c4 of a LambdaResNet (quoted in PAPER.md §3; 26 is ours).
LAMBDA_C4_BLOCKS = {26: 1, 50: 1, 101: 3, 152: 6, 200: 6, 270: 6, 350: 6, 420: 8}
# (dropout_rate, stochastic_depth_rate, image_size) defaults of the family,
# after ResNet-RS [likely]; image_size is the largest the paper trains at.
LAMBDA_RESNET_DEFAULTS = {
    26: (0.0, 0.0, 224),
    50: (0.25, 0.0, 160),
    101: (0.25, 0.0, 192),
    152: (0.3, 0.0, 256),
    200: (0.3, 0.1, 256),
    270: (0.3, 0.1, 256),
    350: (0.4, 0.1, 320),
    420: (0.4, 0.1, 320),
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
# Image sizes the paper reports each LambdaResNet at (speed–accuracy table).
LAMBDA_RESNET_PAPER_SIZES = {
    50: (128, 160), 101: (160, 192), 152: (192, 224, 256), 200: (256,),
    270: (256,), 350: (256, 320), 420: (320,),
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A named model: its class, default config and the sizes the paper uses."""

  model_class: Callable[..., nnx.Module]
  config: ResNetConfig | EfficientNetConfig
  description: str
  paper_image_sizes: tuple[int, ...]


def _build_registry() -> dict[str, ModelSpec]:
  specs = {}
  for depth, blocks in RESNET_DEPTHS.items():
    specs[f"resnet{depth}"] = ModelSpec(
        ResNet, ResNetConfig(stage_depths=blocks),
        f"ResNet-{depth} v1.5", (224,))
  resnet50 = specs["resnet50"].config
  for suffix, changes, what in (
      ("se", dict(se_ratio=1 / 16), "with squeeze-excitation (SENet, 1/16)"),
      ("lambda", dict(stage_mixers="LLLL"), "with every 3×3 conv a lambda layer"),
      ("lambda_shared", dict(stage_mixers="LLLL", share_lambda_embeddings=True),
       "with every 3×3 conv a lambda layer, one position table per stage"),
      ("attention", dict(stage_mixers="AAAA"),
       "with every 3×3 conv global relative self-attention"),
      ("augmented", dict(stage_mixers="GGGG"),
       "with every 3×3 conv attention-augmented (conv + relative "
       "self-attention)"),
      ("local_attention", dict(stage_mixers="WWWW"),
       "with every 3×3 conv 7×7 local relative self-attention (SASA)"),
      ("axial", dict(stage_mixers="XXXX"),
       "with every 3×3 conv axial self-attention"),
  ):
    specs[f"resnet50_{suffix}"] = ModelSpec(
        ResNet, dataclasses.replace(resnet50, **changes),
        f"ResNet-50 {what}", (224,))
  for depth, blocks in RESNET_DEPTHS.items():
    dropout, drop_path, size = LAMBDA_RESNET_DEFAULTS[depth]
    config = ResNetConfig(
        stage_depths=blocks, stem="deep", downsample="avg", se_ratio=0.25,
        stage_mixers="CCLL", mixer_blocks=(0, 0, LAMBDA_C4_BLOCKS[depth], None),
        dropout_rate=dropout, stochastic_depth_rate=drop_path, image_size=size)
    specs[f"lambda_resnet{depth}"] = ModelSpec(
        ResNet, config, f"LambdaResNet-{depth}",
        LAMBDA_RESNET_PAPER_SIZES.get(depth, (size,)))
  for variant, (width, depth, size, dropout) in EFFICIENTNET_SCALING.items():
    specs[f"efficientnet_{variant}"] = ModelSpec(
        EfficientNet,
        EfficientNetConfig(width_multiplier=width, depth_multiplier=depth,
                           image_size=size, dropout_rate=dropout),
        f"EfficientNet-{variant.upper()}", (size,))
  return specs


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


def get_config(name: str, **overrides: Any) -> ResNetConfig | EfficientNetConfig:
  """The config of `name` with `overrides` applied (checked field names)."""
  config = get_spec(name).config
  fields = [field.name for field in dataclasses.fields(config)]
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise ValueError(
        f"unknown override(s) {unknown} for model {name!r} "
        f"({type(config).__name__}); valid overrides: {', '.join(fields)}.")
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
