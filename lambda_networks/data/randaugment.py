"""RandAugment (Cubuk et al., 2020) with stateless, per-example randomness.

Keras 3 ships a RandAugment layer, but it draws from a stateful seed generator
and evaluates every operation for every image, so a resumed tf.data pipeline
would not reproduce its draws. This version takes an explicit seed per image
and runs only the chosen operations. Operations and magnitude scale follow the
TensorFlow TPU reference used by ResNet-RS: `magnitude` on a 0–10 scale
(values above 10 extrapolate; ResNet-RS uses 10–15), two layers by default.
Images are float32 in [0, 255], [H, W, C] with C = 1 or 3.

Cost on one CPU core matters here (it runs per image on the host), so the
operations avoid the slow general kernels where a cheaper exact formulation
exists: sharpness smooths with shifted slices instead of a depthwise
convolution, equalisation builds all channels' histograms with one
bincount and maps them with one gather, translations shift by whole pixels
(slice and pad: a nearest-neighbour translation, as the TPU reference's
transforms sample), and elementwise selects avoid the broadcasting kernel
(tests/test_randaugment.py compares each with the slower formulation it
replaced). Rotations and shears stay bilinear.
"""

from __future__ import annotations

import math

import tensorflow as tf

MAX_LEVEL = 10.0
FILL_VALUE = 128.0


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _select(condition: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  """Elementwise `condition ? x : y` for tensors of one shape.

  The non-broadcasting Select kernel: tf.where (SelectV2) takes a
  broadcasting path that costs about 1 ms on a 224² RGB image on one core,
  against under 0.1 ms.
  """
  return tf.raw_ops.Select(condition=condition, x=x, y=y)


def _per_channel(image: tf.Tensor, scale: tf.Tensor | None,
                 offset: tf.Tensor) -> tf.Tensor:
  """image * scale + offset with per-channel [C] scale (None: 1) and offset.

  Runs on rows of W·C values against the pattern tiled W times: a broadcast
  over the short channel axis does not vectorise.
  """
  shape = tf.shape(image)
  width = shape[1]
  rows = tf.reshape(image, [shape[0], -1])
  offset = tf.tile(tf.broadcast_to(offset, shape[-1:]), [width])
  if scale is not None:
    rows = rows * tf.tile(tf.broadcast_to(scale, shape[-1:]), [width])
  return tf.reshape(rows + offset, shape)


def _grayscale(image: tf.Tensor) -> tf.Tensor:
  if image.shape[-1] == 3:
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
  return image


def _transform(image: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
  """Applies a projective transform [a0 a1 a2 b0 b1 b2 c0 c1] (output→input)."""
  images = image[None]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=tf.cast(matrix, tf.float32)[None],
      output_shape=tf.shape(image)[:2], fill_value=FILL_VALUE,
      interpolation="BILINEAR", fill_mode="CONSTANT")
  return out[0]


def _rotate(image, level):
  angle = level * 30.0 * math.pi / 180.0
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  cos, sin = tf.cos(angle), tf.sin(angle)
  x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
  y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
  return _transform(image, tf.stack([cos, -sin, x_offset, sin, cos, y_offset,
                                     0.0, 0.0]))


def _shear_x(image, level):
  shear = level * 0.3
  return _transform(image, tf.stack([1.0, shear, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))


def _shear_y(image, level):
  shear = level * 0.3
  return _transform(image, tf.stack([1.0, 0.0, 0.0, shear, 1.0, 0.0, 0.0, 0.0]))


def _shift(image: tf.Tensor, pixels: tf.Tensor, axis: int) -> tf.Tensor:
  """Moves the image by `pixels` (rounded) along axis 0 or 1, filling with 128.

  What a translation through a nearest-neighbour transform gives, as a
  slice and a pad instead of a resampling kernel.
  """
  size = tf.shape(image)[axis]
  shift = tf.clip_by_value(tf.cast(tf.round(pixels), tf.int32), -size, size)
  kept = size - tf.abs(shift)
  begin = tf.maximum(-shift, 0)
  slice_begin = tf.tensor_scatter_nd_update(tf.zeros([3], tf.int32),
                                            [[axis]], [begin])
  slice_size = tf.tensor_scatter_nd_update(tf.constant([-1, -1, -1]),
                                           [[axis]], [kept])
  kept_part = tf.slice(image, slice_begin, slice_size)
  before, after = tf.maximum(shift, 0), tf.maximum(-shift, 0)
  paddings = tf.tensor_scatter_nd_update(tf.zeros([3, 2], tf.int32), [[axis]],
                                         [tf.stack([before, after])])
  return tf.pad(kept_part, paddings, constant_values=FILL_VALUE)


def _translate_x(image, level):
  pixels = level * 0.45 * tf.cast(tf.shape(image)[1], tf.float32)
  return _shift(image, pixels, axis=1)


def _translate_y(image, level):
  pixels = level * 0.45 * tf.cast(tf.shape(image)[0], tf.float32)
  return _shift(image, pixels, axis=0)


def _auto_contrast(image, level):
  del level
  low = tf.reduce_min(image, axis=[0, 1])
  high = tf.reduce_max(image, axis=[0, 1])
  scale = tf.where(high > low, 255.0 / tf.maximum(high - low, 1e-3), 1.0)
  offset = tf.where(high > low, low, 0.0)
  return tf.clip_by_value(_per_channel(image, scale, -offset * scale),
                          0.0, 255.0)


def _equalize(image, level):
  """Histogram equalisation per channel (all channels in one bincount)."""
  del level
  channels = tf.shape(image)[-1]
  values = _per_channel(tf.cast(image, tf.int32), None,
                        tf.range(channels) * 256)
  histogram = tf.reshape(tf.math.bincount(tf.reshape(values, [-1]),
                                          minlength=256 * channels,
                                          maxlength=256 * channels),
                         [channels, 256])
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
  return _select(image < threshold, image, 255.0 - image)


def _solarize_add(image, level):
  added = tf.clip_by_value(image + tf.abs(level) * 110.0, 0.0, 255.0)
  return _select(image < 128.0, added, image)


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
  rows = image[:-2] + image[1:-1] + image[2:]
  inner = image[1:-1, 1:-1]
  smooth = (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:] + 4.0 * inner) / 13.0
  inner = _blend(smooth, inner, 1.0 + level * 0.9)
  middle = tf.concat([image[1:-1, :1], inner, image[1:-1, -1:]], axis=1)
  return tf.concat([image[:1], middle, image[-1:]], axis=0)


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


def randaugment(image: tf.Tensor, seed: tf.Tensor, *, num_layers: int,
                magnitude: float) -> tf.Tensor:
  """Applies `num_layers` random operations of strength `magnitude` (0–10)."""
  level = magnitude / MAX_LEVEL
  seeds = tf.random.experimental.stateless_split(seed, num_layers)
  for layer in range(num_layers):
    choice_seed, sign_seed = tf.unstack(
        tf.random.experimental.stateless_split(seeds[layer], 2))
    choice = tf.random.stateless_uniform([], choice_seed, 0, len(OPERATIONS),
                                         dtype=tf.int32)
    sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
    branches = [
        (lambda op=op, signed=signed: op(image, level * sign if signed else
                                         tf.constant(level, tf.float32)))
        for op, signed in OPERATIONS
    ]
    image = tf.switch_case(choice, branches)
    image.set_shape([None, None, image.shape[-1]])
  return image
