"""`shapes28`: a generated 28×28 grayscale TFDS dataset for small-image runs.

Ten classes of anti-aliased shapes (disk, ring, square, square outline, plus,
diagonal cross, horizontal stripes, vertical stripes, triangle up, triangle
down) at random positions, sizes, stroke widths and contrast (some barely
above the background), on noise of random strength, with a small random blob
as a distractor. Every class is mirror-symmetric left–right, so flip
augmentation keeps labels. The splits are `train` and `test` (no
`validation`), PNG-encoded like MNIST's, and example i of a split is a pure
function of (split, i). Written by `python -m scripts.make_shapes_dataset`.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

SIZE = 28
CLASSES = ("disk", "ring", "square", "square_outline", "plus", "cross",
           "horizontal_stripes", "vertical_stripes", "triangle_up",
           "triangle_down")
_SPLIT_IDS = {"train": 0, "test": 1}
_SUPERSAMPLE = 4


def shape_mask(label: int, rng: np.random.Generator) -> np.ndarray:
  """Coverage in [0, 1] of one random shape of class `label`, [SIZE, SIZE]."""
  radius = rng.uniform(4.0, 11.0)
  thickness = rng.uniform(1.5, 3.0)
  cy, cx = rng.uniform(radius + 1, SIZE - radius - 1, size=2)
  grid = (np.arange(SIZE * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
  y, x = np.meshgrid(grid - cy, grid - cx, indexing="ij")
  box = np.maximum(np.abs(x), np.abs(y))
  half = thickness / 2
  name = CLASSES[label]
  if name == "disk":
    inside = np.hypot(x, y) <= radius
  elif name == "ring":
    inside = np.abs(np.hypot(x, y) - radius) <= half
  elif name == "square":
    inside = box <= radius * 0.85
  elif name == "square_outline":
    inside = np.abs(box - radius * 0.85) <= half
  elif name == "plus":
    inside = (((np.abs(x) <= half) | (np.abs(y) <= half)) & (box <= radius))
  elif name == "cross":
    diagonal = np.minimum(np.abs(x - y), np.abs(x + y)) / np.sqrt(2)
    inside = (diagonal <= half) & (box <= radius * 0.8)
  elif name in ("horizontal_stripes", "vertical_stripes"):
    across = y if name == "horizontal_stripes" else x
    period = 2 * radius / 3
    inside = (box <= radius) & (np.mod(across + radius, period) < thickness + 0.5)
  else:  # Triangles: apex up or down, base as wide as the height.
    down = y if name == "triangle_up" else -y
    inside = (np.abs(down) <= radius) & (np.abs(x) <= (down + radius) / 2)
  coverage = inside.astype(np.float32).reshape(
      SIZE, _SUPERSAMPLE, SIZE, _SUPERSAMPLE).mean(axis=(1, 3))
  return coverage


def make_image(label: int, rng: np.random.Generator) -> np.ndarray:
  """One uint8 [SIZE, SIZE, 1] image of class `label`."""
  background = rng.uniform(0, 90)
  foreground = background + rng.uniform(25, 165)  # Some barely stand out.
  image = background + (foreground - background) * shape_mask(label, rng)
  blob_y, blob_x = rng.integers(0, SIZE - 3, size=2)
  image[blob_y:blob_y + 3, blob_x:blob_x + 3] += rng.uniform(40, 120)
  image += rng.normal(0.0, rng.uniform(10, 50), image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)[..., None]


def example(split: str, index: int) -> tuple[np.ndarray, int]:
  rng = np.random.default_rng([_SPLIT_IDS[split], index])
  label = int(rng.integers(len(CLASSES)))
  return make_image(label, rng), label


class Shapes28(tfds.core.GeneratorBasedBuilder):
  """Ten classes of 28×28 grayscale shapes (see the module docstring)."""

  # TFDS finds the code of a builder defined in a package through
  # importlib_resources (not a dependency here); a plain module name skips it.
  __module__ = "shapes28"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}

  def __init__(self, *, num_train: int = 20_000, num_test: int = 4_000,
               **kwargs):
    self._sizes = {"train": num_train, "test": num_test}
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="28×28 grayscale shapes in 10 mirror-symmetric classes.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(SIZE, SIZE, 1)),
            "label": tfds.features.ClassLabel(names=CLASSES),
        }),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in self._sizes}

  def _generate_examples(self, split: str):
    for index in range(self._sizes[split]):
      image, label = example(split, index)
      yield index, {"image": image, "label": label}

