"""The order in which a host reads its share of a split: any position, cheaply.

A host's share (absolute example ranges of named splits) is cut into chunks:
runs of at most `chunk_size` consecutive examples that never cross a file.
Epoch e permutes the chunks with a generator seeded by (seed, e, host) and
groups consecutive chunks into windows of at least `window_size` examples;
the reader shuffles each window completely, with a seed of its own. The
epoch's order is thus a pure function of (seed, e, host), and position p lies
in one window: a reader starts at p by reading that window alone, so starting
late in an epoch costs no more than starting early (no replay of the records
before it).

Without shuffling, chunks keep their stored order and each is its own window.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Mapping, Sequence

import numpy as np

# Tags that keep the seeds of the chunk order and of the windows apart.
_CHUNK_ORDER, _WINDOW_SHUFFLE = 0, 1


@dataclasses.dataclass(frozen=True, order=True)
class Chunk:
  """Examples [start, end) of the named split, all in one file."""
  split: str
  start: int
  end: int

  @property
  def size(self) -> int:
    return self.end - self.start


@dataclasses.dataclass(frozen=True)
class Window:
  """Chunks read together and shuffled as one; `offset` is its first
  example's position in the epoch, `seed` the seed of its shuffle."""
  chunks: tuple[Chunk, ...]
  offset: int
  seed: int

  @property
  def size(self) -> int:
    return sum(chunk.size for chunk in self.chunks)


def mix(*numbers: int) -> int:
  """A seed from several integers that fits in int32/int64 wherever used."""
  return int(np.random.SeedSequence(list(numbers)).generate_state(1)[0]) >> 1


def make_chunks(ranges: Sequence[tuple[str, int, int]],
                shard_lengths: Mapping[str, Sequence[int]],
                chunk_size: int) -> list[Chunk]:
  """Cuts (split, start, end) ranges into chunks at file boundaries and every
  `chunk_size` examples from a file's start (so whole files stay whole when
  they are no longer than `chunk_size`)."""
  if chunk_size < 1:
    raise ValueError(f"config.shuffle_chunk must be positive, got {chunk_size}.")
  chunks = []
  for split, start, end in ranges:
    cuts = {start, end}
    file_start = 0
    for length in shard_lengths[split]:
      cuts.update(range(file_start, file_start + length, chunk_size))
      file_start += length
    cuts = sorted(c for c in cuts if start <= c <= end)
    chunks.extend(Chunk(split, a, b) for a, b in zip(cuts, cuts[1:]))
  return chunks


def epoch_windows(chunks: Sequence[Chunk], *, seed: int, epoch: int,
                  host: int, window_size: int,
                  shuffle: bool) -> list[Window]:
  """The windows of one epoch, in reading order (see the module docstring)."""
  if shuffle:
    order = np.random.default_rng(
        [seed, epoch, host, _CHUNK_ORDER]).permutation(len(chunks))
    chunks = [chunks[i] for i in order]
  windows, group, offset = [], [], 0
  for chunk in chunks:
    group.append(chunk)
    if not shuffle or sum(c.size for c in group) >= window_size:
      window = Window(tuple(group), offset,
                      mix(seed, epoch, host, _WINDOW_SHUFFLE, len(windows)))
      windows.append(window)
      offset += window.size
      group = []
  if group:
    windows.append(Window(tuple(group), offset,
                          mix(seed, epoch, host, _WINDOW_SHUFFLE, len(windows))))
  return windows


def window_at(windows: Sequence[Window], position: int) -> int:
  """Index of the window that holds `position` of the epoch."""
  return bisect.bisect_right([w.offset for w in windows], position) - 1
