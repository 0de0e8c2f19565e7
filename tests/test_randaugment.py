"""RandAugment: the "timm" variant's faster operations against the
formulations they replaced; the "reference" variant against a transcription
of the TensorFlow TPU reference (tensorflow/tpu
models/official/efficientnet/autoaugment.py, commit 7b3407e4), operation by
operation, on fixed uint8 images (values), with the magnitude directions; the
driver's draws and determinism for both."""

import math

import numpy as np
import pytest
import tensorflow as tf

from configs import default
from lambda_networks import data
from lambda_networks.data import preprocessing
from lambda_networks.data import randaugment
from lambda_networks.data import randaugment_reference as reference
from lambda_networks.data import randaugment_timm as timm
from lambda_networks.errors import UserError
from lambda_networks.train import config_checks


def _image(channels, seed=0, size=(20, 24), noise=8.0, step=4):
  """A smooth-ish float image in [0, 255] (not rounded, as after resizing)."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (size[0] // step + 1, size[1] // step + 1, channels))
  image = tf.image.resize(coarse[None], size, method="bilinear")[0]
  noise = rng.uniform(-noise, noise, (*size, channels))
  return tf.constant(np.clip(image.numpy() + noise, 0, 255), tf.float32)


def _transform_reference(image, matrix, interpolation):
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.constant([matrix], tf.float32),
      output_shape=tf.shape(image)[:2], fill_value=128.0,
      interpolation=interpolation, fill_mode="CONSTANT")[0]


def _equalize_reference(image):
  """The per-channel loop equalisation (bincount, cdf, gather per channel)."""
  def one_channel(channel):
    values = tf.cast(channel, tf.int32)
    histogram = tf.math.bincount(tf.reshape(values, [-1]), minlength=256,
                                 maxlength=256)
    cdf = tf.cumsum(histogram)
    cdf_min = tf.reduce_min(tf.boolean_mask(cdf, cdf > 0))
    total = tf.size(values)
    lookup = tf.clip_by_value(tf.round(
        tf.cast(cdf - cdf_min, tf.float32) * 255.0 /
        tf.cast(tf.maximum(total - cdf_min, 1), tf.float32)), 0.0, 255.0)
    return tf.where(total - cdf_min > 0, tf.gather(lookup, values), channel)
  return tf.stack([one_channel(c) for c in tf.unstack(image, axis=-1)], -1)


def _sharpness_reference(image, level):
  """Depthwise 3×3 convolution, border kept through a mask."""
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  channels = image.shape[-1]
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
  smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "SAME")[0]
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  inner = tf.pad(tf.ones([height - 2, width - 2, channels]),
                 [[1, 1], [1, 1], [0, 0]])
  smooth = inner * smooth + (1.0 - inner) * image
  factor = 1.0 + level * 0.9
  return tf.clip_by_value(smooth + factor * (image - smooth), 0.0, 255.0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("level", [-1.5, -0.5, 0.3, 1.0])
def test_sharpness_equals_the_convolution(channels, level):
  image = _image(channels)
  np.testing.assert_allclose(
      timm._sharpness(image, tf.constant(level)),
      _sharpness_reference(image, level), atol=1e-3)  # float32 summation order


@pytest.mark.parametrize("channels", [1, 3])
def test_equalize_equals_the_per_channel_loop(channels):
  image = _image(channels)
  constant = tf.concat([image[..., :1] * 0 + 77.0, image[..., 1:]], -1)
  for case in (image, tf.round(image), constant):
    new = timm._equalize(case, None).numpy()
    old = _equalize_reference(case).numpy()
    # Equal up to a one-valued channel, which the old code left unrounded
    # and the new maps through the identity table of its integer part.
    np.testing.assert_allclose(new, old, atol=1.0)
    assert np.mean(new == old) > 0.99 or np.all(np.floor(old) == new)


@pytest.mark.parametrize("level", [-1.5, -0.7, -0.1, 0.0, 0.2, 0.55, 1.5])
@pytest.mark.parametrize("axis", [0, 1])
def test_translation_equals_a_nearest_neighbour_transform(level, axis):
  image = _image(3, seed=1)
  size = image.shape[axis]
  pixels = level * 0.45 * size
  if abs(pixels - math.floor(pixels) - 0.5) < 1e-3:
    pytest.skip("rounding of a half pixel is kernel-specific")
  op = timm._translate_x if axis == 1 else timm._translate_y
  matrix = ([1, 0, -pixels, 0, 1, 0, 0, 0] if axis == 1
            else [1, 0, 0, 0, 1, -pixels, 0, 0])
  np.testing.assert_array_equal(
      op(image, tf.constant(level)),
      _transform_reference(image, matrix, "NEAREST"))


@pytest.mark.parametrize("op", [timm._rotate, timm._shear_x,
                                timm._shear_y, timm._translate_x,
                                timm._translate_y])
@pytest.mark.parametrize("level", [-1.0, 0.4])
def test_geometric_operations_stay_close_to_the_bilinear_version(op, level):
  """Against the bilinear transforms (translations now sample the nearest
  pixel, as the TPU reference does; rotations and shears are still bilinear).

  Tolerance: mean absolute difference under 4 grey levels on a smooth image
  (features 12 px wide, ±2 noise; sampling positions move by at most half a
  pixel).
  """
  image = _image(3, seed=2, size=(40, 48), noise=2.0, step=12)
  height, width = image.shape[:2]
  level_t = tf.constant(level)
  if op is timm._rotate:
    angle = level * 30.0 * math.pi / 180.0
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = [cos, -sin, ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2,
              sin, cos, ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2,
              0, 0]
  elif op is timm._shear_x:
    matrix = [1, level * 0.3, 0, 0, 1, 0, 0, 0]
  elif op is timm._shear_y:
    matrix = [1, 0, 0, level * 0.3, 1, 0, 0, 0]
  elif op is timm._translate_x:
    matrix = [1, 0, -level * 0.45 * width, 0, 1, 0, 0, 0]
  else:
    matrix = [1, 0, 0, 0, 1, -level * 0.45 * height, 0, 0]
  new = op(image, level_t).numpy()
  old = _transform_reference(image, matrix, "BILINEAR").numpy()
  assert new.shape == old.shape
  assert np.mean(np.abs(new - old)) < 4.0


@pytest.mark.parametrize("channels", [1, 3])
def test_point_operations_equal_their_broadcasting_versions(channels):
  image = _image(channels, seed=3)
  low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
  high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
  auto_contrast = tf.clip_by_value((image - low) * (255.0 / (high - low)),
                                   0.0, 255.0)
  np.testing.assert_allclose(timm._auto_contrast(image, None),
                             auto_contrast, atol=1e-3)
  flat = tf.concat([image[..., :1] * 0 + 9.0, image[..., 1:]], -1)
  np.testing.assert_array_equal(timm._auto_contrast(flat, None)[..., 0],
                                flat[..., 0])  # A flat channel stays.
  for level in (0.2, 0.9):
    threshold = 256.0 - level * 256.0
    np.testing.assert_array_equal(
        timm._solarize(image, tf.constant(level)),
        tf.where(image < threshold, image, 255.0 - image))
    np.testing.assert_array_equal(
        timm._solarize_add(image, tf.constant(level)),
        tf.where(image < 128.0,
                 tf.clip_by_value(image + level * 110.0, 0.0, 255.0), image))


# The TPU reference, transcribed to TensorFlow 2 on uint8 images: its formulas
# and its `wrap`/`unwrap` around nearest-neighbour transforms with fill 0.

def _uint8_image(channels=3, seed=0, size=(20, 24), low=0, high=256):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.integers(low, high, (*size, channels)), tf.uint8)


def _ref_blend(image1, image2, factor):
  if factor == 0.0:
    return tf.convert_to_tensor(image1)
  if factor == 1.0:
    return tf.convert_to_tensor(image2)
  image1 = tf.cast(image1, tf.float32)
  image2 = tf.cast(image2, tf.float32)
  temp = image1 + factor * (image2 - image1)
  if 0.0 < factor < 1.0:
    return tf.cast(temp, tf.uint8)
  return tf.cast(tf.clip_by_value(temp, 0.0, 255.0), tf.uint8)


def _ref_wrapped_transform(image, transform):
  """contrib_image.transform(wrap(image)) then unwrap(…, [128]*3)."""
  shape = tf.shape(image)
  wrapped = tf.concat([image, tf.ones([shape[0], shape[1], 1], image.dtype)], 2)
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(wrapped, tf.float32)[None],
      transforms=tf.reshape(tf.cast(transform, tf.float32), [1, 8]),
      output_shape=shape[:2], fill_value=0.0, interpolation="NEAREST",
      fill_mode="CONSTANT")[0]
  out = tf.cast(out, image.dtype)
  flat = tf.reshape(out, [-1, 4])
  replace = tf.constant([128, 128, 128, 1], image.dtype)
  flat = tf.where(tf.equal(flat[:, 3:], 0), tf.ones_like(flat) * replace, flat)
  return tf.reshape(flat, tf.shape(out))[:, :, :3]


def _ref_autocontrast(image):
  def scale_channel(channel):
    lo = tf.cast(tf.reduce_min(channel), tf.float32)
    hi = tf.cast(tf.reduce_max(channel), tf.float32)
    def scale_values(im):
      scale = 255.0 / (hi - lo)
      offset = -lo * scale
      im = tf.cast(im, tf.float32) * scale + offset
      return tf.cast(tf.clip_by_value(im, 0.0, 255.0), tf.uint8)
    return tf.cond(hi > lo, lambda: scale_values(channel), lambda: channel)
  return tf.stack([scale_channel(image[:, :, c]) for c in range(3)], 2)


def _ref_equalize(image):
  def scale_channel(im, c):
    im = tf.cast(im[:, :, c], tf.int32)
    histo = tf.histogram_fixed_width(im, [0, 255], nbins=256)
    nonzero = tf.where(tf.not_equal(histo, 0))
    nonzero_histo = tf.reshape(tf.gather(histo, nonzero), [-1])
    step = (tf.reduce_sum(nonzero_histo) - nonzero_histo[-1]) // 255
    def build_lut(histo, step):
      lut = (tf.cumsum(histo) + (step // 2)) // step
      lut = tf.concat([[0], lut[:-1]], 0)
      return tf.clip_by_value(lut, 0, 255)
    result = tf.cond(tf.equal(step, 0), lambda: im,
                     lambda: tf.gather(build_lut(histo, step), im))
    return tf.cast(result, tf.uint8)
  return tf.stack([scale_channel(image, c) for c in range(3)], 2)


def _ref_sharpness(image, factor):
  orig_image = image
  image = tf.cast(image, tf.float32)[None]
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=tf.float32,
                       shape=[3, 3, 1, 1]) / 13.
  kernel = tf.tile(kernel, [1, 1, 3, 1])
  degenerate = tf.nn.depthwise_conv2d(image, kernel, [1, 1, 1, 1],
                                      padding="VALID")
  degenerate = tf.clip_by_value(degenerate, 0.0, 255.0)
  degenerate = tf.squeeze(tf.cast(degenerate, tf.uint8), [0])
  mask = tf.pad(tf.ones_like(degenerate), [[1, 1], [1, 1], [0, 0]])
  padded_degenerate = tf.pad(degenerate, [[1, 1], [1, 1], [0, 0]])
  result = tf.where(tf.equal(mask, 1), padded_degenerate, orig_image)
  return _ref_blend(result, orig_image, factor)


def _ref_contrast(image, factor):
  degenerate = tf.cast(tf.image.rgb_to_grayscale(image), tf.int32)
  hist = tf.histogram_fixed_width(degenerate, [0, 255], nbins=256)
  mean = tf.reduce_sum(tf.cast(hist, tf.float32)) / 256.0
  degenerate = tf.ones_like(degenerate, dtype=tf.float32) * mean
  degenerate = tf.clip_by_value(degenerate, 0.0, 255.0)
  degenerate = tf.image.grayscale_to_rgb(tf.cast(degenerate, tf.uint8))
  return _ref_blend(degenerate, image, factor)


def _ref_rotate(image, degrees):
  radians = tf.constant(degrees, tf.float32) * (math.pi / 180.0)
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  x_offset = ((width - 1) - (tf.cos(radians) * (width - 1) -
                             tf.sin(radians) * (height - 1))) / 2.0
  y_offset = ((height - 1) - (tf.sin(radians) * (width - 1) +
                              tf.cos(radians) * (height - 1))) / 2.0
  return _ref_wrapped_transform(image, tf.stack(
      [tf.cos(radians), -tf.sin(radians), x_offset, tf.sin(radians),
       tf.cos(radians), y_offset, 0.0, 0.0]))


def _ref_cutout(image, pad_size, center_height, center_width, replace=128):
  image_height, image_width = image.shape[0], image.shape[1]
  lower_pad = max(0, center_height - pad_size)
  upper_pad = max(0, image_height - center_height - pad_size)
  left_pad = max(0, center_width - pad_size)
  right_pad = max(0, image_width - center_width - pad_size)
  cutout_shape = [image_height - (lower_pad + upper_pad),
                  image_width - (left_pad + right_pad)]
  mask = tf.pad(tf.zeros(cutout_shape, dtype=image.dtype),
                [[lower_pad, upper_pad], [left_pad, right_pad]],
                constant_values=1)
  mask = tf.tile(mask[..., None], [1, 1, 3])
  return tf.where(tf.equal(mask, 0),
                  tf.ones_like(image, dtype=image.dtype) * replace, image)


def _reference_op(name, image, magnitude, sign):
  """The reference's operation `name` with its level_to_arg, sign fixed."""
  level = magnitude / 10.0
  enhance = level * 1.8 + 0.1
  if name == "AutoContrast":
    return _ref_autocontrast(image)
  if name == "Equalize":
    return _ref_equalize(image)
  if name == "Invert":
    return 255 - image
  if name == "Rotate":
    return _ref_rotate(image, level * 30.0 * sign)
  if name == "Posterize":
    shift = 8 - int(level * 4)
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)
  if name == "Solarize":
    return tf.where(image < int(level * 256), image, 255 - image)
  if name == "SolarizeAdd":
    added = tf.cast(image, tf.int64) + int(level * 110)
    added = tf.cast(tf.clip_by_value(added, 0, 255), tf.uint8)
    return tf.where(image < 128, added, image)
  if name == "Color":
    degenerate = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    return _ref_blend(degenerate, image, enhance)
  if name == "Contrast":
    return _ref_contrast(image, enhance)
  if name == "Brightness":
    return _ref_blend(tf.zeros_like(image), image, enhance)
  if name == "Sharpness":
    return _ref_sharpness(image, enhance)
  if name == "ShearX":
    return _ref_wrapped_transform(
        image, [1., level * 0.3 * sign, 0., 0., 1., 0., 0., 0.])
  if name == "ShearY":
    return _ref_wrapped_transform(
        image, [1., 0., 0., level * 0.3 * sign, 1., 0., 0., 0.])
  pixels = level * 100.0 * sign  # translate_const=100
  if name == "TranslateX":  # contrib translate([-pixels, 0]).
    return _ref_wrapped_transform(image, [1., 0., pixels, 0., 1., 0., 0., 0.])
  if name == "TranslateY":
    return _ref_wrapped_transform(image, [1., 0., 0., 0., 1., pixels, 0., 0.])
  raise KeyError(name)


