"""Any TFDS image-classification dataset as a `pipeline.Source` (tf.data).

Each host reads an even slice of the split (`tfds.even_splits`). Training
stream of a host, epoch e (`epoch_order`): the slice is cut into chunks of at
most config.shuffle_chunk consecutive examples of one file, the chunks are
read in an order seeded by (seed, e, host), and windows of at least
config.shuffle_buffer examples are shuffled completely, each by its own seed.
Each window is one `as_dataset` of TFDS split slices (file instructions:
skips happen within one file only); the next two windows are read ahead so
that their shuffle buffers fill while the current one is used. A stream that
starts at step s builds the epoch it falls in from the window holding its
position, reads that window and skips within it: the records read before the
first batch are bounded by a window, wherever s falls in the epoch. Epochs'
pipelines are built one at a time as the stream reaches them
(`pipeline.batches_across_epochs`, the next one opened ahead).

Each example's crop, flip and RandAugment draw is seeded by (seed, epoch,
process index, position in the host's epoch), so hosts draw differently and a
resumed stream draws the same.

Which examples share a global batch depends on the number of hosts (each
host shuffles its own slice), so runs with different host counts see the same
data in a different order; the built-in synthetic source has no such
dependence. TFDS stores examples already shuffled, so chunks of consecutive
examples are already mixed samples.
"""

from __future__ import annotations

import difflib
import functools
import operator
from typing import Iterator, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from lambda_networks.data import epoch_order
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
               crop_padding: int = 4, randaugment_variant: str = "reference",
               shuffle_chunk: int = 2048):
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
    self._shuffle_chunk = shuffle_chunk
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

  def _host_split(self, split: str):
    """This host's even share of `split` (a TFDS split spec)."""
    return tfds.even_splits(split, n=self._shard.process_count)[
        self._shard.process_index]

  def _train_chunks(self) -> list[epoch_order.Chunk]:
    """This host's even share of the train split, cut into chunks."""
    host_split = self._host_split(self._splits[0])
    splits = self._builder.info.splits
    ranges = [(str(part.splitname), part.from_ or 0,
               splits[str(part.splitname)].num_examples if part.to is None
               else part.to)
              for part in host_split.to_absolute(splits)]
    lengths = {name: splits[name].shard_lengths for name, _, _ in ranges}
    return epoch_order.make_chunks(ranges, lengths, self._shuffle_chunk)

  def _read_window(self, window: epoch_order.Window) -> tf.data.Dataset:
    """The window's examples, completely shuffled by its own seed."""
    split = functools.reduce(operator.add, [
        tfds.core.ReadInstruction(chunk.split, from_=chunk.start, to=chunk.end,
                                  unit="abs") for chunk in window.chunks])
    ds = self._builder.as_dataset(
        split=split, shuffle_files=False,
        read_config=tfds.ReadConfig(interleave_cycle_length=16),
        decoders={self._keys[0]: tfds.decode.SkipDecoding()})
    if self._shuffle_buffer > 1:
      ds = ds.shuffle(window.size, seed=window.seed,
                      reshuffle_each_iteration=False)
    return ds.with_options(pipeline_options())

  @functools.cached_property
  def _train_functions(self):
    """The training map functions, as tf.functions made once per source:
    every epoch's pipeline (and every resume) reuses their traces."""
    image_key, label_key = self._keys
    augment_base = tf.constant(epoch_order.mix(self._seed, 1 << 30), tf.int64)
    host_offset = tf.constant(self._shard.process_index << 32, tf.int64)

    @tf.function
    def preprocess(key, example):
      # Seeded by (seed, epoch, host, position in the host's epoch): every
      # example of every host gets its own draw, the same after a resume.
      epoch, position = key
      seed = tf.stack([augment_base + epoch, host_offset + position])
      image = preprocessing.train_image_uint8(example[image_key], seed,
                                              **self._train_kwargs)
      return {"image": image, "label": tf.cast(example[label_key], tf.int32)}

    @tf.function
    def normalize(batch):
      return {**batch, "image": preprocessing.normalize_batch(
          batch["image"], *self._normalization)}

    return preprocess, normalize

  def train_batches(self, start_step: int,
                    num_steps: int) -> Iterator[pipeline.Batch]:
    chunks = self._train_chunks()
    host_examples = sum(chunk.size for chunk in chunks)
    if host_examples < self._local_batch:
      raise ValueError(
          f"This host's share of split {self._splits[0]!r} has {host_examples} "
          f"examples, fewer than one local batch ({self._local_batch}); lower "
          "config.global_batch_size or use a larger split.")
    placeholder = {
        "image": tf.zeros(self.info.image_shape, tf.uint8),
        "label": tf.constant(0, tf.int32)}

    preprocess, normalize = self._train_functions

    def epoch_batches(epoch: int, start: int, stop: int,
                      pad: int) -> Iterator[pipeline.Batch]:
      windows = epoch_order.epoch_windows(
          chunks, seed=self._seed, epoch=epoch,
          host=self._shard.process_index, window_size=self._shuffle_buffer,
          shuffle=self._shuffle_buffer > 1)
      first = epoch_order.window_at(windows, start)
      last = epoch_order.window_at(windows, stop - 1)
      # A dataset of the windows' datasets, read one after another; the
      # interleave reads the next windows ahead, so a window's shuffle buffer
      # fills while the one before it is used.
      nested = [tf.data.Dataset.from_tensors(self._read_window(window))
                for window in windows[first:last + 1]]
      ds = functools.reduce(tf.data.Dataset.concatenate, nested)
      ds = ds.interleave(lambda window: window, cycle_length=1,
                         num_parallel_calls=1, deterministic=True)
      ds = ds.skip(start - windows[first].offset).take(stop - start)

      keys = tf.data.Dataset.range(start, stop).map(
          lambda position: (tf.constant(epoch, tf.int64), position))
      ds = tf.data.Dataset.zip(keys, ds).map(
          preprocess, num_parallel_calls=tf.data.AUTOTUNE)
      if pad:
        ds = tf.data.Dataset.from_tensors(placeholder).repeat(pad).concatenate(ds)
      ds = ds.batch(self._local_batch).map(normalize,
                                           num_parallel_calls=tf.data.AUTOTUNE)
      ds = ds.prefetch(tf.data.AUTOTUNE)
      return iter(tfds.as_numpy(ds.with_options(pipeline_options())))

    return pipeline.batches_across_epochs(
        epoch_batches, examples_per_epoch=host_examples,
        batch_size=self._local_batch, start_step=start_step,
        num_steps=num_steps,
        lookahead=max(2, self._shuffle_buffer // self._local_batch))

  def num_eval_batches(self) -> int:
    return self._shard.num_eval_batches(self.info.num_eval_examples,
                                        self._local_eval_batch)

  def eval_batches(self) -> Iterator[pipeline.Batch]:
    image_key, label_key = self._keys
    ds = self._builder.as_dataset(
        split=self._host_split(self._splits[1]), shuffle_files=False,
        read_config=tfds.ReadConfig(interleave_cycle_length=1),
        decoders={image_key: tfds.decode.SkipDecoding()})
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


