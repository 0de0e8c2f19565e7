"""RandAugment's "timm" variant: this repository's first RandAugment.

Kept so that runs started before `randaugment_variant` existed resume with
the augmentation they began with (`--config.randaugment_variant=timm`). It
is close to timm's "increasing" RandAugment (`rand-inc`): colour, contrast,
brightness and sharpness blend with factor 1 ± 0.9·M/10 (random sign),
solarize's threshold 256 − 256·M/10 falls as M grows, translations move
0.45·M/10 of the image side, rotations 30°·M/10 and shears 0.3·M/10 with a
random sign. It differs from timm in three places: Identity instead of
Invert, posterize keeps 8 − 4·M/10 bits (timm: 4 − 4·M/10), and the chosen
operation always applies (timm: with probability 0.5). docs/training.md
compares every operation with the TensorFlow TPU reference
(`randaugment_reference.py`).

Operations take a float32 image in [0, 255] and `level` = ±M/10 and return
float32 (rounded to uint8 by the pipeline afterwards). Cost on one CPU core
matters (it runs per image on the host): sharpness smooths with shifted
slices instead of a depthwise convolution, equalisation builds all
channels' histograms with one bincount, translations shift by whole pixels
(a nearest-neighbour translation), and elementwise selects avoid the
broadcasting kernel (tests/test_randaugment.py compares each with the
slower formulation it replaced). Rotations and shears stay bilinear.
"""

from __future__ import annotations

import math

import tensorflow as tf

from lambda_networks.data import augment_kernels as kernels


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _grayscale(image: tf.Tensor) -> tf.Tensor:
  if image.shape[-1] == 3:
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
  return image


def _rotate(image, level):
  angle = level * 30.0 * math.pi / 180.0
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  cos, sin = tf.cos(angle), tf.sin(angle)
  x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
  y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
  return kernels.transform(image, tf.stack([cos, -sin, x_offset, sin, cos,
                                            y_offset, 0.0, 0.0]))


def _shear_x(image, level):
  shear = level * 0.3
  return kernels.transform(image, tf.stack([1.0, shear, 0.0, 0.0, 1.0, 0.0,
                                            0.0, 0.0]))


def _shear_y(image, level):
  shear = level * 0.3
  return kernels.transform(image, tf.stack([1.0, 0.0, 0.0, shear, 1.0, 0.0,
                                            0.0, 0.0]))


def _translate_x(image, level):
  pixels = level * 0.45 * tf.cast(tf.shape(image)[1], tf.float32)
  return kernels.shift(image, pixels, axis=1)


def _translate_y(image, level):
  pixels = level * 0.45 * tf.cast(tf.shape(image)[0], tf.float32)
  return kernels.shift(image, pixels, axis=0)


def _auto_contrast(image, level):
  del level
  low = tf.reduce_min(image, axis=[0, 1])
  high = tf.reduce_max(image, axis=[0, 1])
  scale = tf.where(high > low, 255.0 / tf.maximum(high - low, 1e-3), 1.0)
  offset = tf.where(high > low, low, 0.0)
  return tf.clip_by_value(kernels.per_channel(image, scale, -offset * scale),
                          0.0, 255.0)


def _equalize(image, level):
  """Histogram equalisation per channel (all channels in one bincount)."""
  del level
  values, histogram = kernels.channel_histograms(image)
  cdf = tf.cumsum(histogram, axis=1)
  total = cdf[:, -1:]
  cdf_min = tf.reduce_min(tf.where(cdf > 0, cdf, total), axis=1, keepdims=True)
  denominator = tf.cast(tf.maximum(total - cdf_min, 1), tf.float32)
  lookup = tf.clip_by_value(tf.round(
      tf.cast(cdf - cdf_min, tf.float32) * 255.0 / denominator), 0.0, 255.0)
  # A channel with one value stays as it is.
  lookup = tf.where(total - cdf_min > 0, lookup,
                    tf.range(256, dtype=tf.float32)[None])
  return tf.gather(tf.reshape(lookup, [-1]), values)


def _solarize(image, level):
  threshold = 256.0 - tf.abs(level) * 256.0
  return kernels.select(image < threshold, image, 255.0 - image)


def _solarize_add(image, level):
  added = tf.clip_by_value(image + tf.abs(level) * 110.0, 0.0, 255.0)
  return kernels.select(image < 128.0, added, image)


def _posterize(image, level):
  bits = tf.cast(8 - tf.minimum(tf.abs(level) * 4.0, 7.0), tf.int32)
  shift = tf.cast(8 - bits, tf.uint8)
  pixels = tf.cast(image, tf.uint8)
  return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift),
                                       shift), tf.float32)


def _color(image, level):
  return _blend(_grayscale(image), image, 1.0 + level * 0.9)


def _contrast(image, level):
  mean = tf.reduce_mean(tf.image.rgb_to_grayscale(image) if image.shape[-1] == 3
                        else image)
  return _blend(tf.fill(tf.shape(image), mean), image, 1.0 + level * 0.9)


def _brightness(image, level):
  return _blend(tf.zeros_like(image), image, 1.0 + level * 0.9)


def _sharpness(image, level):
  """Blends with a 3×3 smoothing ([[1,1,1],[1,5,1],[1,1,1]] / 13) inside the
  border; border pixels stay as they are, as PIL does."""
  inner = _blend(kernels.smooth_interior(image), image[1:-1, 1:-1],
                 1.0 + level * 0.9)
  return kernels.with_border(inner, image)


def _identity(image, level):
  del level
  return image


# (operation, whether its level takes a random sign)
OPERATIONS = (
    (_identity, False), (_auto_contrast, False), (_equalize, False),
    (_rotate, True), (_solarize, False), (_color, True), (_posterize, False),
    (_contrast, True), (_brightness, True), (_sharpness, True),
    (_shear_x, True), (_shear_y, True), (_translate_x, True),
    (_translate_y, True), (_solarize_add, False),
)

