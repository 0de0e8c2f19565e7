"""Per-example preprocessing and its batched normalisation."""

import numpy as np
import pytest
import tensorflow as tf

from lambda_networks.data import preprocessing

MEAN, STDDEV = (123.7, 116.3, 103.5), (58.4, 57.1, 57.4)


@pytest.mark.parametrize("channels", [1, 3])
def test_batched_normalisation_equals_per_image(channels):
  images = np.random.default_rng(0).integers(0, 256, (4, 5, 6, channels),
                                              dtype=np.uint8)
  batched = preprocessing.normalize_batch(tf.constant(images), MEAN, STDDEV)
  for image, normalised in zip(images, batched.numpy()):
    expected = preprocessing.normalize(tf.constant(image), MEAN, STDDEV)
    np.testing.assert_allclose(normalised, expected, rtol=1e-5, atol=1e-5)


def test_training_view_is_deterministic_uint8_of_the_right_size():
  image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), np.uint8)
  encoded = tf.io.encode_jpeg(image)
  views = {}
  for seed in range(4):
    # "timm": the reference's translations of 150 px leave a 24 px image grey.
    kwargs = dict(image_size=24, channels=3, min_area=0.08, is_jpeg=True,
                  randaugment_layers=2, randaugment_magnitude=15.0,
                  randaugment_variant="timm")
    view = preprocessing.train_image_uint8(
        encoded, tf.constant([seed, 9], tf.int64), **kwargs).numpy()
    again = preprocessing.train_image_uint8(
        encoded, tf.constant([seed, 9], tf.int64), **kwargs).numpy()
    np.testing.assert_array_equal(view, again)
    assert view.dtype == np.uint8 and view.shape == (24, 24, 3)
    views[seed] = view.tobytes()
  assert len(set(views.values())) == 4  # The seed changes crop and augment.
  full = preprocessing.train_image(
      encoded, tf.constant([0, 9], tf.int64), **kwargs, mean=MEAN,
      stddev=STDDEV).numpy()
  np.testing.assert_allclose(
      full, preprocessing.normalize(tf.constant(np.frombuffer(
          views[0], np.uint8).reshape(24, 24, 3)), MEAN, STDDEV), atol=1e-5)
