"""Tests of the byte-level text source: packing, resuming, hosts, errors."""

import numpy as np
import pytest

from configs import default
from lambda_networks import data
from lambda_networks.data import text_source
from lambda_networks.errors import UserError


def text_config(tmp_path, text: bytes, **fields):
  (tmp_path / "a.txt").write_bytes(text[: len(text) // 2])
  (tmp_path / "b.txt").write_bytes(text[len(text) // 2:])
  config = default.get_config()
  config.task = "language_model"
  config.dataset = "text_files"
  config.text_files = str(tmp_path / "*.txt")
  config.sequence_length = 8
  config.text_eval_fraction = 0.25
  config.global_batch_size = 4
  config.eval_batch_size = 3
  config.update(fields)
  return config


def corpus(size=403, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes()


def test_sequences_are_packed_slices_of_the_files_in_order(tmp_path):
  text = corpus()
  source = data.create_source(text_config(tmp_path, text), data.HostShard())
  train_bytes = np.frombuffer(text, np.uint8)[: int(round(403 * 0.75))]
  assert source.info.num_train_examples == (len(train_bytes) - 1) // 8
  seen = set()
  for batch in source.train_batches(0, 20):
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    for inputs, targets in zip(batch["inputs"], batch["targets"]):
      start = np.flatnonzero([np.array_equal(train_bytes[i:i + 8], inputs)
                              for i in range(0, len(train_bytes) - 8, 8)])
      assert len(start) >= 1
      np.testing.assert_array_equal(targets, train_bytes[start[0] * 8 + 1:
                                                         start[0] * 8 + 9])
      seen.add(start[0])
  assert len(seen) == source.info.num_train_examples  # Every one, each epoch.


def test_resumed_stream_equals_the_uninterrupted_one(tmp_path):
  config = text_config(tmp_path, corpus())
  source = data.create_source(config, data.HostShard())
  whole = list(source.train_batches(0, 30))
  resumed = list(data.create_source(config, data.HostShard()).train_batches(17, 13))
  for expected, got in zip(whole[17:], resumed):
    for key in expected:
      np.testing.assert_array_equal(expected[key], got[key])


def test_hosts_split_each_global_batch_and_the_eval_split(tmp_path):
  config = text_config(tmp_path, corpus(), eval_batch_size=2)
  one = data.create_source(config, data.HostShard())
  two = [data.create_source(config, data.HostShard(p, 2)) for p in range(2)]
  for step in (0, 9, 40):
    global_batch = next(one.train_batches(step, 1))
    halves = [next(source.train_batches(step, 1)) for source in two]
    np.testing.assert_array_equal(
        global_batch["inputs"],
        np.concatenate([half["inputs"] for half in halves]))
  seen = []
  for source in two:
    assert source.num_eval_batches() == two[0].num_eval_batches()
    for batch in source.eval_batches():
      seen += [tuple(row) for row, real in zip(batch["inputs"], batch["mask"]) if real]
  expected = [tuple(row) for batch in one.eval_batches()
              for row, real in zip(batch["inputs"], batch["mask"]) if real]
  assert sorted(seen) == sorted(expected)
  assert len(expected) == one.info.num_eval_examples


def test_bytes_that_are_not_utf8_are_data(tmp_path):
  text = b"\xff\xfe\x80" * 60
  source = data.create_source(text_config(tmp_path, text), data.HostShard())
  batch = next(source.train_batches(0, 1))
  assert set(np.unique(batch["inputs"])) <= {0xff, 0xfe, 0x80}


@pytest.mark.parametrize("text,fields,message", [
    (corpus(), dict(text_files="/nonexistent/*.txt"), "matches no files"),
    (corpus(), dict(text_files=""), "needs --config.text_files"),
    (corpus(6), dict(), "too few training bytes for one sequence"),
    (corpus(30), dict(), "fewer than one batch"),
    (corpus(403), dict(text_eval_fraction=0.01), "eval split without"),
    (corpus(403), dict(text_eval_fraction=0.0), "between 0 and 1"),
    (corpus(403), dict(sequence_length=1), "sequence_length"),
], ids=["no_match", "no_glob", "short", "under_a_batch", "empty_eval",
        "zero_fraction", "length"])
def test_bad_text_input_gets_one_clear_line(tmp_path, text, fields, message):
  config = text_config(tmp_path, text, **fields)
  with pytest.raises(UserError, match=message) as error:
    data.create_source(config, data.HostShard())
  assert "\n" not in str(error.value)


def test_recall_task_repeats_its_first_half():
  sequences = text_source.recall_sequences(0, "train", np.arange(5), 64)
  assert sequences.shape == (5, 65)
  np.testing.assert_array_equal(sequences[:, :32], sequences[:, 33:])
  assert np.all(sequences[:, 32] == ord("="))
  np.testing.assert_array_equal(
      sequences, text_source.recall_sequences(0, "train", np.arange(5), 64))
  assert not np.array_equal(
      sequences, text_source.recall_sequences(0, "test", np.arange(5), 64))


class FakeTextBuilder:
  """A prepared TFDS text dataset: what `read_tfds` asks of a builder."""

  def __init__(self, splits):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self.splits = splits
    self.info = type("Info", (), dict(
        features={"text": tfds.features.Text(), "id": tfds.features.Scalar(np.int64)},
        splits=splits))

  def as_dataset(self, split):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    texts = self.splits[split]
    return tf.data.Dataset.from_tensor_slices(
        {"text": texts, "id": list(range(len(texts)))})


@pytest.fixture
def fake_tfds(monkeypatch):
  from lambda_networks.data import tfds_source  # pylint: disable=g-import-not-at-top
  builder = FakeTextBuilder({"train": ["first line", "ünïcode", "x" * 50],
                             "test": ["held out text " * 3]})
  monkeypatch.setattr(tfds_source, "load_builder", lambda *args: builder)
  config = default.get_config()
  config.task, config.dataset, config.eval_split = "language_model", "fake", "test"
  config.sequence_length, config.global_batch_size = 8, 2
  return config


def test_tfds_text_examples_are_joined_by_newlines(fake_tfds):
  train, evaluation = text_source.read_tfds("fake", "", ("train", "test"), "text", 0)
  assert train.tobytes() == "first line\nünïcode\n".encode() + b"x" * 50 + b"\n"
  assert evaluation.tobytes() == b"held out text " * 3 + b"\n"
  capped, _ = text_source.read_tfds("fake", "", ("train", "test"), "text", 12)
  assert capped.tobytes() == b"first line\n\xc3"
  source = data.create_source(fake_tfds, data.HostShard())
  assert source.info.num_train_examples == (len(train) - 1) // 8


@pytest.mark.parametrize("fields,message", [
    (dict(text_key="id"), "not a text feature"), (dict(eval_split="validation"),
                                                  "not a split")])
def test_tfds_text_errors_name_the_field(fake_tfds, fields, message):
  fake_tfds.update(fields)
  with pytest.raises(UserError, match=message):
    data.create_source(fake_tfds, data.HostShard())


def test_the_trainer_build_refuses_bad_text_with_a_user_error():
  from configs import lambda_lm  # pylint: disable=g-import-not-at-top
  from lambda_networks.train import resolved_config  # pylint: disable=g-import-not-at-top
  config = lambda_lm.get_config("text_files")
  config.text_files = "/nonexistent/**/*.txt"
  with pytest.raises(UserError, match="matches no files"):
    resolved_config.prepare(config)
