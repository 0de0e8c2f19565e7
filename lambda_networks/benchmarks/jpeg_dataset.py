"""An ImageNet-like TFDS dataset of generated JPEGs, for input-pipeline benchmarks.

Images have ImageNet's typical sizes (long side mostly 500 px, aspect 0.6–0.85,
three in four landscape) and natural-image statistics: a 1/f amplitude
spectrum (power falling as 1/f², as in photographs), colour correlated across
channels, a few flat-coloured shapes with sharp edges, and light sensor noise;
saved as JPEG at quality 90. Decoding, cropping and augmenting them costs what
real photographs cost; the labels mean nothing.

Example i of a split is a pure function of (seed, split, i), and the dataset
is written with TFDS's own writer, so the files are a real prepared TFDS
dataset that `tfds.builder(name, data_dir=...)` (and so the training
pipeline, with `config.dataset=name`) reads like any other.
"""

from __future__ import annotations

import io
import pathlib

import numpy as np

DATASET_NAME = "generated_jpeg_imagenet"
VERSION = "1.0.0"
NUM_CLASSES = 1000
JPEG_QUALITY = 90
_SPLIT_IDS = {"train": 0, "validation": 1}


def image_shape(rng: np.random.Generator, long_side: int) -> tuple[int, int]:
  """(height, width) drawn like ImageNet's: mostly long_side × 0.75·long_side."""
  long = long_side if rng.random() < 0.7 else int(rng.integers(long_side * 3 // 5,
                                                               long_side + 1))
  short = int(round(long * rng.uniform(0.6, 0.85)))
  return (short, long) if rng.random() < 0.75 else (long, short)


def natural_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A uint8 [height, width, 3] image with a 1/f spectrum, shapes and noise."""
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.rfftfreq(width)[None, :]
  amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(height, width))
  def field():
    phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
    spectrum = amplitude * np.exp(1j * phase) * rng.rayleigh(1.0, amplitude.shape)
    values = np.fft.irfft2(spectrum, s=(height, width))
    return (values - values.mean()) / (values.std() + 1e-8)
  luminance = field()
  colour = rng.normal(0, 1, (3, 3)) * 0.35 + np.eye(3)  # Correlated channels.
  fields = np.stack([luminance, field() * 0.5, field() * 0.5], axis=-1) @ colour
  image = 128 + 40 * fields + rng.uniform(-30, 30, 3)
  yy, xx = np.mgrid[:height, :width]
  for _ in range(int(rng.integers(2, 7))):  # Objects: ellipses and boxes.
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
    if rng.random() < 0.5:
      inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    else:
      inside = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
    shade = rng.uniform(0, 255, 3) + 15 * luminance[..., None]
    image = np.where(inside[..., None], shade, image)
  image += rng.normal(0, 2.0, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def example(seed: int, split: str, index: int, long_side: int) -> dict:
  """Example `index` of `split`: {'image': JPEG bytes, 'label': int}."""
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
  height, width = image_shape(rng, long_side)
  return {"image": encode_jpeg(natural_image(rng, height, width)),
          "label": int(rng.integers(NUM_CLASSES))}


def build(data_dir: str | pathlib.Path, *, num_train: int, num_eval: int,
          seed: int = 0, long_side: int = 500):
  """Writes the dataset under data_dir (once) and returns its TFDS builder."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class GeneratedJpegImagenet(tfds.core.GeneratorBasedBuilder,
                              skip_registration=True):
    """The generated dataset, as a TFDS builder."""
    # TFDS finds the code of a builder defined in a package through
    # importlib_resources (not a dependency here); a plain module name skips it.
    __module__ = DATASET_NAME
    name = DATASET_NAME
    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = {str(VERSION): "Initial release."}

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self, description=__doc__,
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Image(shape=(None, None, 3),
                                           encoding_format="jpeg"),
              "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES)}),
          supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples("train", num_train),
              "validation": self._generate_examples("validation", num_eval)}

    def _generate_examples(self, split, count):
      # Bytes given to an Image feature are stored as they are (no
      # re-encoding), so the pipeline reads the quality-90 JPEG.
      for index in range(count):
        yield index, example(seed, split, index, long_side)

  builder = GeneratedJpegImagenet(data_dir=str(data_dir))
  if builder.is_prepared():
    counts = (builder.info.splits["train"].num_examples,
              builder.info.splits["validation"].num_examples)
    if counts != (num_train, num_eval):
      raise ValueError(
          f"{builder.data_dir} holds {counts} train/validation examples, not "
          f"{(num_train, num_eval)}; delete it or choose another data_dir.")
    return builder
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  return tfds.builder(f"{DATASET_NAME}:{VERSION}", data_dir=str(data_dir))
