"""Fast image kernels shared by the RandAugment variants (one CPU core each).

Images are float32 [H, W, C] in [0, 255]. Each kernel is an exact
reformulation of a slower general TensorFlow op (tests/test_randaugment.py
compares them): the per-image host cost decides how many cores an
ImageNet run needs to feed its accelerators.
"""

from __future__ import annotations

import tensorflow as tf

FILL_VALUE = 128.0  # Grey for pixels that a geometric operation uncovers.


def select(condition: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  """Elementwise `condition ? x : y` for tensors of one shape.

  The non-broadcasting Select kernel: tf.where (SelectV2) takes a
  broadcasting path that costs about 1 ms on a 224² RGB image on one core,
  against under 0.1 ms.
  """
  return tf.raw_ops.Select(condition=condition, x=x, y=y)


def per_channel(image: tf.Tensor, scale: tf.Tensor | None,
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


def channel_histograms(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(values + 256·channel as int32 [H, W, C], histograms int32 [C, 256]).

  One bincount for all channels; `tf.gather(lookup.reshape(-1), values)`
  then maps every channel through its own 256-entry table.
  """
  channels = tf.shape(image)[-1]
  values = per_channel(tf.cast(image, tf.int32), None, tf.range(channels) * 256)
  histogram = tf.reshape(tf.math.bincount(tf.reshape(values, [-1]),
                                          minlength=256 * channels,
                                          maxlength=256 * channels),
                         [channels, 256])
  return values, histogram


def smooth_interior(image: tf.Tensor) -> tf.Tensor:
  """The 3×3 smoothing [[1,1,1],[1,5,1],[1,1,1]] / 13 of the inner pixels.

  [H-2, W-2, C], from sums of shifted slices instead of a depthwise
  convolution; on integer-valued images the sum is exact before the one
  division.
  """
  rows = image[:-2] + image[1:-1] + image[2:]
  inner = image[1:-1, 1:-1]
  return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:] + 4.0 * inner) / 13.0


def with_border(inner: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
  """`inner` [H-2, W-2, C] framed by the one-pixel border of `image`."""
  middle = tf.concat([image[1:-1, :1], inner, image[1:-1, -1:]], axis=1)
  return tf.concat([image[:1], middle, image[-1:]], axis=0)


def transform(image: tf.Tensor, matrix: tf.Tensor,
              interpolation: str = "BILINEAR") -> tf.Tensor:
  """Projective transform [a0 a1 a2 b0 b1 b2 c0 c1] (output→input), grey fill."""
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.cast(matrix, tf.float32)[None],
      output_shape=tf.shape(image)[:2], fill_value=FILL_VALUE,
      interpolation=interpolation, fill_mode="CONSTANT")
  return out[0]


def shift(image: tf.Tensor, pixels: tf.Tensor, axis: int) -> tf.Tensor:
  """Moves the image by `pixels` (rounded) along axis 0 or 1, filling with 128.

  What a translation through a nearest-neighbour transform gives, as a
  slice and a pad instead of a resampling kernel.
  """
  size = tf.shape(image)[axis]
  offset = tf.clip_by_value(tf.cast(tf.round(pixels), tf.int32), -size, size)
  kept = size - tf.abs(offset)
  begin = tf.maximum(-offset, 0)
  slice_begin = tf.tensor_scatter_nd_update(tf.zeros([3], tf.int32),
                                            [[axis]], [begin])
  slice_size = tf.tensor_scatter_nd_update(tf.constant([-1, -1, -1]),
                                           [[axis]], [kept])
  kept_part = tf.slice(image, slice_begin, slice_size)
  before, after = tf.maximum(offset, 0), tf.maximum(-offset, 0)
  paddings = tf.tensor_scatter_nd_update(tf.zeros([3, 2], tf.int32), [[axis]],
                                         [tf.stack([before, after])])
  return tf.pad(kept_part, paddings, constant_values=FILL_VALUE)