def _ours(name, image, magnitude, sign, seed=(1, 2)):
  out = reference.OPERATIONS[name](
      tf.cast(image, tf.float32), magnitude, tf.constant(float(sign)),
      tf.constant(seed, tf.int64))
  values = out.numpy()
  np.testing.assert_array_equal(values, np.round(values))  # Whole grey levels.
  return values


_IMAGES = {  # Fixed uint8 test images, 20×24 and 130×150 (translations of 100).
    "noise": lambda: _uint8_image(seed=0),
    "narrow": lambda: _uint8_image(seed=1, low=60, high=140),  # Low contrast.
    "flat_red": lambda: tf.concat([tf.fill([20, 24, 1], tf.constant(9, tf.uint8)),
                                   _uint8_image(seed=2)[..., 1:]], -1),
    "large": lambda: _uint8_image(seed=3, size=(130, 150)),
}
_EXACT = [name for name in reference.OPERATIONS
          if name not in ("Sharpness", "Cutout")]


@pytest.mark.parametrize("name", _EXACT)
@pytest.mark.parametrize("magnitude", [1.0, 4.0, 5.0, 9.0, 10.0, 15.0])
def test_reference_operation_equals_the_transcription(name, magnitude):
  for image_name, make in _IMAGES.items():
    if image_name == "large" and not name.startswith("Translate"):
      continue
    image = make()
    for sign in (1.0, -1.0):
      np.testing.assert_array_equal(
          _ours(name, image, magnitude, sign),
          _reference_op(name, image, magnitude, sign).numpy().astype(np.float32),
          err_msg=f"{name} M={magnitude} sign={sign} on {image_name}")


