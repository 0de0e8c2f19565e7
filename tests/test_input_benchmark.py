"""The generated JPEG dataset and scripts.benchmark_input (no timings asserted)."""

import csv
import pathlib

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lambda_networks.benchmarks import jpeg_dataset
from scripts import benchmark_input

LONG_SIDE = 64


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


@pytest.mark.slow
def test_benchmark_writes_well_formed_csv(built, tmp_path):
  root = pathlib.Path(built[0].data_dir).parents[1]
  rows = benchmark_input.main(
      ["--data-dir", str(root), "--num-train", "6", "--num-eval", "2",
       "--long-side", str(LONG_SIDE), "--seed", "5", "--image-sizes", "32",
       "--augments", "off", "2x15", "--cores", "1", "--images", "4",
       "--batch", "2", "--out", str(tmp_path)])
  with open(tmp_path / "input.csv", newline="") as handle:
    reader = csv.DictReader(handle)
    assert tuple(reader.fieldnames) == benchmark_input.FIELDS
    written = list(reader)
  assert [(r["augment"], r["image_size"], r["cores"]) for r in written] == [
      ("off", "32", "1"), ("2x15", "32", "1")]
  for row in written:
    assert float(row["images_per_s"]) > 0
    assert float(row["images_per_s_per_core"]) == float(row["images_per_s"])
    assert int(row["images"]) == 4
  assert len(rows) == 2
  assert "| off | 1 |" in (tmp_path / "input.md").read_text()


def test_bad_settings_get_clear_errors():
  with pytest.raises(SystemExit):
    benchmark_input.parse_args(["--augments", "heavy"])
  with pytest.raises(SystemExit):
    benchmark_input.parse_args(["--cores", "4096"])
