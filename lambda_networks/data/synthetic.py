"""The quickstart's built-in task: do two far-apart marks have the same colour?

Each 32×32 RGB image holds weak noise and three small coloured squares at
random heights: one in the left third, one in the right third and a
distractor of random colour in the middle third. The label is 1 when the left
and right squares have the same colour and 0 otherwise (half of the examples
each, so chance is 50%). No pixel neighbourhood decides the label, and neither
does the set of colours present (the distractor may repeat either colour): a
model has to relate two regions about 20 pixels apart and know which is
which, which is what lambda layers with a global context and relative
position embeddings do in one step.

Example `i` of a split is a pure function of (seed, split, i), so any host can
make any example without coordination and a resumed run sees the same data.
"""

from __future__ import annotations

import numpy as np

from lambda_networks.data import pipeline

IMAGE_SIZE = 32
CHANNELS = 3
NUM_CLASSES = 2
MARK_SIZE = 4
NOISE_STDDEV = 0.1
# Distinct, saturated colours; the model must tell them apart after the noise.
PALETTE = np.array([
    [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
    [1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0],
], dtype=np.float32)
_SPLIT_IDS = {"train": 0, "test": 1}


def make_examples(seed: int, split: str,
                  indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Returns (images [N, 32, 32, 3] float32, labels [N] int32) for `indices`."""
  if split not in _SPLIT_IDS:
    raise ValueError(
        f"The synthetic dataset has splits {sorted(_SPLIT_IDS)}, got "
        f"{split!r}; set config.train_split / config.eval_split to one of them.")
  images = np.empty((len(indices), IMAGE_SIZE, IMAGE_SIZE, CHANNELS), np.float32)
  labels = np.empty((len(indices),), np.int32)
  for row, index in enumerate(indices):
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], int(index)])
    images[row], labels[row] = _one_example(rng)
  return images, labels


def _one_example(rng: np.random.Generator) -> tuple[np.ndarray, int]:
  image = rng.normal(0.0, NOISE_STDDEV, (IMAGE_SIZE, IMAGE_SIZE, CHANNELS))
  label = int(rng.integers(NUM_CLASSES))
  first = int(rng.integers(len(PALETTE)))
  if label == 1:
    second = first
  else:
    second = (first + 1 + int(rng.integers(len(PALETTE) - 1))) % len(PALETTE)
  distractor = int(rng.integers(len(PALETTE)))
  third = IMAGE_SIZE // 3
  for colour, (low, high) in ((first, (0, third - MARK_SIZE)),
                              (distractor, (third, IMAGE_SIZE - third - MARK_SIZE)),
                              (second, (IMAGE_SIZE - third,
                                        IMAGE_SIZE - MARK_SIZE))):
    top = int(rng.integers(0, IMAGE_SIZE - MARK_SIZE + 1))
    left = int(rng.integers(low, high + 1))
    image[top:top + MARK_SIZE, left:left + MARK_SIZE] = PALETTE[colour]
  return image.astype(np.float32), label


class SyntheticSource(pipeline.IndexedSource):
  """The far-marks task as a `pipeline.Source`.

  Training order: epoch e is a permutation of the training examples seeded by
  (seed, e); global batch t holds positions [t·B, (t+1)·B) of that stream and
  host p takes its contiguous part. The batches therefore do not depend on the
  number of hosts, only on the global batch size.
  """

  def __init__(self, *, seed: int, num_train_examples: int,
               num_eval_examples: int, train_split: str, eval_split: str,
               global_batch_size: int, eval_batch_size: int,
               shard: pipeline.HostShard):
    for field, value in (("synthetic_train_examples", num_train_examples),
                         ("synthetic_eval_examples", num_eval_examples)):
      if value < 1:
        raise ValueError(f"config.{field} must be positive, got {value}.")
    make_examples(seed, train_split, np.zeros((0,), np.int64))  # Checks split.
    make_examples(seed, eval_split, np.zeros((0,), np.int64))
    self.info = pipeline.DatasetInfo(
        name="synthetic_far_marks", num_classes=NUM_CLASSES,
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, CHANNELS),
        num_train_examples=num_train_examples,
        num_eval_examples=num_eval_examples)
    self._splits = (train_split, eval_split)
    super().__init__(seed=seed, tag=7, global_batch_size=global_batch_size,
                     eval_batch_size=eval_batch_size, shard=shard)

  def examples(self, split: int, indices: np.ndarray) -> pipeline.Batch:
    images, labels = make_examples(self._seed, self._splits[split], indices)
    return {"image": images, "label": labels}