@pytest.mark.parametrize("magnitude", [1.0, 5.0, 9.0, 10.0, 15.0])
def test_reference_sharpness_equals_the_transcription(magnitude):
  """Exactly the reference's formula with the 3×3 sum taken in integers; its
  float32 convolution can land one grey level lower where the sum is a
  multiple of 13, which the blend by factor f moves by |f − 1| (+1 for the
  truncation): against it, within that, almost everywhere equal."""
  image = _uint8_image(seed=4)
  ours = _ours("Sharpness", image, magnitude, 1.0)
  pixels = image.numpy().astype(np.int64)
  padded = np.pad(pixels, [(1, 1), (1, 1), (0, 0)])
  sums = sum(padded[dy:dy + 20, dx:dx + 24] for dy in range(3) for dx in range(3))
  smooth = (sums + 4 * pixels) // 13  # Kernel [[1,1,1],[1,5,1],[1,1,1]] / 13.
  smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = (
      pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1])
  expected = _ref_blend(tf.constant(smooth, tf.uint8), image,
                        magnitude / 10 * 1.8 + 0.1).numpy()
  np.testing.assert_array_equal(ours, expected)
  transcribed = _reference_op("Sharpness", image, magnitude, 1.0).numpy()
  difference = np.abs(ours - transcribed)
  factor = magnitude / 10 * 1.8 + 0.1
  assert difference.max() <= abs(factor - 1) + 1
  assert np.mean(difference == 0) > 0.9


