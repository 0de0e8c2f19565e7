"""What the trainer sees of any dataset: host-local batches and dataset facts.

A source yields, for this host, training batches {"image", "label"} of
`global_batch_size // process_count` examples starting at any step (so a
resumed run continues exactly where it stopped), and evaluation batches that
add a "mask" (1 for a real example, 0 for padding) so every example of the
split is counted exactly once, whatever the batch size and host count.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Callable, Iterator, Protocol

import numpy as np

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Facts about a dataset that the model and the schedule need."""
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]  # (height, width, channels) after preprocessing.
  num_train_examples: int
  num_eval_examples: int


class Source(Protocol):
  """A dataset as the trainer uses it (see the module docstring)."""
  info: DatasetInfo

  def train_batches(self, start_step: int, num_steps: int) -> Iterator[Batch]:
    """Host-local training batches for steps start_step ... + num_steps - 1."""

  def eval_batches(self) -> Iterator[Batch]:
    """Host-local, padded and masked batches covering the eval split once."""

  def num_eval_batches(self) -> int:
    """How many eval batches every host yields (the same on all hosts)."""


@dataclasses.dataclass(frozen=True)
class HostShard:
  """This process's share of the data."""
  process_index: int = 0
  process_count: int = 1

  def local_batch_size(self, global_batch_size: int, field: str) -> int:
    if global_batch_size % self.process_count:
      raise ValueError(
          f"config.{field}={global_batch_size} must be divisible by the number "
          f"of processes ({self.process_count}); choose a multiple of "
          f"{self.process_count}.")
    return global_batch_size // self.process_count

  def example_range(self, num_examples: int) -> tuple[int, int]:
    """Contiguous [start, end) of a split's examples that this host reads."""
    start = self.process_index * num_examples // self.process_count
    end = (self.process_index + 1) * num_examples // self.process_count
    return start, end

  def num_eval_batches(self, num_examples: int, local_batch_size: int) -> int:
    """Batches per host so that the host with the most examples reads all."""
    most = -(-num_examples // self.process_count)
    return max(1, -(-most // local_batch_size))


def step_example_indices(seed: int, tag: int, step: int, num_examples: int,
                         global_batch: int, shard: HostShard) -> np.ndarray:
  """The examples this host reads at `step` of an in-memory dataset.

  The global batch of step s is positions [s·B, (s+1)·B) of an endless
  stream in which epoch e is a permutation of the examples seeded by
  (seed, tag, e); each host takes its contiguous share of the batch. A pure
  function of the step, so any step starts exactly.
  """
  local = global_batch // shard.process_count
  positions = (step * global_batch + shard.process_index * local
               + np.arange(local))
  epochs, within = np.divmod(positions, num_examples)
  indices = np.empty_like(positions)
  for epoch in np.unique(epochs):
    order = np.random.default_rng([seed, tag, int(epoch)]).permutation(
        num_examples)
    indices[epochs == epoch] = order[within[epochs == epoch]]
  return indices


class IndexedSource:
  """A `Source` over in-memory examples that a function makes from indices.

  Subclasses set `info` and implement `examples(split, indices)` (split 0:
  train, 1: eval) → a batch without a mask. Training reads
  `step_example_indices` (a pure function of the step, so any step starts
  exactly); evaluation reads each host's contiguous range once, the last
  batch padded and masked.
  """

  info: DatasetInfo

  def __init__(self, *, seed: int, tag: int, global_batch_size: int,
               eval_batch_size: int, shard: HostShard):
    self._seed = seed
    self._tag = tag
    self._shard = shard
    self._global_batch = global_batch_size
    shard.local_batch_size(global_batch_size, "global_batch_size")  # Checks.
    self._local_eval_batch = shard.local_batch_size(eval_batch_size,
                                                     "eval_batch_size")

  def examples(self, split: int, indices: np.ndarray) -> Batch:
    raise NotImplementedError

  def train_batches(self, start_step: int, num_steps: int) -> Iterator[Batch]:
    for step in range(start_step, start_step + num_steps):
      yield self.examples(0, step_example_indices(
          self._seed, self._tag, step, self.info.num_train_examples,
          self._global_batch, self._shard))

  def num_eval_batches(self) -> int:
    return self._shard.num_eval_batches(self.info.num_eval_examples,
                                        self._local_eval_batch)

  def eval_batches(self) -> Iterator[Batch]:
    start, end = self._shard.example_range(self.info.num_eval_examples)
    size = self._local_eval_batch
    for batch in range(self.num_eval_batches()):
      indices = np.arange(start + batch * size, start + (batch + 1) * size)
      mask = indices < end
      out = self.examples(1, np.where(mask, indices, start))
      out["mask"] = mask.astype(np.float32)
      yield out


def batches_across_epochs(
    epoch_batches: Callable[[int, int, int, int], Iterator[Batch]], *,
    examples_per_epoch: int, batch_size: int, start_step: int,
    num_steps: int, lookahead: int = 2) -> Iterator[Batch]:
  """Batches `start_step` ... + num_steps - 1 of a stream of epochs.

  Batch t holds positions [t·B, (t+1)·B) of the stream in which epoch e is
  positions [e·N, (e+1)·N). `epoch_batches(epoch, start, stop, pad)` yields
  the epoch's examples [start, stop) in batches of B, the first batch led by
  `pad` placeholder rows, the last possibly short. The placeholders are
  replaced by the previous epoch's short last batch, so a batch that spans an
  epoch boundary is the one a continuous stream gives, while each epoch's
  pipeline is built only when the stream nears it: `lookahead` batches before
  an epoch ends, a background thread builds the next one and reads its first
  batch, so the epoch boundary does not stall the consumer.
  """
  first = start_step * batch_size
  end = first + num_steps * batch_size

  def plan(epoch: int) -> tuple[int, int, int]:
    begin = epoch * examples_per_epoch
    start = max(first - begin, 0)
    stop = min(examples_per_epoch, end - begin)
    return start, stop, (begin + start - first) % batch_size

  def open_epoch(epoch: int) -> _Opened:
    return _Opened(lambda: epoch_batches(epoch, *plan(epoch)))

  epoch = first // examples_per_epoch
  opened = open_epoch(epoch) if num_steps > 0 else None
  carry = None
  while opened is not None:
    start, stop, pad = plan(epoch)
    count = -(-(pad + stop - start) // batch_size)
    has_next = (epoch + 1) * examples_per_epoch < end
    current, opened = opened, None
    for index, batch in enumerate(current.batches()):
      if has_next and opened is None and count - index <= lookahead:
        opened = open_epoch(epoch + 1)
      if pad:
        batch = {key: np.concatenate([carry[key], value[pad:]])
                 for key, value in batch.items()}
        pad = 0
      if len(batch["label"]) == batch_size:
        yield batch
      else:
        carry = batch
    if has_next and opened is None:
      opened = open_epoch(epoch + 1)
    epoch += 1


class _Opened:
  """An iterator made, and its first item read, in a background thread."""

  def __init__(self, make: Callable[[], Iterator[Batch]]):
    self._result: list = []
    self._thread = threading.Thread(target=self._open, args=(make,),
                                    daemon=True)
    self._thread.start()

  def _open(self, make):
    try:
      iterator = make()
      self._result.append((next(iterator, None), iterator))
    except BaseException as error:  # Re-raised in the consumer.
      self._result.append(error)

  def batches(self) -> Iterator[Batch]:
    self._thread.join()
    result = self._result[0]
    if isinstance(result, BaseException):
      raise result
    head, iterator = result
    if head is not None:
      yield head
      yield from iterator


def prefetch(iterator: Iterator[Batch], size: int = 2) -> Iterator[Batch]:
  """Runs `iterator` in a background thread, `size` batches ahead."""
  buffer: queue.Queue = queue.Queue(maxsize=size)
  done = object()

  def worker():
    try:
      for item in iterator:
        buffer.put(item)
    except BaseException as error:  # Re-raised in the consumer.
      buffer.put(error)
      return
    buffer.put(done)

  threading.Thread(target=worker, daemon=True).start()
  while True:
    item = buffer.get()
    if item is done:
      return
    if isinstance(item, BaseException):
      raise item
    yield item
