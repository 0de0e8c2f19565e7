"""Tests of lambda_networks.data: resumable order, host sharding, exact eval."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import tfds_mock

from lambda_networks.data import HostShard
from lambda_networks.data import epoch_order
from lambda_networks.data import pipeline
from lambda_networks.data import preprocessing
from lambda_networks.data import synthetic
from lambda_networks.data import tfds_source


def _synthetic(process_index=0, process_count=1, eval_examples=37,
               eval_batch=8, batch=8):
  return synthetic.SyntheticSource(
      seed=3, num_train_examples=20, num_eval_examples=eval_examples,
      train_split="train", eval_split="test", global_batch_size=batch,
      eval_batch_size=eval_batch,
      shard=HostShard(process_index, process_count))


def test_synthetic_labels_depend_on_far_apart_marks():
  images, labels = synthetic.make_examples(0, "train", np.arange(200))
  assert images.shape == (200, 32, 32, 3)
  assert 0.3 < labels.mean() < 0.7  # Balanced classes.
  third = synthetic.IMAGE_SIZE // 3
  for image, label in zip(images[:20], labels[:20]):
    # The mark pixels are exact palette colours; the noise never is.
    def mark_colour(region):
      hits = {tuple(p) for p in region.reshape(-1, 3)
              if any(np.array_equal(p, c) for c in synthetic.PALETTE)}
      assert len(hits) == 1
      return hits.pop()
    left = mark_colour(image[:, :third])
    right = mark_colour(image[:, -third:])
    assert (left == right) == bool(label)


def test_synthetic_resumes_and_ignores_host_count():
  whole = list(_synthetic().train_batches(0, 6))
  resumed = list(_synthetic().train_batches(4, 2))
  np.testing.assert_array_equal(whole[4]["image"], resumed[0]["image"])
  np.testing.assert_array_equal(whole[5]["label"], resumed[1]["label"])
  halves = [list(_synthetic(p, 2).train_batches(0, 6)) for p in range(2)]
  for step in range(6):
    joined = np.concatenate([halves[0][step]["image"], halves[1][step]["image"]])
    np.testing.assert_array_equal(joined, whole[step]["image"])
  # Epochs (20 examples, 8 per batch) are permutations: each example once.
  seen = np.concatenate([b["image"] for b in whole]).reshape(48, -1)
  every, _ = synthetic.make_examples(3, "train", np.arange(20))
  every = every.reshape(20, -1)
  def example_ids(images):
    return [int(np.flatnonzero((every == image).all(axis=1))[0]) for image in images]
  first, second = example_ids(seen[:20]), example_ids(seen[20:40])
  assert sorted(first) == sorted(second) == list(range(20))
  assert first != second  # Each epoch has its own order.


@pytest.mark.parametrize("process_count,eval_batch", [(1, 8), (3, 6), (2, 40)])
def test_synthetic_eval_counts_every_example_once(process_count, eval_batch):
  seen = []
  batches = None
  for p in range(process_count):
    source = _synthetic(p, process_count, eval_batch=eval_batch, batch=24)
    host = list(source.eval_batches())
    assert batches in (None, len(host))  # Every host runs the same steps.
    batches = len(host)
    for batch in host:
      seen.extend(batch["image"][batch["mask"] > 0].reshape(-1, 32 * 32 * 3)
                  .sum(axis=1).round(3).tolist())
  assert len(seen) == 37
  expected, _ = synthetic.make_examples(3, "test", np.arange(37))
  assert sorted(seen) == sorted(expected.reshape(37, -1).sum(axis=1).round(3).tolist())


def _imagenet(data_dir, process_index=0, process_count=1, eval_batch=8,
              magnitude=0.0, crop="inception", shuffle_buffer=8,
              shuffle_chunk=2048, batch=None):
  # RandAugment "timm": the reference's translations are absolute (up to
  # 100 px), which turns most 24 px images uniformly grey.
  return tfds_source.TfdsSource(
      name="imagenet2012", version="", data_dir=data_dir, train_split="train",
      eval_split="validation", image_key="image", label_key="label",
      image_size=24, min_crop_area=0.08, eval_crop_fraction=0.875,
      randaugment_layers=2, randaugment_magnitude=magnitude,
      mean=(127.0, 127.0, 127.0), stddev=(60.0, 60.0, 60.0),
      shuffle_buffer=shuffle_buffer, shuffle_chunk=shuffle_chunk, seed=1,
      global_batch_size=batch or (12 if process_count > 1 else 4),
      eval_batch_size=eval_batch,
      shard=HostShard(process_index, process_count), crop=crop,
      randaugment_variant="timm")


@pytest.mark.parametrize("process_count,eval_batch", [(1, 8), (3, 6), (4, 4)])
def test_tfds_eval_counts_every_example_once(mock_imagenet, process_count,
                                             eval_batch):
  labels, lengths = [], set()
  for p in range(process_count):
    source = _imagenet(mock_imagenet, p, process_count, eval_batch)
    batches = list(source.eval_batches())
    lengths.add(len(batches))
    assert len(batches) == source.num_eval_batches()
    for batch in batches:
      assert batch["image"].shape == (eval_batch // process_count, 24, 24, 3)
      labels.extend(batch["label"][batch["mask"] > 0].tolist())
  assert len(lengths) == 1
  assert sorted(labels) == list(range(37))  # Label i is example i.


@pytest.mark.parametrize("crop", ["inception", "pad"])
def test_tfds_training_stream_resumes_exactly(mock_imagenet, crop):
  source = _imagenet(mock_imagenet, magnitude=9.0, crop=crop)
  whole = list(source.train_batches(0, 20))  # 80 examples: 2.7 epochs.
  assert len(whole) == 20
  resumed = list(_imagenet(mock_imagenet, magnitude=9.0,
                           crop=crop).train_batches(13, 7))
  for a, b in zip(whole[13:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  first_epoch = np.concatenate([b["label"] for b in whole])[:30]
  assert sorted(first_epoch.tolist()) == list(range(30))  # A permutation.
  assert not np.array_equal(whole[0]["label"], whole[8]["label"][:4])


def test_hosts_draw_their_own_augmentations_and_resume_exactly(
    mock_imagenet, monkeypatch):
  monkeypatch.setattr(tfds_mock, "IDENTICAL_IMAGES", True)
  sources = [_imagenet(mock_imagenet, index, 2, magnitude=9.0, shuffle_chunk=4)
             for index in range(2)]
  def host(index, start, steps):
    return list(sources[index].train_batches(start, steps))
  # 15 examples per host, 6 per host batch: 7 steps are 2.8 epochs.
  whole = [host(index, 0, 7) for index in range(2)]
  for step in range(7):
    rows = np.concatenate([whole[0][step]["image"], whole[1][step]["image"]])
    rows = rows.reshape(len(rows), -1)
    # One image everywhere, yet every row of the global batch is its own draw.
    assert len({row.tobytes() for row in rows}) == len(rows), step
  for index in range(2):
    labels = np.concatenate([b["label"] for b in whole[index]])
    first = range(15 * index, 15 * index + 15)
    assert sorted(labels[:15]) == sorted(labels[15:30]) == list(first)
    assert labels[:15].tolist() != labels[15:30].tolist()  # A new order.
  # Resumed mid-epoch (positions 12 and 24), into batches that span an epoch.
  for index, start in ((0, 2), (1, 4)):
    for a, b in zip(whole[index][start:], host(index, start, 2)):
      np.testing.assert_array_equal(a["image"], b["image"])
      np.testing.assert_array_equal(a["label"], b["label"])


def test_no_shuffle_reads_the_stored_order_every_epoch(mock_imagenet):
  source = _imagenet(mock_imagenet, shuffle_buffer=1, shuffle_chunk=4)
  labels = np.concatenate([b["label"] for b in source.train_batches(0, 16)])
  np.testing.assert_array_equal(labels, np.arange(64) % 30)


@pytest.fixture(name="large_mock")
def fixture_large_mock(tmp_path):
  """Mock imagenet2012 with 600 training examples."""
  tfds_mock.write_metadata(str(tmp_path), num_train=600, num_eval=8)
  with tfds.testing.mock_data(data_dir=str(tmp_path),
                              as_dataset_fn=tfds_mock.as_dataset,
                              policy=tfds.testing.MockPolicy.USE_FILES):
    yield str(tmp_path)


def test_resume_reads_the_same_few_records_anywhere_in_the_epoch(large_mock):
  source = _imagenet(large_mock, shuffle_buffer=16, shuffle_chunk=8)
  # The windows that hold one batch: at most two of < 16 + 8 examples each.
  bound = 2 * (16 + 8)
  counts = {}
  for step in (0, 1, 40, 101, 149):  # Positions 0 ... 596 of a 600 epoch.
    tfds_mock.RECORDS_READ.assign(0)
    batch = next(source.train_batches(step, 1))
    assert batch["image"].shape == (4, 24, 24, 3)
    counts[step * 4] = int(tfds_mock.RECORDS_READ.numpy())
  assert all(4 <= count <= bound for count in counts.values()), counts


def test_epoch_order_cuts_files_and_covers_every_chunk_once():
  ranges = [("train", 5, 40), ("extra", 0, 6)]
  chunks = epoch_order.make_chunks(ranges, {"train": [10, 20, 30],
                                            "extra": [6]}, chunk_size=8)
  assert [(c.split, c.start, c.end) for c in chunks] == [
      ("train", 5, 8), ("train", 8, 10), ("train", 10, 18),
      ("train", 18, 26), ("train", 26, 30), ("train", 30, 38),
      ("train", 38, 40), ("extra", 0, 6)]
  orders = set()
  for epoch in range(3):
    windows = epoch_order.epoch_windows(chunks, seed=0, epoch=epoch, host=0,
                                        window_size=10, shuffle=True)
    assert sorted(c for w in windows for c in w.chunks) == sorted(chunks)
    assert all(w.size >= 10 for w in windows[:-1])
    offsets = [w.offset for w in windows]
    assert offsets == list(np.cumsum([0] + [w.size for w in windows[:-1]]))
    for w_index, window in enumerate(windows):
      assert epoch_order.window_at(windows, window.offset) == w_index
      assert epoch_order.window_at(windows, window.offset + window.size - 1) == w_index
    orders.add(tuple(c for w in windows for c in w.chunks))
  assert len(orders) == 3  # Each epoch its own order.
  plain = epoch_order.epoch_windows(chunks, seed=0, epoch=1, host=0,
                                    window_size=10, shuffle=False)
  assert [w.chunks for w in plain] == [(c,) for c in chunks]


@pytest.mark.parametrize("start_step", [0, 1, 2, 5])
def test_batches_across_epochs_equal_one_continuous_stream(start_step):
  per_epoch, batch = 7, 3
  def examples(epoch):  # Epoch e: a permutation of 0..6, plus 100·e.
    return np.random.default_rng(epoch).permutation(per_epoch) + 100 * epoch
  stream = np.concatenate([examples(e) for e in range(8)])
  def epoch_batches(epoch, start, stop, pad):
    rows = np.concatenate([np.full(pad, -1), examples(epoch)[start:stop]])
    for i in range(0, len(rows), batch):
      yield {"label": rows[i:i + batch], "image": rows[i:i + batch] * 2}
  got = list(pipeline.batches_across_epochs(
      epoch_batches, examples_per_epoch=per_epoch, batch_size=batch,
      start_step=start_step, num_steps=6, lookahead=1))
  assert len(got) == 6
  for step, b in enumerate(got, start_step):
    np.testing.assert_array_equal(b["label"], stream[step * 3:step * 3 + 3])
    np.testing.assert_array_equal(b["image"], b["label"] * 2)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"builder\(.mnist.*download_and_prepare"):
    tfds_source.load_builder("mnist", "", str(tmp_path))
  with pytest.raises(ValueError, match="not a TFDS dataset"):
    tfds_source.load_builder("no_such_dataset_xyz", "", str(tmp_path))


def test_pad_and_crop_takes_a_seeded_window_of_the_padded_image():
  image = tf.constant(np.random.default_rng(0).integers(1, 255, (12, 12, 1)),
                      tf.uint8)
  padded = np.pad(image.numpy().astype(np.float32), [(3, 3), (3, 3), (0, 0)])
  offsets = set()
  for seed in range(16):
    seed = tf.constant([seed, 7], tf.int64)
    out = preprocessing.pad_and_crop(image, seed, image_size=12, padding=3).numpy()
    again = preprocessing.pad_and_crop(image, seed, image_size=12, padding=3)
    np.testing.assert_array_equal(out, again.numpy())  # Same seed, same crop.
    matches = [(top, left) for top in range(7) for left in range(7)
               if np.array_equal(out, padded[top:top + 12, left:left + 12])]
    assert len(matches) == 1  # A 12×12 window of the zero-padded image.
    offsets.add(matches[0])
  assert len(offsets) > 8  # Different seeds move the window.
