"""Byte-level text as a `pipeline.Source`: packed fixed-length sequences.

Three corpora, chosen by `config.dataset`:

- "text_files": the UTF-8 (or any) files matching `config.text_files`
  (a glob), read in sorted order and concatenated; the last
  `config.text_eval_fraction` of the bytes is the eval split. Bytes that are
  not valid UTF-8 are data: the model reads bytes.
- "text_recall": the built-in long-range task, made in-process (no files).
  Each sequence is L/2 random lowercase letters, "=", then the same letters
  again: the second half is predictable only by looking back L/2 + 1
  positions, which a model whose blocks together reach fewer bytes back
  cannot do (log2 26 = 4.7 bits per byte on both halves; one that reaches
  that far tends to 4.7 on the first half and 0 on the copy).
- any other name: a TFDS text dataset (`tiny_shakespeare`, `lm1b`,
  `wikipedia/...`), the string feature `config.text_key` of each example
  of `config.train_split` / `config.eval_split`, joined by newlines (at most
  `config.text_max_bytes` bytes per split when that is > 0; read into memory).

A corpus of N bytes holds (N − 1) // L sequences of L = sequence_length
inputs: sequence j is bytes [j·L, j·L + L + 1), inputs its first L bytes and
targets its last L (the next byte at every position). Batches are
{"inputs", "targets"} int32 [b, L] (eval adds "mask" [b]).

Training order, as in the built-in image task: epoch e is a permutation of the
sequences seeded by (seed, e); global batch t holds stream positions
[t·B, (t + 1)·B) and host p its contiguous part. Every batch is a pure
function of (seed, step), so a resumed run continues exactly, whatever the
host count.
"""

from __future__ import annotations

import glob
import os
from typing import Callable

import numpy as np

from lambda_networks.data import pipeline
from lambda_networks.errors import UserError

TEXT_FILES = "text_files"
RECALL_TASK = "text_recall"
VOCAB_SIZE = 256
_RECALL_SPLITS = {"train": 0, "test": 1, "validation": 1}
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
_SEPARATOR = ord("=")


