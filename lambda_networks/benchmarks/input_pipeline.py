"""How fast the training input pipeline runs: images per second, per stage.

`measure` times the pipeline `data.create_source` builds from a config (as
train.py does); `profile` times its per-image work stage by stage. Both use
the calling process's threads and cores as they are (pin them first).
"""

from __future__ import annotations

import os
import pathlib
import resource
import time
from typing import Iterator

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from lambda_networks import data
from lambda_networks.benchmarks import jpeg_dataset
from lambda_networks.benchmarks import reporting
from lambda_networks.data import preprocessing
from lambda_networks.data import tfds_source

FIELDS = ("augment", "image_size", "cores", "images_per_s",
          "images_per_s_per_core", "images_per_cpu_s", "images", "batch_size",
          "seconds", "cpu_seconds", "load_average_1min", "host_cpu",
          "host_cpus", "tensorflow", "date")


def cpu_seconds() -> float:
  """CPU time of this process, all threads (user + system)."""
  return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


def measure(config: ml_collections.ConfigDict, *, augment: str, images: int,
            cores: int) -> dict:
  """A FIELDS row: `images` training images timed after one untimed batch."""
  batch_size, size = config.global_batch_size, config.image_size
  batches = data.create_source(config, data.HostShard()).train_batches(
      0, 1 + max(1, -(-images // batch_size)))
  assert next(batches)["image"].shape == (batch_size, size, size, 3)
  start, cpu_start = time.perf_counter(), cpu_seconds()
  count = sum(batch["image"].shape[0] for batch in batches)
  seconds, used = time.perf_counter() - start, cpu_seconds() - cpu_start
  return dict(augment=augment, image_size=size, cores=cores,
              images_per_s=round(count / seconds, 1),
              images_per_s_per_core=round(count / seconds / cores, 1),
              images_per_cpu_s=round(count / used, 1), images=count,
              batch_size=batch_size, seconds=round(seconds, 2),
              cpu_seconds=round(used, 2), load_average_1min=os.getloadavg()[0],
              host_cpu=reporting.cpu_name(), host_cpus=os.cpu_count(),
              tensorflow=tf.__version__,
              date=time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()))


def profile(data_dir: pathlib.Path, image_size: int, images: int) -> str:
  """A markdown table of each stage's cost per image (printed as it goes)."""
  rows = []
  for stage, rate in stage_costs(data_dir, image_size, images):
    rows.append([stage, f"{rate:.0f}", f"{1000 / rate:.2f}"])
    print(*rows[-1], sep="  ", flush=True)
  return "\n".join([
      f"Per-image cost on 1 core, {image_size} px, {images} images (cumulative "
      "stages, each a parallel tf.data map; CPU time of the process):", "",
      reporting.markdown_table(
          ["stage", "images per CPU-second", "CPU ms per image"], rows)]) + "\n"


def stage_costs(data_dir: pathlib.Path, image_size: int,
                images: int) -> Iterator[tuple[str, float]]:
  """(stage, images per CPU-second) of the per-image work, cumulatively.

  Each stage is a parallel tf.data map over `images` cached JPEG records of
  the generated dataset; reading them is its own first stage.
  """
  records = tfds.builder(jpeg_dataset.DATASET_NAME, data_dir=str(data_dir)
                         ).as_dataset(split="train", decoders={
                             "image": tfds.decode.SkipDecoding()})
  records = records.take(images).cache()
  for _ in records:  # Fill the cache: reading is timed on its own below.
    pass
  seed = tf.constant([1, 2], tf.int64)
  crop_args = dict(channels=3, min_area=0.08, is_jpeg=True)
  augment = lambda image, magnitude: preprocessing.train_image_uint8(
      image, seed, image_size=image_size, randaugment_layers=2,
      randaugment_magnitude=magnitude, **crop_args)
  mean, stddev = (127.0, 127.0, 127.0), (60.0, 60.0, 60.0)
  stages = {
      "read (cached records)": tf.strings.length,
      "decode whole JPEG": lambda image: tf.io.decode_jpeg(image, channels=3),
      "decode + inception crop (fused)":
          lambda image: preprocessing.random_crop(image, seed, **crop_args),
      "+ flip, resize (bicubic), round to uint8": lambda image: augment(image, 0.0),
      "+ normalise (per image)": lambda image: preprocessing.normalize_batch(
          augment(image, 0.0)[None], mean, stddev)[0],
      "uint8 image + RandAugment 2×10": lambda image: augment(image, 10.0),
      "uint8 image + RandAugment 2×15": lambda image: augment(image, 15.0),
  }
  for name, function in stages.items():
    ds = records.map(lambda ex, f=function: f(ex["image"]),
                     num_parallel_calls=tf.data.AUTOTUNE).with_options(
                         tfds_source.pipeline_options())
    for _ in ds.take(8):  # Warm-up: trace and start threads.
      pass
    start = cpu_seconds()
    count = sum(1 for _ in ds)
    yield name, count / (cpu_seconds() - start)
