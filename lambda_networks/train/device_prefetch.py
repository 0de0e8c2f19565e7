"""Global batches put on the devices a step ahead of the step that reads them.

Transfers are asynchronous: the next batch's copy to the devices starts
before the current step is dispatched, so it overlaps the step instead of
preceding the next one. Not `flax.jax_utils.prefetch_to_device`: that one
stacks per-device arrays over a mesh of its own (pmap's layout), while the
steps take global arrays sharded over the run's mesh, assembled from every
host's share (`distributed.global_batch`). The host side (reading ahead in a
thread) is `data.prefetch`; tf.data's own prefetch only covers the TFDS
sources, not the in-process ones, nor the conversion to numpy.
"""

from __future__ import annotations

import collections
from typing import Iterator

import jax
from jax.sharding import Mesh

from lambda_networks import data
from lambda_networks.train import distributed

AHEAD = 1  # Batches on the devices before the step that reads them.


def to_devices(batches: Iterator[data.Batch], mesh: Mesh,
               ahead: int = AHEAD) -> Iterator[dict[str, jax.Array]]:
  """`batches` (host-local) as global arrays, `ahead` batches transferred early.

  Yields the same batches in the same order, so a resumed run sees what an
  uninterrupted one would have.
  """
  queue: collections.deque = collections.deque()
  for batch in batches:
    queue.append(distributed.global_batch(batch, mesh))
    if len(queue) > ahead:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
