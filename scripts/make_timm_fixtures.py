"""Writes tests/fixtures/timm/: small timm lambda ResNets and their logits.

For each of timm's three lambda ResNets (`TIMM_NAMES`), a reduced-width copy
of timm's own config (same stem, block types, lambda placement, activation
and position terms; stage widths FIXTURE_WIDTHS, stem FIXTURE_STEM, 10
classes, 64 px) with random weights *and* random batch-norm statistics
(`randomize`), saved as timm saves it (`<name>.safetensors`), with
`<name>.logits.safetensors`: timm's float32 eval-mode logits (and float64
ones, `logits_float64`) for the random batch in `images.safetensors` (NHWC),
and (metadata) the overrides that build our matching registry model.
`tests/test_pretrained.py` checks that our converted model gives the same
logits.

Needs torch and timm, which the project does not depend on:

  python3 -m venv ~/timm-env && ~/timm-env/bin/pip install timm safetensors
  ~/timm-env/bin/python -m scripts.make_timm_fixtures          # the fixtures
  ~/timm-env/bin/python -m scripts.make_timm_fixtures --full DIR
      # full-size random models, 256 px, the same files (about 180 MB) in DIR

Deterministic (torch.manual_seed); it imports nothing of lambda_networks.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import pathlib

import timm
import torch
from safetensors.torch import save_file
from timm.models import byoanet
from timm.models.byobnet import ByobNet

TIMM_NAMES = ("lambda_resnet26t", "lambda_resnet50ts", "lambda_resnet26rpt_256")
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "timm"
# Output channels per stage of the reduced models (bottlenecks a quarter).
FIXTURE_WIDTHS = (32, 32, 64, 64)
FIXTURE_STEM = 8
FIXTURE_CLASSES = 10
FIXTURE_SIZE = 64
FULL_SIZE = 256
VARIANCE_FLOOR = 0.1


def reduced_model(name: str) -> tuple[ByobNet, dict]:
  """timm's config for `name` with small widths; our matching overrides."""
  config = byoanet.model_cfgs[name]
  blocks = []
  for stage, width in zip(config.blocks, FIXTURE_WIDTHS):
    if isinstance(stage, tuple):
      blocks.append(tuple(dataclasses.replace(b, c=width) for b in stage))
    else:
      blocks.append(dataclasses.replace(stage, c=width))
  config = dataclasses.replace(config, blocks=tuple(blocks),
                               stem_chs=FIXTURE_STEM)
  model = ByobNet(config, num_classes=FIXTURE_CLASSES, img_size=FIXTURE_SIZE)
  overrides = dict(stage_widths=[w // 4 for w in FIXTURE_WIDTHS],
                   stem_width=FIXTURE_STEM, image_size=FIXTURE_SIZE)
  return model, overrides


def randomize(model: torch.nn.Module, seed: int, images: torch.Tensor
              ) -> torch.nn.Module:
  """Random weights and batch-norm statistics, so every tensor matters.

  timm initialises batch norms to the identity (and the last one of each
  block to zero) and its position terms near zero; a mapping that mixed up
  any of them would still pass with those values. Each norm's statistics
  are those of its own input in an eval-mode pass over `images` (the batch
  the logits are computed for), moved at random: so activations keep their
  scale through the depth. (Statistics of other images, or of a train-mode
  pass, do not: a lambda layer multiplies queries by values, so it squares
  any scale error, and the 50ts's logits reach 1e13.)
  """
  generator = torch.Generator().manual_seed(seed)

  def normal(like, std):
    return torch.randn(like.shape, generator=generator) * std

  def uniform(like, low, high):
    return low + (high - low) * torch.rand(like.shape, generator=generator)

  norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for name, module in model.named_modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        # A residual branch's last norm small (timm starts it at zero):
        # random deep nets are chaotic otherwise, float32 round-off grows
        # two-fold per block and timm's float32 logits are not a reference.
        low, high = (0.1, 0.3) if name.endswith("conv3_1x1.bn") else (0.5, 1.5)
        module.weight.copy_(uniform(module.weight, low, high))
        module.bias.copy_(normal(module.bias, 0.2))
    for name, parameter in model.named_parameters():
      if name.endswith("pos_emb") or name.endswith("conv_lambda.bias"):
        parameter.copy_(normal(parameter, 0.3))
      elif name.endswith("conv_lambda.weight"):
        parameter.copy_(normal(parameter, 0.1))
      elif name == "head.fc.weight":  # Logits of order one.
        parameter.copy_(normal(parameter, parameter.shape[1] ** -0.5))
      elif name == "head.fc.bias":
        parameter.copy_(normal(parameter, 0.5))
    model.eval()
    hooks = [m.register_forward_pre_hook(
        lambda module, inputs: _set_statistics(module, inputs[0], normal, uniform))
             for m in norms]
    model(images)  # Each norm takes its statistics from its own input.
    for hook in hooks:
      hook.remove()
  return model.eval()


def _set_statistics(module: torch.nn.BatchNorm2d, inputs: torch.Tensor,
                    normal, uniform) -> None:
  """The input's per-channel mean and variance, each moved at random.

  The variance is floored at VARIANCE_FLOOR: a channel that is nearly
  constant on these few positions would otherwise divide float32 round-off
  by a tiny deviation, and timm's own float32 and float64 logits would
  differ by more than the tolerance the tests hold us to.
  """
  mean = inputs.mean(dim=(0, 2, 3))
  var = inputs.var(dim=(0, 2, 3), unbiased=False)
  std = (var + module.eps).sqrt()
  module.running_mean.copy_(mean + normal(mean, 0.2) * std)
  module.running_var.copy_((var * uniform(var, 0.7, 1.4)).clamp(min=VARIANCE_FLOOR))


def write(model: ByobNet, name: str, overrides: dict, images: torch.Tensor,
          out: pathlib.Path, seed: int) -> None:
  """Randomizes the model; saves its weights and timm's logits for `images`."""
  randomize(model, seed, images)
  with torch.no_grad():
    logits = model(images).float()
    exact = copy.deepcopy(model).double()(images.double())
  out.mkdir(parents=True, exist_ok=True)
  weights = {k: v.contiguous() for k, v in model.state_dict().items()}
  save_file(weights, str(out / f"{name}.safetensors"))
  save_file({"logits": logits, "logits_float64": exact},
            str(out / f"{name}.logits.safetensors"),
            metadata={"overrides": json.dumps(overrides),
                      "timm_version": timm.__version__})
  print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"logits std {logits.std():.3f}, timm float32 − float64 "
        f"{(logits.double() - exact).abs().max():.1e} → {out}")


def write_images(size: int, batch: int, out: pathlib.Path) -> torch.Tensor:
  """A random batch [B, 3, H, W], also saved NHWC (ours) as images.safetensors."""
  images = torch.randn((batch, 3, size, size),
                       generator=torch.Generator().manual_seed(1234))
  out.mkdir(parents=True, exist_ok=True)
  save_file({"images": images.permute(0, 2, 3, 1).contiguous()},
            str(out / "images.safetensors"))
  return images


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--full", type=pathlib.Path, default=None,
                      help="write full-size models (256 px) here instead")
  args = parser.parse_args()
  torch.manual_seed(0)
  out = args.full or FIXTURES
  images = write_images(FULL_SIZE if args.full else FIXTURE_SIZE,
                        2 if args.full else 1, out)
  for seed, name in enumerate(TIMM_NAMES):
    if args.full:
      model, overrides = timm.create_model(name, pretrained=False), {}
    else:
      model, overrides = reduced_model(name)
    write(model, name, overrides, images, out, seed)


if __name__ == "__main__":
  main()