@pytest.mark.parametrize("magnitude", [1.0, 5.0, 10.0, 15.0])
def test_reference_cutout_equals_the_transcription(magnitude):
  image = _uint8_image(seed=5)
  half = int(magnitude / 10 * 40)
  for center in ((0, 0), (19, 23), (7, 11), (3, 20)):
    ours = reference.cutout_at(tf.cast(image, tf.float32), half, *center)
    np.testing.assert_array_equal(
        ours, _ref_cutout(image, half, *center).numpy().astype(np.float32))
  # The drawn centre is uniform over the image: every row and column occurs.
  centers = set()
  for seed in range(200):
    cut = _ours("Cutout", _uint8_image(seed=5, size=(6, 5)), 0.25, 1.0,
                seed=(seed, 9)) == 128
    rows, columns = np.nonzero(cut[..., 0])
    centers.add((rows.max(), columns.max()))  # h = int(0.25/10·40) = 1: cy.
  assert {row for row, _ in centers} == set(range(6))
  assert {column for _, column in centers} == set(range(5))


def test_reference_grayscale_images_take_every_operation():
  gray = _uint8_image(channels=1, seed=6)
  rgb = tf.tile(gray, [1, 1, 3])
  for name in reference.OPERATIONS:
    for magnitude in (5.0, 10.0):
      np.testing.assert_array_equal(
          _ours(name, gray, magnitude, -1.0)[..., 0],
          _ours(name, rgb, magnitude, -1.0)[..., 0],
          err_msg=name)  # A grey RGB image is its own luminance.


