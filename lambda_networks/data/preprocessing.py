"""Per-example image preprocessing in TensorFlow (runs inside tf.data).

Training: inception-style random crop (decoded straight from the JPEG bytes
when the images are JPEGs) and bicubic resize or, for small images,
pad-and-random-crop; random flip, optional RandAugment. The per-example
result is uint8 and normalisation runs on the batch (`normalize_batch`),
which moves a quarter of the bytes through batching and vectorises the
per-channel arithmetic.
Evaluation: resize the shorter side to image_size / crop_fraction and take the
central image_size square. All randomness is stateless: it comes from a seed
per example, so a resumed run draws the same crops.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from lambda_networks.data import randaugment

ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)


def decode(encoded: tf.Tensor, channels: int) -> tf.Tensor:
  """Decodes JPEG/PNG/... bytes to uint8 [H, W, channels]."""
  return tf.io.decode_image(encoded, channels=channels, expand_animations=False)


def random_crop(encoded: tf.Tensor, seed: tf.Tensor, *, channels: int,
                min_area: float, is_jpeg: bool) -> tf.Tensor:
  """Inception-style crop: random area in [min_area, 1] and aspect in [3/4, 4/3]."""
  if is_jpeg:
    shape = tf.image.extract_jpeg_shape(encoded)
  else:
    image = decode(encoded, channels)
    shape = tf.shape(image)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
      seed=seed, min_object_covered=0.1, aspect_ratio_range=ASPECT_RATIO_RANGE,
      area_range=(min_area, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  if is_jpeg:
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=channels)
  return tf.slice(image, begin, size)


def center_crop(image: tf.Tensor, image_size: int, crop_fraction: float) -> tf.Tensor:
  """Resizes the shorter side to image_size / crop_fraction, crops the centre."""
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  scale = (image_size / crop_fraction) / tf.cast(tf.minimum(height, width), tf.float32)
  new_height = tf.maximum(image_size, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
  new_width = tf.maximum(image_size, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
  image = tf.image.resize(image, [new_height, new_width], method="bicubic",
                          antialias=True)
  top = (new_height - image_size) // 2
  left = (new_width - image_size) // 2
  return tf.slice(image, [top, left, 0], [image_size, image_size, -1])


def pad_and_crop(image: tf.Tensor, seed: tf.Tensor, *, image_size: int,
                 padding: int) -> tf.Tensor:
  """Small-image augmentation: `padding` zero pixels per side, random crop.

  The image is first brought to image_size as evaluation does (shorter side
  resized, centre crop), so train and eval views share one scale.
  """
  image = center_crop(image, image_size, 1.0)
  image = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
  return tf.image.stateless_random_crop(
      image, [image_size, image_size, tf.shape(image)[-1]], seed)


def normalize(image: tf.Tensor, mean: Sequence[float],
              stddev: Sequence[float]) -> tf.Tensor:
  """(image - mean) / stddev per channel; one averaged value for grayscale."""
  channels = image.shape[-1]
  mean = tf.constant(mean, tf.float32)
  stddev = tf.constant(stddev, tf.float32)
  if channels != mean.shape[0]:
    mean, stddev = tf.reduce_mean(mean), tf.reduce_mean(stddev)
  return (tf.cast(image, tf.float32) - mean) / stddev


def normalize_batch(images: tf.Tensor, mean: Sequence[float],
                    stddev: Sequence[float]) -> tf.Tensor:
  """`normalize` of a batch [B, H, W, C] with static H, W and C.

  Runs on rows of W·C values times a per-channel pattern tiled W times: a
  broadcast over a long inner axis vectorises, one over C = 3 does not
  (half the time of `normalize` on a batch of 224 px images).
  """
  batch, height, width, channels = images.shape
  mean = tf.constant(mean, tf.float32)
  stddev = tf.constant(stddev, tf.float32)
  if channels != mean.shape[0]:
    mean, stddev = tf.reduce_mean(mean)[None], tf.reduce_mean(stddev)[None]
  scale = tf.tile(tf.broadcast_to(1.0 / stddev, [channels]), [width])
  offset = tf.tile(tf.broadcast_to(mean / stddev, [channels]), [width])
  rows = tf.reshape(tf.cast(images, tf.float32), [-1, width * channels])
  return tf.reshape(rows * scale - offset,
                    [batch if batch is not None else -1, height, width,
                     channels])


def train_image_uint8(encoded: tf.Tensor, seed: tf.Tensor, *, image_size: int,
                      channels: int, min_area: float, is_jpeg: bool,
                      randaugment_layers: int,
                      randaugment_magnitude: float, crop: str = "inception",
                      crop_padding: int = 4,
                      randaugment_variant: str = "reference") -> tf.Tensor:
  """Training augmentation of one encoded image, before normalisation.

  `seed` is an int64 [2]. crop: "inception" (random area and aspect, then a
  bicubic resize without antialiasing, as the TensorFlow TPU ResNet /
  ResNet-RS preprocessing does: antialiasing cost more than the decode on
  500×375 JPEGs) or "pad" (`pad_and_crop` with crop_padding pixels).
  randaugment_variant: "reference" or "timm" (`randaugment.VARIANTS`). The
  result is rounded to uint8.
  """
  crop_seed, flip_seed, augment_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  if crop == "pad":
    image = pad_and_crop(decode(encoded, channels), crop_seed,
                         image_size=image_size, padding=crop_padding)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  else:
    image = random_crop(encoded, crop_seed, channels=channels,
                        min_area=min_area, is_jpeg=is_jpeg)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    image = tf.image.resize(image, [image_size, image_size], method="bicubic")
  image = tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0)
  if randaugment_magnitude > 0 and randaugment_layers > 0:
    image = randaugment.randaugment(image, augment_seed,
                                    num_layers=randaugment_layers,
                                    magnitude=randaugment_magnitude,
                                    variant=randaugment_variant)
  image = tf.cast(tf.round(image), tf.uint8)
  image.set_shape([image_size, image_size, channels])
  return image


def train_image(encoded: tf.Tensor, seed: tf.Tensor, *, image_size: int,
                channels: int, min_area: float, is_jpeg: bool,
                randaugment_layers: int, randaugment_magnitude: float,
                mean: Sequence[float], stddev: Sequence[float],
                crop: str = "inception", crop_padding: int = 4,
                randaugment_variant: str = "reference") -> tf.Tensor:
  """Training augmentation of one encoded image; `seed` is an int64 [2]."""
  image = train_image_uint8(
      encoded, seed, image_size=image_size, channels=channels,
      min_area=min_area, is_jpeg=is_jpeg,
      randaugment_layers=randaugment_layers,
      randaugment_magnitude=randaugment_magnitude, crop=crop,
      crop_padding=crop_padding, randaugment_variant=randaugment_variant)
  return normalize_batch(image[None], mean, stddev)[0]


def eval_image(encoded: tf.Tensor, *, image_size: int, channels: int,
               crop_fraction: float, mean: Sequence[float],
               stddev: Sequence[float]) -> tf.Tensor:
  """Deterministic evaluation view of one encoded image."""
  image = center_crop(decode(encoded, channels), image_size, crop_fraction)
  image = normalize(image, mean, stddev)
  image.set_shape([image_size, image_size, channels])
  return image
