"""Runs a script under `tfds.testing.mock_data` with honest split metadata.

    python tests/tfds_mock.py DATA_DIR NUM_TRAIN NUM_EVAL script.py [args...]

(split sizes are written to DATA_DIR unless it already holds them).

The dataset is imagenet2012 as TFDS describes it (JPEG images, 1000
classes), with fake split sizes written to DATA_DIR. Records are made up by
`as_dataset`, which honours split slices (so per-host shards and eval
padding are exercised for real): example i of a split has label i % 1000
and a JPEG image whose pixels depend on i (or, with IDENTICAL_IMAGES set,
the image of example 0 for every i). RECORDS_READ counts the records that
pipelines have pulled from the datasets it returns.
"""

from __future__ import annotations

import pathlib
import runpy
import sys
from unittest import mock

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

DATASET = "imagenet2012"
IMAGE_SHAPE = (40, 48, 3)
IDENTICAL_IMAGES = False  # Every example gets example 0's image.
RECORDS_READ = tf.Variable(0, dtype=tf.int64, trainable=False)


def write_metadata(data_dir: str, num_train: int, num_eval: int) -> None:
  """Writes dataset_info.json with the given split sizes (no records)."""
  builder = tfds.builder(DATASET, data_dir=data_dir)
  splits = [
      tfds.core.SplitInfo(name=name, shard_lengths=[count], num_bytes=0,
                          filename_template=tfds.core.ShardedFileTemplate(
                              data_dir=builder.data_path, template="{SPLIT}",
                              dataset_name=DATASET, split=name,
                              filetype_suffix="tfrecord"))
      for name, count in (("train", num_train), ("validation", num_eval))
  ]
  builder.info.set_splits(tfds.core.SplitDict(splits))
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)


def _example(index: int) -> tuple[bytes, int]:
  rng = np.random.default_rng(index)
  image = rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
  return tf.io.encode_jpeg(image).numpy(), index % 1000


def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  """Examples [skip, skip + take) of the split, as a real reader would give."""
  del read_config
  instructions = self.info.splits[split].file_instructions
  indices = []
  for instruction in instructions:
    indices.extend(range(instruction.skip, instruction.skip + instruction.take))
  if shuffle_files:
    pass  # One file per split: nothing to shuffle.
  images, labels = zip(*[_example(i) for i in indices]) if indices else ((), ())
  if IDENTICAL_IMAGES:
    images = [_example(0)[0]] * len(indices)
  ds = tf.data.Dataset.from_tensor_slices({
      "image": tf.constant(list(images), tf.string),
      "label": tf.constant(list(labels), tf.int64)})

  def count(example):
    with tf.control_dependencies([RECORDS_READ.assign_add(1)]):
      return tf.nest.map_structure(tf.identity, example)

  ds = ds.map(count)
  skip_decoding = decoders and isinstance(decoders.get("image"),
                                          tfds.decode.SkipDecoding)
  if not skip_decoding:
    ds = ds.map(lambda ex: {**ex, "image": tf.io.decode_jpeg(ex["image"], 3)})
  return ds


class _RealFileSystem:
  """Stands in for TFDS's MockFs, which mock_data enters around every
  as_dataset call. MockFs redirects *all* file access, including that of
  Orbax's background threads at that moment; with USE_FILES the metadata is
  real, so nothing needs redirecting."""

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    return False

  def add_file(self, *args, **kwargs):
    del args, kwargs


def main():
  data_dir, num_train, num_eval, script, *args = sys.argv[1:]
  if not list(pathlib.Path(data_dir).glob(f"{DATASET}/*/dataset_info.json")):
    # Processes that share a data_dir find it written (by the test, first).
    write_metadata(data_dir, int(num_train), int(num_eval))
  sys.argv = [script, *args]
  with tfds.testing.mock_data(data_dir=data_dir, as_dataset_fn=as_dataset,
                              policy=tfds.testing.MockPolicy.USE_FILES), \
      mock.patch("tensorflow_datasets.testing.test_utils.MockFs", _RealFileSystem):
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
  main()