def _changed(name, image, magnitude, sign=1.0):
  return np.mean(_ours(name, image, magnitude, sign) != image.numpy())


def test_reference_magnitude_directions():
  """What a larger M does in the reference (docs/training.md's table)."""
  image = _uint8_image(seed=7, size=(40, 48))
  no_grey = tf.where(image == 128, tf.constant(127, tf.uint8), image)
  magnitudes = (2.5, 5.0, 7.5, 9.0)
  def increasing(values):
    return all(a < b for a, b in zip(values, values[1:]))
  def decreasing(values):
    return all(a > b for a, b in zip(values, values[1:]))
  # Geometric: larger M, more of the image moved out (grey 128 fill);
  # translations move M/10·100 px whatever the size (all of 48 px from M 4.8).
  for name in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"):
    for sign in (1.0, -1.0):
      filled = [np.mean(_ours(name, no_grey, m, sign) == 128)
                for m in ((0.5, 1.0, 2.0, 3.0) if name.startswith("Translate")
                          else magnitudes)]
      assert increasing(filled), (name, sign, filled)
  filled = [np.mean(_ours("Cutout", no_grey, m, 1.0) == 128)
            for m in (2.5, 5.0, 7.5, 10.0)]
  assert increasing(filled), filled  # The drawn centre is the same per seed.
  # Enhancements: factor 0.1 at M=0, 1 (no change) at M=5, 1.9 at M=10; no sign.
  assert reference.enhance_factor(5.0) == 1.0
  mean_brightness = [_ours("Brightness", image, m, -1.0).mean()
                     for m in (0.0, 2.5, 5.0, 7.5, 10.0)]
  assert increasing(mean_brightness), mean_brightness
  for name in ("Color", "Contrast", "Sharpness", "Brightness"):
    for sign in (1.0, -1.0):
      assert _changed(name, image, 5.0, sign) == 0.0
  narrow = _uint8_image(seed=7, size=(40, 48), low=100, high=140)  # No clipping.
  spread = [_ours("Contrast", narrow, m, 1.0).std() for m in (0.0, 2.5, 5.0, 7.5)]
  assert increasing(spread), spread
  saturation = [np.std(_ours("Color", narrow, m, 1.0), axis=-1).mean()
                for m in (0.0, 2.5, 7.5, 10.0)]
  assert increasing(saturation), saturation
  detail = [np.abs(np.diff(_ours("Sharpness", narrow, m, 1.0), axis=1)).mean()
            for m in (0.0, 2.5, 7.5, 10.0)]
  assert increasing(detail), detail  # Neighbour differences grow.
  # Posterize keeps int(M/10·4) bits: larger M, more grey levels kept.
  levels = [len(np.unique(_ours("Posterize", image, m, 1.0)))
            for m in (2.5, 5.0, 7.5, 10.0)]
  assert increasing(levels), levels
  # Solarize inverts from int(M/10·256) up: larger M, fewer pixels inverted,
  # until 256 wraps to 0 at M = 10 (all inverted) and 384 to 128 at M = 15.
  inverted = [_changed("Solarize", image, m) for m in (2.5, 5.0, 7.5, 9.5)]
  assert decreasing(inverted), inverted
  np.testing.assert_array_equal(_ours("Solarize", image, 10.0, 1.0),
                                255 - image.numpy())
  np.testing.assert_array_equal(_ours("Solarize", image, 15.0, 1.0),
                                _ours("Solarize", image, 5.0, 1.0))
  # SolarizeAdd: larger M, dark pixels raised further.
  raised = [_ours("SolarizeAdd", image, m, 1.0).mean() for m in magnitudes]
  assert increasing(raised), raised
  # The parameters themselves.
  assert [reference.rotation_degrees(m) for m in (5.0, 10.0, 15.0)] == [15.0, 30.0, 45.0]
  assert [reference.posterize_bits(m) for m in (5.0, 10.0, 15.0)] == [2, 4, 6]
  assert [reference.solarize_threshold(m) for m in (5.0, 10.0, 15.0)] == [128, 0, 128]
  assert [reference.translate_pixels(m) for m in (5.0, 10.0)] == [50.0, 100.0]
  assert [reference.cutout_half_size(m) for m in (5.0, 10.0, 15.0)] == [20, 40, 60]
  assert [int(reference.contrast_grey(s, s)) for s in (160, 224, 320)] == [100, 196, 255]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("variant", randaugment.VARIANTS)
