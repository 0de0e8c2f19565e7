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
from typing import Iterator, Protocol

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
