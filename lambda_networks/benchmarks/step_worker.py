"""A benchmark worker process and its client: JSON lines over stdin/stdout.

`scripts.compare_timm` times our models and timm's in separate processes
(torch and TensorFlow crash when imported into one, and torch lives in
another interpreter), alternating between them. Each side is a worker that
`serve`s requests ({"command": NAME, ...} -> the handler's dict, or
{"error": "..."}); the parent talks to it through `Worker`. A worker's first
line is {"ready": {...}} (its versions and device) or {"error": ...}.

Peak memory on CPU is the process's resident set: `reset_peak_rss` starts a
new high-water mark (Linux /proc/self/clear_refs), so a fresh worker per
model reports what that model's steps added. Standard library only: the
timm worker imports this module under an interpreter without JAX.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Sequence

MIB = 2**20
Handler = Callable[..., dict[str, Any]]


class WorkerError(RuntimeError):
  """A worker that failed to start or answered a request with an error."""


def _status_kib(field: str) -> int | None:
  try:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
      if line.startswith(field + ":"):
        return int(line.split()[1])
  except OSError:
    pass
  return None


def rss_bytes() -> int | None:
  """The process's resident set now (Linux), or None."""
  kib = _status_kib("VmRSS")
  return None if kib is None else kib * 1024


def peak_rss_bytes() -> int | None:
  """The resident set's high-water mark since the last `reset_peak_rss`."""
  kib = _status_kib("VmHWM")
  return None if kib is None else kib * 1024


def memory_row(baseline_rss: int | None,
               device_peak_bytes: int | None) -> dict[str, Any]:
  """Peak RSS above `baseline_rss`, and the device's peak, in MiB (None: unknown)."""
  peak = peak_rss_bytes()
  return dict(
      peak_rss_mib=None if None in (peak, baseline_rss) else
      (peak - baseline_rss) / MIB,
      device_peak_mib=None if device_peak_bytes is None else
      device_peak_bytes / MIB)


def reset_peak_rss() -> bool:
  """Sets the high-water mark to the current resident set; False if it can't."""
  try:
    pathlib.Path("/proc/self/clear_refs").write_text("5")
  except OSError:
    return False
  return True


def serve(ready: Callable[[], dict[str, Any]],
          handlers: dict[str, Handler]) -> None:
  """Answers requests from stdin until it closes; one JSON line each.

  `ready()` does the imports and returns the first message. Anything the
  libraries print goes to stderr: stdout carries the protocol only.
  """
  protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
  os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

  def send(message: dict[str, Any]) -> None:
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()

  try:
    send({"ready": ready()})
  except Exception as error:  # pylint: disable=broad-except
    send({"error": _one_line(error)})
    sys.exit(1)
  for line in sys.stdin:
    if not line.strip():
      continue
    request = json.loads(line)
    command = request.pop("command")
    try:
      send(handlers[command](**request))
    except Exception as error:  # pylint: disable=broad-except
      send({"error": _one_line(error)})


def _one_line(error: BaseException) -> str:
  return f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]


class Worker:
  """A worker process: `request(command, **fields)` -> its answer."""

  def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
               cores: Sequence[int] | None = None, name: str = "worker"):
    self.name = name
    preexec = None
    if cores is not None:  # The child's thread pools size to its affinity.
      preexec = lambda: os.sched_setaffinity(0, cores)  # noqa: E731
    self.process = subprocess.Popen(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, preexec_fn=preexec,
        bufsize=1)
    self._stderr_tail: list[str] = []
    self._start_stderr_reader()
    try:
      self.ready = self._read()
    except Exception:
      self.close()
      raise

  def _start_stderr_reader(self) -> None:
    """Keeps the last lines of the child's stderr (the pipe must not fill)."""
    def read():
      for line in self.process.stderr:
        self._stderr_tail.append(line.rstrip())
        del self._stderr_tail[:-20]
    threading.Thread(target=read, daemon=True).start()

  def _read(self) -> dict[str, Any]:
    line = self.process.stdout.readline()
    if not line:
      self.process.wait()
      time.sleep(0.1)  # Let the stderr reader catch the last lines.
      tail = " | ".join(self._stderr_tail[-3:])
      raise WorkerError(f"the {self.name} process exited (status "
                        f"{self.process.returncode}) without answering"
                        + (f": {tail}" if tail else ""))
    message = json.loads(line)
    if "error" in message:
      raise WorkerError(message["error"])
    return message.get("ready", message)

  def request(self, command: str, **fields: Any) -> dict[str, Any]:
    self.process.stdin.write(json.dumps({"command": command, **fields}) + "\n")
    self.process.stdin.flush()
    return self._read()

  def close(self) -> None:
    if self.process.poll() is None:
      self.process.stdin.close()
      try:
        self.process.wait(timeout=60)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()

  def __enter__(self) -> "Worker":
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()