def test_randaugment_is_deterministic_per_seed(channels, variant):
  image = tf.constant(np.random.default_rng(0).uniform(0, 255, (20, 24, channels)),
                      tf.float32)
  outputs = {}
  for seed in range(12):  # Enough seeds to pick most operations.
    out = randaugment.randaugment(image, tf.constant([seed, 5], tf.int64),
                                  num_layers=2, magnitude=10.0, variant=variant)
    again = randaugment.randaugment(image, tf.constant([seed, 5], tf.int64),
                                    num_layers=2, magnitude=10.0, variant=variant)
    np.testing.assert_array_equal(out.numpy(), again.numpy())
    assert out.shape == image.shape
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    outputs[seed] = out.numpy()
  assert len({o.tobytes() for o in outputs.values()}) > 6
  for op, signed in timm.OPERATIONS:  # Every operation runs.
    result = op(image, tf.constant(0.5))
    assert result.shape == image.shape


def test_reference_layers_apply_the_drawn_operations_always():
  """Each layer applies its drawn operation (no skip probability: the
  reference draws one but passes it to no operation); all 16 operations and
  both signs are drawn."""
  image = tf.cast(_uint8_image(seed=8), tf.float32)
  operations = list(reference.OPERATIONS.values())
  choices, signs = set(), set()
  for seed in range(40):
    seed = tf.constant([seed, 3], tf.int64)
    expected = image
    for choice, sign, operation_seed in randaugment.reference_draws(seed, 2):
      expected = operations[int(choice)](expected, 15.0, sign, operation_seed)
      choices.add(int(choice))
      signs.add(float(sign))
    np.testing.assert_array_equal(
        randaugment.randaugment(image, seed, num_layers=2, magnitude=15.0),
        expected)
  assert choices == set(range(16)) and signs == {-1.0, 1.0}


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="'rand-m9' is not one of"):
    randaugment.randaugment(tf.zeros([8, 8, 3]), tf.constant([0, 0], tf.int64),
                            num_layers=1, magnitude=9.0, variant="rand-m9")