def read_files(pattern: str, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """(train bytes, eval bytes) of the files matching `pattern`."""
  if not pattern:
    raise UserError("config.dataset='text_files' needs --config.text_files=GLOB "
                    "(e.g. '/data/books/*.txt').")
  paths = sorted(path for path in glob.glob(os.path.expanduser(pattern),
                                            recursive=True)
                 if os.path.isfile(path))
  if not paths:
    raise UserError(f"config.text_files={pattern!r} matches no files; check the "
                    "path (quote the glob so the shell leaves it alone).")
  if not 0 < eval_fraction < 1:
    raise UserError(f"config.text_eval_fraction={eval_fraction} must be between "
                    "0 and 1 (exclusive): both splits need bytes.")
  corpus = np.concatenate([np.fromfile(path, np.uint8) for path in paths])
  split = int(round(len(corpus) * (1 - eval_fraction)))
  return corpus[:split], corpus[split:]


def read_tfds(name: str, data_dir: str, splits: tuple[str, str], text_key: str,
              max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
  """(train bytes, eval bytes) of a prepared TFDS text dataset."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from lambda_networks.data import tfds_source  # pylint: disable=g-import-not-at-top
  builder = tfds_source.load_builder(name, "", data_dir)
  features = builder.info.features
  if text_key not in features or not isinstance(features[text_key], tfds.features.Text):
    texts = [key for key, feature in features.items()
             if isinstance(feature, tfds.features.Text)]
    raise UserError(f"config.text_key={text_key!r} is not a text feature of "
                    f"{name!r}; its text features are {texts}.")
  corpora = []
  for field, split in zip(("train_split", "eval_split"), splits):
    if split not in builder.info.splits:
      raise UserError(f"config.{field}={split!r} is not a split of {name!r}; it "
                      f"has {sorted(builder.info.splits)}.")
    pieces, total = [], 0
    for example in builder.as_dataset(split=split).as_numpy_iterator():
      piece = bytes(example[text_key]) + b"\n"
      pieces.append(piece)
      total += len(piece)
      if 0 < max_bytes <= total:
        break
    corpus = np.frombuffer(b"".join(pieces), np.uint8)
    corpora.append(corpus[:max_bytes] if max_bytes > 0 else corpus)
  return corpora[0], corpora[1]


def recall_sequences(seed: int, split: str, indices: np.ndarray,
                     sequence_length: int) -> np.ndarray:
  """Built-in task sequences [n, L + 1] uint8 (see the module docstring)."""
  if split not in _RECALL_SPLITS:
    raise UserError(f"the built-in {RECALL_TASK!r} task has splits "
                    f"{sorted(_RECALL_SPLITS)}, got {split!r}.")
  half = sequence_length // 2
  out = np.empty((len(indices), sequence_length + 1), np.uint8)
  for row, index in enumerate(indices):
    rng = np.random.default_rng([seed, _RECALL_SPLITS[split], int(index)])
    letters = _LETTERS[rng.integers(len(_LETTERS), size=half)]
    copy = np.resize(letters, sequence_length - half)  # Repeats when longer.
    out[row] = np.concatenate([letters, [_SEPARATOR], copy])
  return out


def packed_sequences(corpus: np.ndarray, sequence_length: int
                     ) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
  """(count, indices → [n, L + 1] sequences) of a byte corpus."""
  count = max(0, (len(corpus) - 1) // sequence_length)
  offsets = np.arange(sequence_length + 1)

  def sequences(indices: np.ndarray) -> np.ndarray:
    return corpus[indices[:, None] * sequence_length + offsets]

  return count, sequences


class TextSource(pipeline.IndexedSource):
  """Packed byte sequences of a train and an eval split as a `pipeline.Source`."""

  def __init__(self, *, name: str, sequence_length: int,
               train: tuple[int, Callable[[np.ndarray], np.ndarray]],
               evaluation: tuple[int, Callable[[np.ndarray], np.ndarray]],
               seed: int, global_batch_size: int, eval_batch_size: int,
               shard: pipeline.HostShard, what: str = "the text"):
    """`train` and `evaluation` are (sequence count, indices → sequences)."""
    (num_train, self._train), (num_eval, self._eval) = train, evaluation
    needed = sequence_length + 1
    if num_train < 1:
      raise UserError(
          f"{what} has too few training bytes for one sequence of "
          f"config.sequence_length={sequence_length} (needs {needed}); use more "
          "text or a shorter sequence_length.")
    if num_train < global_batch_size:
      raise UserError(
          f"{what} holds {num_train} training sequences of {sequence_length} "
          f"bytes, fewer than one batch (config.global_batch_size="
          f"{global_batch_size}); use more text, a smaller batch or shorter "
          "sequences.")
    if num_eval < 1:
      raise UserError(
          f"{what} leaves the eval split without one sequence of {needed} bytes; "
          "raise config.text_eval_fraction (local files), use more text or a "
          "shorter sequence_length.")
    self.info = pipeline.DatasetInfo(
        name=name, num_classes=VOCAB_SIZE, image_shape=(sequence_length, 1, 1),
        num_train_examples=num_train, num_eval_examples=num_eval)
    self.sequence_length = sequence_length
    super().__init__(seed=seed, tag=11, global_batch_size=global_batch_size,
                     eval_batch_size=eval_batch_size, shard=shard)

  def examples(self, split: int, indices: np.ndarray) -> pipeline.Batch:
    return _batch((self._train, self._eval)[split](indices))


def _batch(sequences: np.ndarray) -> pipeline.Batch:
  sequences = sequences.astype(np.int32)
  return {"inputs": sequences[:, :-1], "targets": sequences[:, 1:]}


def create_text_source(config, shard: pipeline.HostShard) -> TextSource:
  """The text source `config.dataset` names (see the module docstring)."""
  length = config.sequence_length
  if isinstance(length, bool) or not isinstance(length, int) or length < 2:
    raise UserError(f"config.sequence_length must be an int ≥ 2, got {length!r}.")
  common = dict(sequence_length=length, seed=config.seed,
                global_batch_size=config.global_batch_size,
                eval_batch_size=config.eval_batch_size or config.global_batch_size,
                shard=shard)
  if config.dataset == RECALL_TASK:
    recall_sequences(config.seed, config.train_split, np.zeros(0, int), length)
    recall_sequences(config.seed, config.eval_split, np.zeros(0, int), length)
    splits = (config.train_split, config.eval_split)

    def make(split):
      return lambda indices: recall_sequences(config.seed, split, indices, length)

    return TextSource(
        name=RECALL_TASK, train=(config.synthetic_train_examples, make(splits[0])),
        evaluation=(config.synthetic_eval_examples, make(splits[1])),
        what=f"the {RECALL_TASK!r} task", **common)
  if config.dataset == TEXT_FILES:
    train, evaluation = read_files(config.text_files, config.text_eval_fraction)
    what = f"config.text_files={config.text_files!r} ({len(train) + len(evaluation)} bytes)"
  else:
    train, evaluation = read_tfds(
        config.dataset, config.data_dir, (config.train_split, config.eval_split),
        config.text_key, config.text_max_bytes)
    what = f"TFDS {config.dataset!r}"
  return TextSource(name=config.dataset,
                    train=packed_sequences(train, length),
                    evaluation=packed_sequences(evaluation, length),
                    what=what, **common)
