"""Tests of lambda_networks.data.statistics on a mock TFDS dataset."""

import types

import numpy as np
import pytest
import tensorflow as tf

import tfds_mock
from lambda_networks.data import statistics
from lambda_networks.data import tfds_source


@pytest.fixture(scope="module")
def imagenet_builder(mock_imagenet):
  return tfds_source.load_builder("imagenet2012", "", mock_imagenet)


def test_channel_statistics_match_numpy(imagenet_builder):
  mean, stddev = statistics.channel_statistics(imagenet_builder, "train", "image",
                                               max_examples=12)
  images = np.stack([
      tf.io.decode_jpeg(tfds_mock._example(i)[0], 3).numpy()  # pylint: disable=protected-access
      for i in range(12)]).astype(np.float64)
  np.testing.assert_allclose(mean, images.mean(axis=(0, 1, 2)), atol=1e-4)
  np.testing.assert_allclose(stddev, images.std(axis=(0, 1, 2)), atol=1e-4)
  assert len(mean) == len(stddev) == 3
  # Deterministic (first examples in file order), and a limit that counts.
  assert statistics.channel_statistics(imagenet_builder, "train", "image", 12) == (
      mean, stddev)
  assert statistics.channel_statistics(imagenet_builder, "train", "image", 3)[0] != mean


def test_eval_split_and_image_size_come_from_the_dataset(imagenet_builder):
  assert statistics.default_eval_split(imagenet_builder) == "validation"

  def fake(splits):
    return types.SimpleNamespace(info=types.SimpleNamespace(
        splits={name: None for name in splits}, full_name="fake/1.0.0"))

  assert statistics.default_eval_split(fake(["train", "test"])) == "test"
  with pytest.raises(ValueError, match="neither a 'validation' nor a 'test'"):
    statistics.default_eval_split(fake(["train"]))
  with pytest.raises(ValueError, match="varying size"):
    statistics.image_size(imagenet_builder, "image")  # ImageNet: (None, None, 3).
