"""timm's three ImageNet-trained lambda ResNets, as data.

Everything timm's pretrained config (`timm/models/byoanet.py`, `_cfg`) says
about each weight file: where it lives, the input it was trained and scored
at, and timm's ImageNet top-1 (its results table; not measured here).
"""

from __future__ import annotations

import dataclasses

# timm's IMAGENET_DEFAULT_MEAN / _STD (RGB, images scaled to [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How timm feeds a pretrained model at evaluation.

  Attributes:
    input_size: (H, W) of the model's input.
    crop_pct: the centre crop's share of the resized image: resize the
      shorter side to input_size / crop_pct, then crop input_size.
    interpolation: the resize filter ('bicubic').
    mean: per-channel mean (RGB) subtracted from images in [0, 1].
    std: per-channel standard deviation the images are divided by.
    fixed_input_size: the model only takes input_size (position tables sized
      for it).
  """

  input_size: tuple[int, int] = (256, 256)
  crop_pct: float = 0.94
  interpolation: str = "bicubic"
  mean: tuple[float, float, float] = IMAGENET_MEAN
  std: tuple[float, float, float] = IMAGENET_STD
  fixed_input_size: bool = False

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TimmModel:
  """One timm model: its hub id, preprocessing, and timm's reported numbers."""

  hub_id: str
  preprocessing: Preprocessing
  top1: float
  params: int

  @property
  def download_hint(self) -> str:
    return (f"https://huggingface.co/{self.hub_id}/resolve/main/"
            "model.safetensors")


TIMM_MODELS = {
    "lambda_resnet26t": TimmModel(
        "timm/lambda_resnet26t.c1_in1k", Preprocessing(crop_pct=0.94),
        top1=79.13, params=10_958_272),
    "lambda_resnet50ts": TimmModel(
        "timm/lambda_resnet50ts.a1h_in1k", Preprocessing(crop_pct=0.95),
        top1=81.18, params=21_536_832),
    "lambda_resnet26rpt_256": TimmModel(
        "timm/lambda_resnet26rpt_256.c1_in1k",
        Preprocessing(crop_pct=0.94, fixed_input_size=True),
        top1=78.96, params=10_988_688),
}
