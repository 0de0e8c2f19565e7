"""Any TFDS image-classification dataset as a `pipeline.Source` (tf.data).

Each host reads a contiguous 1/process_count slice of the split. Training
stream of a host: epoch e reads its slice with a file order and a shuffle
buffer seeded by (seed, e); examples are numbered within the epoch, and that
number seeds their augmentation. The stream from step s is therefore rebuilt
exactly by starting at the right epoch and skipping the examples already used
(before decoding, so skipping is cheap).

Which examples share a global batch depends on the number of hosts (each
host shuffles its own slice), so runs with different host counts see the same
data in a different order; the built-in synthetic source has no such
dependence. Mixing comes from a per-epoch file order plus a shuffle buffer of
config.shuffle_buffer examples (TFDS stores examples already shuffled).
"""

from __future__ import annotations

import difflib
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from lambda_networks.data import pipeline
from lambda_networks.data import preprocessing
from lambda_networks.errors import UserError

_MANUAL_DATASETS = ("imagenet2012", "imagenet2012_subset", "imagenet_v2")


def load_builder(name: str, version: str, data_dir: str | None):
  """Returns a prepared TFDS builder or raises an error that says how to prepare it."""
  full_name = f"{name}:{version}" if version else name
  try:
    builder = tfds.builder(full_name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    close = difflib.get_close_matches(name, tfds.list_builders(), n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise UserError(
        f"config.dataset={name!r} is not a TFDS dataset: {hint}The names are "
        "listed at https://www.tensorflow.org/datasets/catalog/overview (or use "
        "'synthetic_far_marks', the built-in task).") from None
  except AssertionError as error:  # TFDS's answer to an unknown version.
    raise UserError(f"config.dataset_version={version!r}: {error}") from None
  if not builder.is_prepared():
    root = builder.data_dir.split('/' + name)[0]
    command = (f"python -c \"import tensorflow_datasets as tfds; tfds.builder("
               f"'{full_name}', data_dir='{root}').download_and_prepare()\"")
    manual = ""
    if name in _MANUAL_DATASETS:
      manual = (" ImageNet needs its archives downloaded by hand first: put "
                "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
                "<data_dir>/downloads/manual/ (scripts/prepare_imagenet.sh does "
                "both steps).")
    raise FileNotFoundError(
        f"TFDS dataset {full_name!r} is not prepared in {builder.data_dir}. "
        f"Prepare it once with `{command}`, or point config.data_dir at the "
        f"directory that holds it.{manual}")
  return builder


class TfdsSource:
  """A TFDS dataset: per-host split slices, augmentation, padded evaluation."""

  def __init__(self, *, name: str, version: str, data_dir: str | None,
               train_split: str, eval_split: str, image_key: str,
               label_key: str, image_size: int, min_crop_area: float,
               eval_crop_fraction: float, randaugment_layers: int,
               randaugment_magnitude: float, mean: Sequence[float],
               stddev: Sequence[float], shuffle_buffer: int, seed: int,
               global_batch_size: int, eval_batch_size: int,
               shard: pipeline.HostShard, crop: str = "inception",
               crop_padding: int = 4, randaugment_variant: str = "reference"):
    self._builder = builder = load_builder(name, version, data_dir)
    features = builder.info.features
    for field, key, kind in (("image_key", image_key, tfds.features.Image),
                             ("label_key", label_key, tfds.features.ClassLabel)):
      if key not in features or not isinstance(features[key], kind):
        raise ValueError(
            f"config.{field}={key!r} is not a {kind.__name__} feature of "
            f"{name!r}; its features are {dict(features)}.")
    self._image_feature = features[image_key]
    channels = self._image_feature.shape[-1] or 3
    self._keys = (image_key, label_key)
    self._splits = (train_split, eval_split)
    num_train = self._num_examples(train_split, "train_split")
    num_eval = self._num_examples(eval_split, "eval_split")
    self.info = pipeline.DatasetInfo(
        name=name, num_classes=features[label_key].num_classes,
        image_shape=(image_size, image_size, channels),
        num_train_examples=num_train, num_eval_examples=num_eval)
    self._shard = shard
    self._local_batch = shard.local_batch_size(global_batch_size,
                                               "global_batch_size")
    self._local_eval_batch = shard.local_batch_size(eval_batch_size,
                                                     "eval_batch_size")
    self._seed = seed
    self._shuffle_buffer = shuffle_buffer
    is_jpeg = getattr(self._image_feature, "encoding_format", None) == "jpeg"
    self._train_kwargs = dict(
        image_size=image_size, channels=channels, min_area=min_crop_area,
        is_jpeg=is_jpeg, randaugment_layers=randaugment_layers,
        randaugment_magnitude=randaugment_magnitude, crop=crop,
        crop_padding=crop_padding, randaugment_variant=randaugment_variant)
    self._normalization = (tuple(mean), tuple(stddev))
    self._eval_kwargs = dict(image_size=image_size, channels=channels,
                             crop_fraction=eval_crop_fraction, mean=mean,
                             stddev=stddev)

  def _num_examples(self, split: str, field: str) -> int:
    try:
      return self._builder.info.splits[split].num_examples
    except (KeyError, ValueError) as error:
      raise ValueError(
          f"config.{field}={split!r} is not a split of "
          f"{self._builder.info.full_name}; its splits are "
          f"{list(self._builder.info.splits)} (slices like 'train[:90%]' "
          f"work too). ({error})") from None

  def _host_split(self, split: str) -> tuple[object, int]:
    """This host's even share of `split` and its number of examples."""
    host_split = tfds.even_splits(split, n=self._shard.process_count)[
        self._shard.process_index]
    return host_split, self._builder.info.splits[host_split].num_examples

  def _read(self, split: str, epoch: int | None) -> tf.data.Dataset:
    shuffle = epoch is not None
    read_config = tfds.ReadConfig(
        shuffle_seed=_mix(self._seed, epoch) if shuffle else None,
        interleave_cycle_length=16 if shuffle else 1)
    return self._builder.as_dataset(
        split=split, shuffle_files=shuffle, read_config=read_config,
        decoders={self._keys[0]: tfds.decode.SkipDecoding()})

  def train_batches(self, start_step: int,
                    num_steps: int) -> Iterator[pipeline.Batch]:
    host_split, host_examples = self._host_split(self._splits[0])
    if host_examples < self._local_batch:
      raise ValueError(
          f"This host's share of split {self._splits[0]!r} has {host_examples} "
          f"examples, fewer than one local batch ({self._local_batch}); lower "
          "config.global_batch_size or use a larger split.")
    first_epoch, skip = divmod(start_step * self._local_batch, host_examples)
    last_epoch = ((start_step + num_steps) * self._local_batch) // host_examples
    image_key, label_key = self._keys
    augment_base = tf.constant(_mix(self._seed, 1 << 30), tf.int64)

    def epoch_stream(epoch: int) -> tf.data.Dataset:
      ds = self._read(host_split, epoch)
      if self._shuffle_buffer > 1:
        ds = ds.shuffle(self._shuffle_buffer, seed=_mix(self._seed, epoch),
                        reshuffle_each_iteration=False)
      return ds.enumerate().map(
          lambda index, example: (tf.constant(epoch, tf.int64), index, example))

    def preprocess(epoch, index, example):
      seed = tf.stack([augment_base + epoch, index])
      image = preprocessing.train_image_uint8(example[image_key], seed,
                                              **self._train_kwargs)
      return {"image": image, "label": tf.cast(example[label_key], tf.int32)}

    def normalize(batch):
      return {**batch, "image": preprocessing.normalize_batch(
          batch["image"], *self._normalization)}

    ds = epoch_stream(first_epoch)
    for epoch in range(first_epoch + 1, last_epoch + 1):
      ds = ds.concatenate(epoch_stream(epoch))
    ds = ds.skip(skip)
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(self._local_batch, drop_remainder=True).take(num_steps)
    ds = ds.map(normalize, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return iter(tfds.as_numpy(ds.with_options(pipeline_options())))

  def num_eval_batches(self) -> int:
    return self._shard.num_eval_batches(self.info.num_eval_examples,
                                        self._local_eval_batch)

  def eval_batches(self) -> Iterator[pipeline.Batch]:
    host_split, _ = self._host_split(self._splits[1])
    image_key, label_key = self._keys
    ds = self._read(host_split, None)
    ds = ds.map(
        lambda example: {
            "image": preprocessing.eval_image(example[image_key],
                                              **self._eval_kwargs),
            "label": tf.cast(example[label_key], tf.int32),
            "mask": tf.constant(1.0, tf.float32)},
        num_parallel_calls=tf.data.AUTOTUNE)
    total = self.num_eval_batches() * self._local_eval_batch
    padding = tf.data.Dataset.from_tensors({
        "image": tf.zeros(self.info.image_shape, tf.float32),
        "label": tf.constant(0, tf.int32),
        "mask": tf.constant(0.0, tf.float32)}).repeat()
    ds = ds.concatenate(padding).take(total)
    ds = ds.batch(self._local_eval_batch, drop_remainder=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return iter(tfds.as_numpy(ds))


def pipeline_options() -> tf.data.Options:
  """tf.data options of the training stream.

  Order stays deterministic (exact resume). Each map call runs on one thread
  (parallelism comes from running many calls at once): small per-image ops
  split across threads cost more in hand-offs than they gain.
  """
  options = tf.data.Options()
  options.deterministic = True
  options.threading.max_intra_op_parallelism = 1
  return options


def _mix(seed: int, epoch: int) -> int:
  """A per-epoch seed that fits in int32/int64 everywhere it is used."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]) >> 1
