"""Input pipelines: TFDS datasets, the built-in tasks, and text for language models."""

from __future__ import annotations

import ml_collections

from lambda_networks.data import pipeline
from lambda_networks.data.pipeline import Batch, DatasetInfo, HostShard, Source, prefetch

SYNTHETIC_DATASET = "synthetic_far_marks"

__all__ = ["Batch", "DatasetInfo", "HostShard", "Source", "create_source",
           "prefetch", "SYNTHETIC_DATASET"]


def create_source(config: ml_collections.ConfigDict,
                  shard: HostShard) -> Source:
  """Builds the dataset named by `config.dataset` for this host."""
  if config.get("task", "classification") == "language_model":
    from lambda_networks.data import text_source  # pylint: disable=g-import-not-at-top
    return text_source.create_text_source(config, shard)
  eval_batch_size = config.eval_batch_size or config.global_batch_size
  if config.dataset == SYNTHETIC_DATASET:
    from lambda_networks.data import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.SyntheticSource(
        seed=config.seed, num_train_examples=config.synthetic_train_examples,
        num_eval_examples=config.synthetic_eval_examples,
        train_split=config.train_split, eval_split=config.eval_split,
        global_batch_size=config.global_batch_size,
        eval_batch_size=eval_batch_size, shard=shard)
  from lambda_networks.data import tfds_source  # pylint: disable=g-import-not-at-top
  return tfds_source.TfdsSource(
      name=config.dataset, version=config.dataset_version,
      data_dir=config.data_dir, train_split=config.train_split,
      eval_split=config.eval_split, image_key=config.image_key,
      label_key=config.label_key, image_size=config.image_size,
      min_crop_area=config.min_crop_area,
      eval_crop_fraction=config.eval_crop_fraction,
      randaugment_layers=config.randaugment_layers,
      randaugment_magnitude=config.randaugment_magnitude,
      randaugment_variant=config.randaugment_variant,
      mean=tuple(config.normalization_mean),
      stddev=tuple(config.normalization_stddev),
      shuffle_buffer=config.shuffle_buffer,
      shuffle_chunk=config.shuffle_chunk, seed=config.seed,
      global_batch_size=config.global_batch_size,
      eval_batch_size=eval_batch_size, shard=shard,
      crop=config.train_crop, crop_padding=config.crop_padding)
