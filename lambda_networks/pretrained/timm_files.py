"""Reads a timm checkpoint into numpy arrays by name.

`.safetensors` needs only the `safetensors` package (no PyTorch); `.pth` /
`.pt` / `.bin` files need torch, and are read with `weights_only=True`.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from lambda_networks.errors import UserError

TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def read_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Every tensor of the file, by timm's state-dict name."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f"no weight file at {path}; download timm's "
                    "model.safetensors (see README, 'Pretrained models').")
  if path.suffix == ".safetensors":
    from safetensors import numpy as safetensors_numpy  # pylint: disable=import-outside-toplevel
    try:
      return dict(safetensors_numpy.load_file(str(path)))
    except Exception as error:  # The library raises several kinds.
      raise UserError(f"{path} is not a readable .safetensors file: {error}"
                      ) from error
  if path.suffix in TORCH_SUFFIXES:
    return _read_torch(path)
  raise UserError(f"{path}: expected a .safetensors file (or "
                  f"{'/'.join(TORCH_SUFFIXES)} with torch installed).")


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise UserError(
        f"{path} is a PyTorch file and torch is not installed; use timm's "
        "model.safetensors instead (no torch needed), or pip install torch."
    ) from error
  checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  for key in ("state_dict", "model", "state_dict_ema"):
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
      checkpoint = checkpoint[key]
      break
  tensors = {}
  for name, tensor in checkpoint.items():
    name = name.removeprefix("module.")
    if tensor.is_floating_point():
      tensor = tensor.float()
    tensors[name] = tensor.detach().cpu().numpy()
  return tensors
