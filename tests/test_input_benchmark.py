"""The generated JPEG dataset and scripts.benchmark_input (no timings asserted)."""

import csv
import os
import pathlib
import types

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lambda_networks.benchmarks import input_pipeline
from lambda_networks.benchmarks import jpeg_dataset
from scripts import benchmark_input

LONG_SIDE = 64
AFFINITY = os.sched_getaffinity(0)


def _records(builder, split):
  ds = builder.as_dataset(split=split,
                          decoders={"image": tfds.decode.SkipDecoding()})
  return [(bytes(ex["image"]), int(ex["label"])) for ex in tfds.as_numpy(ds)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  return [jpeg_dataset.build(tmp_path_factory.mktemp(f"tfds{i}"), num_train=6,
                             num_eval=2, seed=5, long_side=LONG_SIDE)
          for i in range(2)]


def test_generated_dataset_is_valid_tfds_and_deterministic(built):
  first, second = built
  info = tfds.builder(jpeg_dataset.DATASET_NAME,
                      data_dir=str(pathlib.Path(first.data_dir).parents[1])).info
  assert info.splits["train"].num_examples == 6
  assert info.splits["validation"].num_examples == 2
  assert info.features["image"].encoding_format == "jpeg"
  records = _records(first, "train")
  assert records == _records(second, "train")  # Same seed, same bytes.
  assert records != _records(first, "validation")[:2] + records[2:]
  for encoded, label in records:
    assert encoded[:2] == b"\xff\xd8"  # Stored as the JPEG it was saved as.
    image = tf.io.decode_jpeg(encoded).numpy()
    assert max(image.shape[:2]) <= LONG_SIDE and image.shape[2] == 3
    assert image.std() > 10  # Content, not a flat image.
    assert 0 <= label < jpeg_dataset.NUM_CLASSES
  other = jpeg_dataset.example(6, "train", 0, LONG_SIDE)["image"]
  assert other != records[0][0]  # The seed matters.


def test_rebuilding_with_other_sizes_is_refused(built):
  root = pathlib.Path(built[0].data_dir).parents[1]
  assert jpeg_dataset.build(root, num_train=6, num_eval=2, seed=5,
                            long_side=LONG_SIDE).is_prepared()
  with pytest.raises(ValueError, match="delete it or choose another"):
    jpeg_dataset.build(root, num_train=7, num_eval=2)


def _argv(built, *extra: str) -> list[str]:
  """The benchmark's command line for the dataset `built` made."""
  return ["--data-dir", str(pathlib.Path(built[0].data_dir).parents[1]),
          "--num-train", "6", "--num-eval", "2", "--long-side", str(LONG_SIDE),
          "--seed", "5", "--cores", "1", "--images", "4", "--batch", "2", *extra]


def test_worker_measures_each_setting_in_order(built, monkeypatch):
  """In process, timing nothing: which pipeline each (augment, size) gets."""
  monkeypatch.setattr(input_pipeline, "measure", lambda config, **kwargs: dict(
      kwargs, size=config.image_size, layers=config.randaugment_layers,
      magnitude=config.randaugment_magnitude, batch=config.global_batch_size,
      dataset=config.dataset, data_dir=config.data_dir))
  rows = benchmark_input.worker(benchmark_input.parse_args(_argv(
      built, "--augments", "off", "2x15", "--image-sizes", "32", "48")), 1)
  assert [(r["augment"], r["size"], r["layers"], r["magnitude"]) for r in rows] == [
      ("off", 32, 0, 0.0), ("off", 48, 0, 0.0), ("2x15", 32, 2, 15.0),
      ("2x15", 48, 2, 15.0)]
  for row in rows:
    assert row["cores"] == 1 and row["images"] == 4 and row["batch"] == 2
    assert row["dataset"] == jpeg_dataset.DATASET_NAME
    assert pathlib.Path(row["data_dir"]) == pathlib.Path(_argv(built)[1])


def test_one_pinned_worker_per_core_count(built, monkeypatch, tmp_path):
  """In process: each worker's cores and arguments, the parent unpinned."""
  calls = []

  class FakePool:  # multiprocessing.get_context("spawn").Pool(1), run here.
    def __init__(self, processes):
      assert processes == 1

    def __enter__(self):
      return self

    def __exit__(self, *error):
      del error

    def apply(self, function, args):
      cores = len(os.sched_getaffinity(0))  # What the worker would inherit.
      calls.append((cores, args[1], function))
      return [dict.fromkeys(input_pipeline.FIELDS, 1.0) | dict(
          augment="off", image_size=32, cores=cores, load_average_1min=0.5)]

  def get_context(method):
    assert method == "spawn"  # Not forked: a fresh TensorFlow per worker.
    return types.SimpleNamespace(Pool=FakePool)

  monkeypatch.setattr(benchmark_input.multiprocessing, "get_context", get_context)
  rows = benchmark_input.run_workers(benchmark_input.parse_args(_argv(
      built, "--augments", "off", "--image-sizes", "32", "--cores", "1",
      str(len(AFFINITY)),
      "--out", str(tmp_path))))
  counts = list(dict.fromkeys([1, len(AFFINITY)]))
  assert calls == [(n, n, benchmark_input.worker) for n in counts]
  assert rows.cores.tolist() == counts
  assert tuple(rows.columns) == input_pipeline.FIELDS
  assert os.sched_getaffinity(0) == AFFINITY


def test_markdown_keeps_the_run_order_and_marks_missing_cells():
  rows = pd.DataFrame([
      dict(augment=augment, cores=cores, image_size=size, images_per_s=100.0 * cores,
           images_per_s_per_core=100.0, images_per_cpu_s=150.5, batch_size=2)
      for cores in (1, 2) for augment in ("off", "2x15") for size in (48, 32)
      if (augment, cores, size) != ("2x15", 2, 48)])
  lines = benchmark_input.markdown(rows, "HEADER").splitlines()
  assert lines[0] == "HEADER" and "batch 2" in lines[2]
  assert lines[4:] == [
      "| RandAugment | cores | 32 px | 48 px |", "|---|---|---|---|",
      "| off | 1 | 100 (100) · 150.5 | 100 (100) · 150.5 |",
      "| 2x15 | 1 | 100 (100) · 150.5 | 100 (100) · 150.5 |",
      "| off | 2 | 200 (100) · 150.5 | 200 (100) · 150.5 |",
      "| 2x15 | 2 | 200 (100) · 150.5 | — |"]


@pytest.mark.slow
def test_benchmark_writes_well_formed_csv(built, tmp_path):
  """The command line end to end: a worker process per core count."""
  rows = benchmark_input.main(_argv(built, "--augments", "off", "--image-sizes",
                                    "32", "--out", str(tmp_path)))
  with open(tmp_path / "input.csv", newline="") as handle:
    reader = csv.DictReader(handle)
    assert tuple(reader.fieldnames) == input_pipeline.FIELDS
    written = list(reader)
  assert [(r["augment"], r["image_size"], r["cores"]) for r in written] == [
      ("off", "32", "1")]
  for row in written:
    assert float(row["images_per_s"]) > 0 and float(row["images_per_cpu_s"]) > 0
    assert float(row["images_per_s_per_core"]) == float(row["images_per_s"])
    assert (int(row["images"]), int(row["batch_size"])) == (4, 2)
  assert len(rows) == 1
  assert "| off | 1 |" in (tmp_path / "input.md").read_text()
  assert os.sched_getaffinity(0) == AFFINITY  # Only the worker was pinned.


def test_bad_settings_get_clear_errors(capsys):
  with pytest.raises(SystemExit):
    benchmark_input.parse_args(["--augments", "heavy"])
  assert "LAYERSxMAGNITUDE" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    benchmark_input.parse_args(["--cores", "4096"])
  assert "usable cores" in capsys.readouterr().err
