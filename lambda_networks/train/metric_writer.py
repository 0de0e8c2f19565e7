"""The run's metric writer: log lines, and TensorBoard events on process 0.

What clu's `create_default_writer` writes (its log lines and an event file
TensorBoard reads), for the two calls the trainer makes: scalars and
hyper-parameters. Ours because importing `clu.metric_writers` imports
TensorFlow for its summary writer (about 4 CPU-seconds at every start of
train.py); the event file format needs only tensorboard's protos.
The file is opened with etils.epath, as the checkpoints are, so a gs:// or
other remote workdir works alike.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Mapping

from absl import logging
from etils import epath
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.summary.writer import record_writer

EVENT_FILE_PREFIX = "events.out.tfevents."


class MetricWriter:
  """Writes each call as an INFO log line and, with a logdir, as an event
  (give none on processes other than 0).

  Events are buffered by the file and reach it at `flush` (the trainer
  flushes after each evaluation and at the end) or `close`.
  """

  def __init__(self, logdir: str | os.PathLike | None):
    self._records = None
    if logdir is not None:
      directory = epath.Path(logdir)
      directory.mkdir(parents=True, exist_ok=True)
      name = (f"{EVENT_FILE_PREFIX}{int(time.time()):010d}."
              f"{socket.gethostname()}.{os.getpid()}")
      self._records = record_writer.RecordWriter((directory / name).open("wb"))
      self._add(event_pb2.Event(wall_time=time.time(),
                                file_version="brain.Event:2"))
      self._records.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    logging.info("[%d] %s", step, ", ".join(
        f"{key}={_text(value)}" for key, value in sorted(scalars.items())))
    if self._records is not None:
      values = [summary_pb2.Summary.Value(tag=key, simple_value=float(value))
                for key, value in sorted(scalars.items())]
      self._add(event_pb2.Event(wall_time=time.time(), step=int(step),
                                summary=summary_pb2.Summary(value=values)))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    logging.info("[Hyperparameters] %s", dict(hparams))
    if self._records is not None:
      self._add(event_pb2.Event(wall_time=time.time(),
                                summary=hparams_summary.hparams_pb(hparams)))

  def flush(self) -> None:
    logging.flush()
    if self._records is not None:
      self._records.flush()

  def close(self) -> None:
    self.flush()
    if self._records is not None and not self._records.closed:
      self._records.close()

  def _add(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())


def _text(value: Any) -> str:
  return f"{value:.6g}" if isinstance(value, float) else str(value)
