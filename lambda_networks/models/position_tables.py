"""Which feature maps a ResNet's lambda layers see, and whether their tables fit.

A lambda layer with an int receptive field r holds an r×r relative position
table; on an H×W map only offsets up to ±(H−1, W−1) occur, so a table wider
than 2·max(H, W) − 1 holds rows that are never used (and r ≥ that width is a
global lambda in disguise). `receptive_field='global'` sizes each table to its
map. These are warnings, not errors: the paper's own r = 23 on 7×7 maps (c5 of
a 224 px ResNet-50) uses 13 of 23 rows per axis.
"""

from __future__ import annotations

import warnings

from lambda_networks.models.resnet import ResNetConfig

# Warn when a table is this many times wider than the offsets a map has.
OVERSIZE_FACTOR = 2


def lambda_map_sizes(config: ResNetConfig) -> dict[int, tuple[int, int]]:
  """Stage index -> largest map (H, W) a lambda layer of that stage sees."""
  found = {}
  for stage, (names, sizes) in enumerate(zip(config.block_mixers(),
                                             config.block_input_sizes())):
    for mixer, size in zip(names, sizes):
      if mixer == "lambda":
        found.setdefault(stage, size)  # The first block sees the largest map.
  return found


def table_warnings(config: ResNetConfig) -> list[str]:
  """One message per stage whose lambda tables are far larger than its maps."""
  field = config.receptive_field
  if not isinstance(field, int):
    return []  # 'global' is sized to the map; None has no table.
  messages = []
  for stage, (height, width) in sorted(lambda_map_sizes(config).items()):
    offsets = 2 * max(height, width) - 1
    if field >= OVERSIZE_FACTOR * offsets:
      messages.append(
          f"lambda layers of stage c{stage + 2} see {height}×{width} maps but "
          f"hold {field}×{field} position tables (receptive_field={field}); "
          f"only {offsets}×{offsets} offsets occur, so a local scope this wide "
          "is a global lambda with unused rows. Use receptive_field='global' "
          "(tables sized to the maps) or a smaller odd int; for small images "
          "also consider stem='small'.")
  return messages


def warn_if_oversized(config: ResNetConfig) -> None:
  """Issues `table_warnings` as UserWarnings (Python shows each one once)."""
  for message in table_warnings(config):
    warnings.warn(message, UserWarning, stacklevel=3)
