"""Analytic memory of a ResNet's attention maps and lambda embeddings.

Counted from the layer shapes of a `ResNetConfig`, in two conventions: the
paper's Table 4 space complexities (docs/paper.md#complexity), and what
this implementation materialises (the execution `method="auto"` picks
included).
"""

from __future__ import annotations

import dataclasses

from lambda_networks import models
from lambda_networks import ops
from lambda_networks.models import common


@dataclasses.dataclass(frozen=True)
class MixerSite:
  """One spatial mixer of a ResNet: where it runs and on what."""

  stage: int
  mixer: str
  input_hw: tuple[int, int]  # The resolution the mixer runs at.
  output_hw: tuple[int, int]  # Its block's output resolution.
  width: int


def mixer_sites(config: models.ResNetConfig) -> list[MixerSite]:
  """Every block's mixer, with the sizes `ResNet.__init__` gives it."""
  sites = []
  for stage, (width, names, sizes, strides) in enumerate(zip(
      config.widths(), config.block_mixers(), config.block_input_sizes(),
      config.block_strides())):
    for mixer, size, stride in zip(names, sizes, strides):
      output = tuple(common.downsampled(s, stride) for s in size)
      sites.append(MixerSite(stage, mixer, size, output, width))
  return sites


def analytic_floats(config: models.ResNetConfig, batch: int, *,
                    convention: str, shared_embeddings: bool = False) -> int:
  """Floats of attention maps / lambda embeddings summed over the model.

  Args:
    config: the ResNet's config.
    batch: batch size b (the lambda embeddings do not depend on it).
    convention: 'paper' (the paper's Table 4 space complexities, each layer
      at its block's output resolution) or 'as_run' (what this
      implementation materialises, each mixer at its input resolution).
    shared_embeddings: 'paper' only: one lambda embedding table per stage.
  """
  if convention not in ("paper", "as_run"):
    raise ValueError(f"convention must be 'paper' or 'as_run', got {convention!r}.")
  total = 0
  shared: dict[int, int] = {}
  for site in mixer_sites(config):
    hw = site.output_hw if convention == "paper" else site.input_hw
    n = hw[0] * hw[1]
    heads = config.attention_heads
    if site.mixer == "attention":
      total += batch * heads * n * n
    elif site.mixer == "axial_attention":
      total += batch * heads * n * (hw[0] + hw[1])
    elif site.mixer == "local_attention":
      total += batch * heads * n * config.attention_window ** 2
    elif site.mixer == "lambda":
      k, u = config.query_depth, config.intra_depth
      method = config.mixer_spec(site.stage).lambda_method  # Not "measure".
      if convention == "paper":
        m = (config.receptive_field ** 2 if method == "conv"
             and isinstance(config.receptive_field, int) else n)
        if shared_embeddings:
          shared[site.stage] = max(shared.get(site.stage, 0), k * u * n * m)
        else:
          total += k * u * n * m
      else:
        value_depth = site.width // config.heads
        total += batch * n * k * value_depth  # Position lambdas.
        if (config.receptive_field is not None
            and _lambda_method(config, hw, method) == "einsum"):
          total += k * u * n * n  # Gathered per-pair embeddings [n, n, k, u].
  return total + sum(shared.values())


def _lambda_method(config: models.ResNetConfig, hw: tuple[int, int],
                   method: str) -> str:
  width = config.receptive_field
  table = (width, width) if isinstance(width, int) else tuple(2 * s - 1 for s in hw)
  return ops.resolved_method(hw, table, method)
