"""RandAugment as the TensorFlow TPU reference that ResNet-RS trains with.

The reference is `distort_image_with_randaugment` in tensorflow/tpu
`models/official/efficientnet/autoaugment.py` (commit 7b3407e4, which
`models/official/resnet/resnet_preprocessing.py` imports for ResNet-RS).
Per layer it picks one of 16 operations uniformly and applies it, always
(it draws a probability in [0.2, 0.8) per operation but passes it to none
of them), with the magnitude M mapped per operation; Rotate, ShearX/Y and
TranslateX/Y take a random sign, the enhancement operations do not.
docs/training.md tables every mapping; this is our own code on the same
formulas.

The reference works on uint8 images and truncates to uint8 after each
operation. Here images are float32 holding whole grey levels in [0, 255]
(the pipeline rounds the image once before RandAugment), and each operation
returns whole grey levels exactly where the reference casts to uint8:
`_to_uint8` truncates as that cast does. Geometric operations sample the
nearest pixel and fill uncovered pixels with grey 128, as the reference's
`wrap`/`unwrap` around `tf.contrib.image` transforms does. Grayscale images
(C = 1) take the same formulas with the grey image as its own luminance.

Every operation has the signature `(image, magnitude, sign, seed)`:
`magnitude` is a Python float (the mappings' `int(...)` truncations happen
in Python, as in the reference), `sign` a float32 scalar ±1 and `seed` an
int64 [2] stateless seed (used by Cutout's position only).
"""

from __future__ import annotations

import math

import tensorflow as tf

from lambda_networks.data import augment_kernels as kernels

MAX_LEVEL = 10.0
TRANSLATE_CONST = 100.0  # Pixels moved at magnitude 10.
CUTOUT_CONST = 40  # Half the side of the cut square at magnitude 10.


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
  """The reference's cast to uint8 (truncation), kept in float32."""
  return tf.cast(tf.cast(image, tf.uint8), tf.float32)


def enhance_factor(magnitude: float) -> float:
  """Color/Contrast/Brightness/Sharpness blend factor: M/10·1.8 + 0.1."""
  return magnitude / MAX_LEVEL * 1.8 + 0.1


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
  """degenerate + factor·(image − degenerate), truncated (clipped if f > 1)."""
  if factor == 0.0:
    return degenerate
  if factor == 1.0:
    return image
  blended = degenerate + factor * (image - degenerate)
  if 0.0 < factor < 1.0:
    return _to_uint8(blended)
  return _to_uint8(tf.clip_by_value(blended, 0.0, 255.0))


def _luminance(image: tf.Tensor) -> tf.Tensor:
  """tf.image.rgb_to_grayscale on the uint8 image, [H, W, 1] (C = 1: itself)."""
  if image.shape[-1] == 1:
    return image
  return tf.cast(tf.image.rgb_to_grayscale(tf.cast(image, tf.uint8)),
                 tf.float32)


def _auto_contrast(image, magnitude, sign, seed):
  """Each channel stretched to [0, 255] (a constant channel stays)."""
  del magnitude, sign, seed
  low = tf.reduce_min(image, axis=[0, 1])
  high = tf.reduce_max(image, axis=[0, 1])
  stretch = high > low
  scale = tf.where(stretch, 255.0 / tf.where(stretch, high - low, 1.0), 1.0)
  offset = tf.where(stretch, -low * scale, 0.0)
  return _to_uint8(tf.clip_by_value(kernels.per_channel(image, scale, offset),
                                    0.0, 255.0))


def _equalize(image, magnitude, sign, seed):
  """PIL's ImageOps.equalize per channel, as the reference builds its table."""
  del magnitude, sign, seed
  values, histogram = kernels.channel_histograms(image)
  highest = tf.cast(tf.reduce_max(image, axis=[0, 1]), tf.int32)
  last_count = tf.gather(histogram, highest, batch_dims=1)
  total = tf.reduce_sum(histogram, axis=1)
  step = ((total - last_count) // 255)[:, None]
  safe_step = tf.maximum(step, 1)
  lookup = (tf.cumsum(histogram, axis=1) + safe_step // 2) // safe_step
  lookup = tf.clip_by_value(
      tf.concat([tf.zeros_like(lookup[:, :1]), lookup[:, :-1]], axis=1), 0, 255)
  # A channel whose step is 0 (nearly one value) stays as it is.
  lookup = tf.where(step > 0, lookup, tf.range(256)[None])
  return tf.cast(tf.gather(tf.reshape(lookup, [-1]), values), tf.float32)


def _invert(image, magnitude, sign, seed):
  del magnitude, sign, seed
  return 255.0 - image


def rotation_degrees(magnitude: float) -> float:
  return magnitude / MAX_LEVEL * 30.0


def _rotate(image, magnitude, sign, seed):
  """Counterclockwise by sign·M/10·30 degrees about the centre."""
  del seed
  radians = (rotation_degrees(magnitude) * sign) * (math.pi / 180.0)
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  cos, sin = tf.cos(radians), tf.sin(radians)
  x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
  y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
  return kernels.transform(
      image, tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0]),
      "NEAREST")


def posterize_bits(magnitude: float) -> int:
  return int(magnitude / MAX_LEVEL * 4)


def _posterize(image, magnitude, sign, seed):
  """Keeps the top int(M/10·4) bits: more bits, a weaker change, as M grows.

  The shift 8 − bits goes to TensorFlow's uint8 shifts as the reference
  passes it, which clamp it to [0, 7]: below M = 2.5 (0 bits) one bit stays.
  """
  del sign, seed
  shift = 8 - posterize_bits(magnitude)
  pixels = tf.cast(image, tf.uint8)
  return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift),
                                       shift), tf.float32)


