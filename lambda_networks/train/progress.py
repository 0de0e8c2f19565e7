"""Progress lines, and training speed that leaves out compilation and evaluation.

`console` prints a progress line (process 0) and logs it. The first call of the jitted train step compiles it before it dispatches, so
the clock restarts when that call returns; evaluations run inside `paused()`.
The steps of a window are counted from their dispatch, and the progress line
that closes the window syncs with the device, so the window's time covers the
execution of exactly its steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Iterator

import jax
from absl import logging


def console(message: str) -> None:
  """A progress line on stdout (process 0 only) and in the log."""
  logging.info(message)
  if jax.process_index() == 0:
    print(message, flush=True)


def duration(seconds: float) -> str:
  """H:MM:SS."""
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


@dataclasses.dataclass(frozen=True)
class Speed:
  steps: int
  seconds: float  # Training time of the window (no compile, no eval).
  compile_seconds: float | None  # Set in the first window only.

  @property
  def step_time(self) -> float:
    return self.seconds / max(self.steps, 1)

  def examples_per_second(self, batch_size: int) -> float:
    return batch_size / max(self.step_time, 1e-12)


class Meter:
  """Counts dispatched steps and the time they took, between progress lines.

  Not clu's `ReportProgress`: it times everything between two reports (its
  `timed` parts are shown as shares of the total, not left out) and cannot
  leave out the first step's compilation.
  """

  def __init__(self, clock: Callable[[], float] = time.monotonic):
    self._clock = clock
    self._window_start = clock()
    self._paused_seconds = 0.0
    self._steps = 0
    self._compiled = False
    self._compile_seconds: float | None = None

  def step_dispatched(self) -> None:
    """Call right after each train-step call returns."""
    self._steps += 1
    if not self._compiled:  # That call compiled: start the clock now.
      self._compiled = True
      now = self._clock()
      self._compile_seconds = now - self._window_start - self._paused_seconds
      self._window_start, self._paused_seconds = now, 0.0

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Time spent inside (evaluation) is not training time."""
    start = self._clock()
    try:
      yield
    finally:
      self._paused_seconds += self._clock() - start

  def report(self) -> Speed:
    """The window since the last report; starts the next one."""
    now = self._clock()
    speed = Speed(steps=self._steps,
                  seconds=max(now - self._window_start - self._paused_seconds, 0.0),
                  compile_seconds=self._compile_seconds)
    self._window_start, self._paused_seconds = now, 0.0
    self._steps, self._compile_seconds = 0, None
    return speed
