"""ResNet-RS per-model settings, the recipe the LambdaResNet family trains with.

Values of the official ResNet-RS configs, tensorflow/tpu
`models/official/resnet/resnet_rs/configs/resnetrs{DEPTH}_i{SIZE}.yaml`
(read for every file below): `dropout_rate`, `drop_connect_rate` (stochastic
depth; `null` is 0) and `randaug_magnitude`. Every one of those files also
sets `replace_stem_max_pool: True`, `use_resnetd_stem: True`,
`resnetd_shortcut: True`, `se_ratio: 0.25`, batch 4096, 109,475 steps (350
epochs), weight decay 4e-5, label smoothing 0.1, momentum 0.9, EMA 0.9999,
two RandAugment layers, bfloat16. The stochastic-depth rate is applied per
stage: `resnet_model.py` gives block group g (c2..c5 → g = 2..5) the rate
`drop_connect_rate · g / 5` (`resnet_layers.get_drop_connect_rate`, the stem
counted as group 1), as keras `applications/resnet_rs.py` does
(`get_survival_probability(rate, i + 2, len(block_args) + 1)`).

Models and sizes ResNet-RS has no config for (LambdaResNet-50 at 128, our
small depth 26, any other size) follow `rule`, which reproduces every
official config (tested).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Per-model regularisation of the ResNet-RS recipe."""

  dropout_rate: float
  stochastic_depth_rate: float
  randaugment_magnitude: float
  source: str  # The config file, or 'rule' when there is none.


# (depth, image size) -> (dropout_rate, drop_connect_rate, randaug_magnitude),
# one entry per official config file.
OFFICIAL_CONFIGS = {
    (50, 160): (0.25, 0.0, 10),
    (101, 160): (0.25, 0.0, 10),
    (101, 192): (0.25, 0.0, 15),
    (152, 192): (0.25, 0.0, 15),
    (152, 224): (0.25, 0.0, 15),
    (152, 256): (0.25, 0.0, 15),
    (200, 256): (0.25, 0.1, 15),
    (270, 256): (0.25, 0.1, 15),
    (350, 256): (0.25, 0.1, 15),
    (350, 320): (0.4, 0.1, 15),
    (420, 320): (0.4, 0.1, 15),
}
# Our small model for quick runs: no dropout or stochastic depth.
SMALLEST_REGULARISED_DEPTH = 50


def rule(depth: int, image_size: int) -> Recipe:
  """The pattern of the official configs, for any depth and size.

  Dropout 0.4 at 320 px and above, else 0.25; stochastic depth 0.1 from
  depth 200 up, else 0; RandAugment magnitude 10 up to depth 101 at 160 px
  or less, else 15. Depths below 50 (our resnet26) get neither dropout nor
  stochastic depth.
  """
  regularised = depth >= SMALLEST_REGULARISED_DEPTH
  return Recipe(
      dropout_rate=(0.4 if image_size >= 320 else 0.25) if regularised else 0.0,
      stochastic_depth_rate=0.1 if depth >= 200 else 0.0,
      randaugment_magnitude=10.0 if depth <= 101 and image_size <= 160 else 15.0,
      source="rule")


def recipe(depth: int, image_size: int) -> Recipe:
  """The official config's values for (depth, image_size), else `rule`'s."""
  if (depth, image_size) in OFFICIAL_CONFIGS:
    dropout, drop_path, magnitude = OFFICIAL_CONFIGS[depth, image_size]
    return Recipe(dropout, drop_path, float(magnitude),
                  f"resnetrs{depth}_i{image_size}.yaml")
  return rule(depth, image_size)


def default_image_size(depth: int) -> int:
  """The largest size ResNet-RS trains `depth` at (224 when it has none)."""
  sizes = [size for d, size in OFFICIAL_CONFIGS if d == depth]
  return max(sizes, default=224)
