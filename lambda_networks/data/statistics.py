"""Dataset facts computed from the data itself: normalisation statistics, splits."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


def channel_statistics(builder: tfds.core.DatasetBuilder, split: str,
                       image_key: str, max_examples: int
                       ) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel pixel mean and standard deviation (0–255 scale) of a split.

  Reads the first `max_examples` examples of `split` in file order (no
  shuffling), so every host and every later evaluation gets the same numbers.
  Sums are float64 and reduced in order: the result is deterministic.
  """
  read_config = tfds.ReadConfig(interleave_cycle_length=1)
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          read_config=read_config)
  if max_examples > 0:
    ds = ds.take(max_examples)

  def sums(example):
    image = tf.cast(example[image_key], tf.float64)
    pixels = tf.reshape(image, [-1, tf.shape(image)[-1]])
    return (tf.reduce_sum(pixels, 0), tf.reduce_sum(tf.square(pixels), 0),
            tf.cast(tf.shape(pixels)[0], tf.float64))

  channels = builder.info.features[image_key].shape[-1] or 3
  zeros = tf.zeros([channels], tf.float64)
  total, total_squares, count = ds.map(sums).reduce(
      (zeros, zeros, tf.constant(0.0, tf.float64)),
      lambda state, new: tuple(a + b for a, b in zip(state, new)))
  count = float(count.numpy())
  if count == 0:
    raise ValueError(f"Split {split!r} of {builder.info.full_name} has no "
                     "images to compute normalisation statistics from.")
  mean = total.numpy() / count
  variance = np.maximum(total_squares.numpy() / count - mean ** 2, 0.0)
  stddev = np.maximum(np.sqrt(variance), 1.0)  # A constant image: no blow-up.
  return (tuple(round(float(v), 4) for v in mean),
          tuple(round(float(v), 4) for v in stddev))


def image_size(builder: tfds.core.DatasetBuilder, image_key: str) -> int:
  """The side of the dataset's images (the longer one if not square)."""
  height, width = builder.info.features[image_key].shape[:2]
  if not height or not width:
    raise ValueError(
        f"{builder.info.full_name} has images of varying size; set "
        "config.image_size (the size to crop and resize to).")
  return max(height, width)


def default_eval_split(builder: tfds.core.DatasetBuilder) -> str:
  """'validation' when the dataset has it, else 'test' (MNIST, CIFAR, ...)."""
  splits = list(builder.info.splits)
  for name in ("validation", "test"):
    if name in splits:
      return name
  raise ValueError(
      f"{builder.info.full_name} has neither a 'validation' nor a 'test' "
      f"split (it has {splits}); set config.eval_split, e.g. to a slice of "
      "the training split such as 'train[90%:]' (and train_split='train[:90%]').")