def solarize_threshold(magnitude: float) -> int:
  """int(M/10·256) as a uint8, as the reference's comparison receives it.

  The reference compares its uint8 image with this Python int, which
  TensorFlow converts to uint8 modulo 256: M = 10 gives 256 → 0 (every
  pixel inverted), M = 15 gives 384 → 128.
  """
  return int(magnitude / MAX_LEVEL * 256) % 256


def _solarize(image, magnitude, sign, seed):
  """Pixels at or above the threshold inverted."""
  del sign, seed
  threshold = float(solarize_threshold(magnitude))
  return kernels.select(image < threshold, image, 255.0 - image)


def solarize_addition(magnitude: float) -> int:
  return int(magnitude / MAX_LEVEL * 110)


def _solarize_add(image, magnitude, sign, seed):
  """Pixels below 128 raised by int(M/10·110), clipped to 255."""
  del sign, seed
  added = tf.minimum(image + float(solarize_addition(magnitude)), 255.0)
  return kernels.select(image < 128.0, added, image)


def _color(image, magnitude, sign, seed):
  """Saturation: a blend with the grey image."""
  del sign, seed
  degenerate = _luminance(image)
  if image.shape[-1] != 1:
    degenerate = tf.image.grayscale_to_rgb(degenerate)
  return _blend(degenerate, image, enhance_factor(magnitude))


def contrast_grey(height: int | tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
  """The reference's contrast target: min(H·W/256, 255), truncated.

  It sums the grey histogram (the pixel count) where a mean grey level was
  meant, so the target depends on the image size, not its content: 196 at
  224 px, 100 at 160 px, 255 from 256 px.
  """
  count = tf.cast(height * width, tf.float32)
  return _to_uint8(tf.clip_by_value(count / 256.0, 0.0, 255.0))


def _contrast(image, magnitude, sign, seed):
  del sign, seed
  shape = tf.shape(image)
  degenerate = tf.fill(shape, contrast_grey(shape[0], shape[1]))
  return _blend(degenerate, image, enhance_factor(magnitude))


def _brightness(image, magnitude, sign, seed):
  del sign, seed
  return _blend(tf.zeros_like(image), image, enhance_factor(magnitude))


def _sharpness(image, magnitude, sign, seed):
  """A blend with the 3×3 smoothing (truncated), the border unsmoothed."""
  del sign, seed
  smooth = _to_uint8(kernels.smooth_interior(image))
  return _blend(kernels.with_border(smooth, image), image,
                enhance_factor(magnitude))


def shear_factor(magnitude: float) -> float:
  return magnitude / MAX_LEVEL * 0.3


def _shear_x(image, magnitude, sign, seed):
  """Output (x, y) samples input (x + sign·M/10·0.3·y, y)."""
  del seed
  shear = shear_factor(magnitude) * sign
  return kernels.transform(
      image, tf.stack([1.0, shear, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), "NEAREST")


def _shear_y(image, magnitude, sign, seed):
  del seed
  shear = shear_factor(magnitude) * sign
  return kernels.transform(
      image, tf.stack([1.0, 0.0, 0.0, shear, 1.0, 0.0, 0.0, 0.0]), "NEAREST")


def translate_pixels(magnitude: float) -> float:
  """M/10·100 pixels, whatever the image size."""
  return magnitude / MAX_LEVEL * TRANSLATE_CONST


def _translate_x(image, magnitude, sign, seed):
  """Output (x, y) samples input (x + sign·pixels, y): content moves left."""
  del seed
  return kernels.shift(image, -translate_pixels(magnitude) * sign, axis=1)


def _translate_y(image, magnitude, sign, seed):
  del seed
  return kernels.shift(image, -translate_pixels(magnitude) * sign, axis=0)


def cutout_half_size(magnitude: float) -> int:
  return int(magnitude / MAX_LEVEL * CUTOUT_CONST)


def cutout_at(image: tf.Tensor, half_size: int, center_y: tf.Tensor,
              center_x: tf.Tensor) -> tf.Tensor:
  """Grey 128 over rows [cy − h, cy + h) and columns [cx − h, cx + h)."""
  shape = tf.shape(image)
  rows = tf.range(shape[0])
  columns = tf.range(shape[1])
  inside = ((rows[:, None] >= center_y - half_size) &
            (rows[:, None] < center_y + half_size) &
            (columns[None] >= center_x - half_size) &
            (columns[None] < center_x + half_size))
  inside = tf.broadcast_to(inside[..., None], shape)
  return kernels.select(inside, tf.fill(shape, kernels.FILL_VALUE), image)


def _cutout(image, magnitude, sign, seed):
  """A square of side 2·int(M/10·40) at a uniform random centre, grey."""
  del sign
  shape = tf.shape(image)
  seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  center_y = tf.random.stateless_uniform([], seed_y, 0, shape[0], tf.int32)
  center_x = tf.random.stateless_uniform([], seed_x, 0, shape[1], tf.int32)
  return cutout_at(image, cutout_half_size(magnitude), center_y, center_x)


# In the reference's order (`available_ops`).
OPERATIONS = {
    "AutoContrast": _auto_contrast, "Equalize": _equalize, "Invert": _invert,
    "Rotate": _rotate, "Posterize": _posterize, "Solarize": _solarize,
    "Color": _color, "Contrast": _contrast, "Brightness": _brightness,
    "Sharpness": _sharpness, "ShearX": _shear_x, "ShearY": _shear_y,
    "TranslateX": _translate_x, "TranslateY": _translate_y,
    "Cutout": _cutout, "SolarizeAdd": _solarize_add,
}