@pytest.mark.parametrize("variant", randaugment.VARIANTS)
def test_training_view_applies_the_configured_variant(variant):
  """train_image_uint8 = its view without RandAugment, then `variant` with
  the example's augmentation seed (the third of its seed's split)."""
  image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), np.uint8)
  encoded = tf.io.encode_png(image)
  seed = tf.constant([4, 9], tf.int64)
  kwargs = dict(image_size=24, channels=3, min_area=0.08, is_jpeg=False,
                randaugment_layers=2)
  plain = preprocessing.train_image_uint8(encoded, seed, **kwargs,
                                          randaugment_magnitude=0.0)
  augmented = preprocessing.train_image_uint8(
      encoded, seed, **kwargs, randaugment_magnitude=15.0,
      randaugment_variant=variant)
  augment_seed = tf.random.experimental.stateless_split(seed, 3)[2]
  if variant == "reference":  # It starts from the rounded image.
    expected = randaugment.randaugment(
        tf.cast(plain, tf.float32), augment_seed, num_layers=2,
        magnitude=15.0, variant=variant)
    np.testing.assert_array_equal(augmented, expected.numpy().astype(np.uint8))
  other = preprocessing.train_image_uint8(
      encoded, seed, **kwargs, randaugment_magnitude=15.0,
      randaugment_variant=[v for v in randaugment.VARIANTS if v != variant][0])
  assert not np.array_equal(augmented, other)


def test_config_variant_reaches_the_training_batches(mock_imagenet):
  """config.randaugment_variant reaches the images of a TFDS source."""
  batches = {}
  for variant in (*randaugment.VARIANTS, "reference"):
    config = default.get_config()
    config.update(dataset="imagenet2012", data_dir=mock_imagenet,
                  image_size=24, global_batch_size=8, shuffle_buffer=4,
                  randaugment_magnitude=15.0, randaugment_variant=variant,
                  normalization_mean=(127.0,) * 3,
                  normalization_stddev=(60.0,) * 3)
    source = data.create_source(config, data.HostShard(0, 1))
    images = next(iter(source.train_batches(0, 1)))["image"]
    if variant in batches:
      np.testing.assert_array_equal(images, batches[variant])
    batches[variant] = images
  assert not np.array_equal(batches["reference"], batches["timm"])


def test_config_checks_know_the_variants():
  assert config_checks.RANDAUGMENT_VARIANTS == randaugment.VARIANTS
  config = default.get_config()
  config.randaugment_variant = "rand-m9"
  with pytest.raises(UserError, match=r"randaugment_variant='rand-m9' must be "
                     r"one of \('reference', 'timm'\)"):
    config_checks.check(config)
