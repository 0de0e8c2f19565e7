"""The run's directory: an absolute path, and one trainer at a time.

`resolve` turns what the user typed into an absolute local path (or keeps a
URL such as gs://bucket/run) and refuses paths that cannot be a workdir,
before anything is written. `Lock` is a lease on the workdir: a lock file
naming the host, process id and start time of the trainer that holds it,
rewritten every `renew_seconds` while the trainer runs, so that its
modification time (readable by any host and any tool) says the holder is
alive. A second trainer is refused while the lease is fresh; a lock not
renewed for `stale_seconds` (a trainer killed on a node that is gone, then
requeued elsewhere) is taken over from any host, and one left by a process
that died on this host at once, each with a message naming the old holder.
Local locks are created atomically (O_EXCL) and renewed by an atomic rename;
on object stores (gs://) the check and the write are two steps, so two
trainers started in the same instant may both pass.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import threading
import time
import uuid

from absl import logging
from etils import epath

from lambda_networks.errors import UserError

LOCK_NAME = "trainer.lock"
RENEW_SECONDS = 60.0  # configs/default.py's lock_renew_seconds.
STALE_SECONDS = 300.0  # configs/default.py's lock_stale_seconds.


def is_url(path: str) -> bool:
  return "://" in path


def resolve(path: str | None, flag: str = "--workdir") -> str:
  """`path` as an absolute local path (or unchanged URL); refuses unusable ones."""
  if path is None or not str(path).strip():
    raise UserError(f"{flag} is empty; give the run's directory, e.g. "
                    f"{flag}=/tmp/my_run (it is created if missing).")
  path = str(path).strip()
  if is_url(path):
    return path.rstrip("/")
  resolved = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(resolved) and not os.path.isdir(resolved):
    raise UserError(f"{flag}={path} is a file, not a directory; pass a "
                    "directory (new or from an earlier run).")
  existing = resolved
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UserError(f"{flag}={path} cannot be created: {existing} is a file.")
  return resolved


def create(path: str) -> None:
  """Creates the workdir (and parents) or says why it cannot."""
  try:
    epath.Path(path).mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise UserError(f"Cannot create the workdir {path}: {error.strerror or error}; "
                    "choose a writable --workdir.") from error


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _describe(holder: dict) -> str:
  return (f"host {holder.get('host')!r}, pid {holder.get('pid')}, started "
          f"{holder.get('start_time')}")


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Someone else's live process.
  return True


class Lock:
  """Holds `<workdir>/trainer.lock` from `acquire()` to `release()`, renewed
  every `renew_seconds` by a daemon thread; stale after `stale_seconds`."""

  def __init__(self, workdir: str, renew_seconds: float = RENEW_SECONDS,
               stale_seconds: float = STALE_SECONDS):
    if not 0 < renew_seconds < stale_seconds:
      raise ValueError(f"The lock's renewal period ({renew_seconds} s) must be "
                       f"positive and shorter than its stale time ({stale_seconds} s).")
    self.path = epath.Path(workdir) / LOCK_NAME
    self.renew_seconds = float(renew_seconds)
    self.stale_seconds = float(stale_seconds)
    self._held = False
    self._stop_renewing = threading.Event()
    self._renewer: threading.Thread | None = None
    start_time = _now()
    self._record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start_time": start_time,
        "renewed_at": start_time,
        "stale_after_seconds": self.stale_seconds,
        "token": uuid.uuid4().hex,  # Tells this holder from a namesake.
    }

  def acquire(self) -> None:
    """Takes the lock, taking over a stale one; raises UserError if it is held."""
    if not self._try_create():
      holder = self._read(attempts=5)  # A new lock may not be written yet.
      reason = self._staleness(holder)
      if reason is None:
        age = self._age()
        renewed = "" if age is None else f", renewed {max(0, int(age))} s ago"
        raise UserError(
            f"Another trainer is using this workdir ({_describe(holder)}"
            f"{renewed}; lock file {self.path}). Wait for it to finish, stop it, "
            "or use another --workdir. A lock not renewed for "
            f"lock_stale_seconds={self.stale_seconds:g} is taken over "
            "automatically.")
      print(f"Taking over a stale lock on the workdir ({reason}).",
            file=sys.stderr, flush=True)
      if self._read() == holder:  # Not just taken over by another trainer.
        self.path.unlink(missing_ok=True)
      if not self._try_create():
        holder = self._read() or {}
        raise UserError(
            f"Another trainer took the workdir's lock first ({_describe(holder)}; "
            f"lock file {self.path}); use another --workdir or wait for it.")
    self._stop_renewing.clear()
    self._renewer = threading.Thread(target=self._renew_until_released,
                                     name="workdir-lock-renewal", daemon=True)
    self._renewer.start()

  def release(self) -> None:
    if not self._held:
      return
    self._held = False
    self._stop_renewing.set()
    if self._renewer is not None:
      self._renewer.join()
      self._renewer = None
    if self._is_mine(self._read()):
      self.path.unlink(missing_ok=True)

  def __enter__(self) -> "Lock":
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()

  def _text(self) -> str:
    return json.dumps(self._record) + "\n"

  def _is_mine(self, holder: dict | None) -> bool:
    return holder is not None and holder.get("token") == self._record["token"]

  def _try_create(self) -> bool:
    if is_url(str(self.path)):
      if self.path.exists():
        return False
      self.path.write_text(self._text())
    else:
      try:
        descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      except OSError as error:
        raise UserError(f"Cannot write the lock file {self.path}: "
                        f"{error.strerror or error}; the workdir must be "
                        "writable for training.") from error
      with os.fdopen(descriptor, "w") as file:
        file.write(self._text())
    self._held = True
    return True

  def _renew_until_released(self) -> None:
    """Rewrites the lock file every renew_seconds until `release()`.

    A failed write is retried at the next period (the lease outlives a few);
    a lock that another trainer took over is left alone, with a warning.
    """
    while not self._stop_renewing.wait(self.renew_seconds):
      try:
        holder = self._read(attempts=3)
        if holder is not None and not self._is_mine(holder):
          print(f"WARNING: the workdir's lock was taken over by "
                f"{_describe(holder)} (this trainer did not renew it for "
                f"lock_stale_seconds={self.stale_seconds:g}); two trainers may "
                "now write this workdir.", file=sys.stderr, flush=True)
          return
        self._record["renewed_at"] = _now()
        self._write()
      except Exception as error:  # pylint: disable=broad-exception-caught
        logging.warning("Could not renew the workdir lock %s: %s", self.path, error)

  def _write(self) -> None:
    """Rewrites the lock file whole: readers never see half of it."""
    if is_url(str(self.path)):
      self.path.write_text(self._text())
      return
    temporary = self.path.with_name(f".{LOCK_NAME}.{self._record['token']}")
    temporary.write_text(self._text())
    os.replace(temporary, self.path)

  def _read(self, attempts: int = 1) -> dict | None:
    for attempt in range(attempts):
      if attempt:
        time.sleep(0.2)
      try:
        holder = json.loads(self.path.read_text())
      except (OSError, ValueError):
        continue
      if isinstance(holder, dict):
        return holder
    return None

  def _age(self) -> float | None:
    """Seconds since the lock file was last written (its modification time)."""
    try:
      stat = self.path.stat()
    except Exception:  # pylint: disable=broad-exception-caught
      return None  # Gone, or a store without modification times.
    mtime = getattr(stat, "st_mtime", getattr(stat, "mtime", None))
    return None if mtime is None else time.time() - float(mtime)

  def _staleness(self, holder: dict | None) -> str | None:
    """Why the lock may be taken over; None while its holder may be alive."""
    if holder is None:
      return "unreadable"
    pid = holder.get("pid")
    if (holder.get("host") == self._record["host"] and isinstance(pid, int)
        and pid != os.getpid() and not _alive(pid)):
      return f"left by {_describe(holder)}, which is no longer running"
    age = self._age()
    if age is not None and age > self.stale_seconds:
      return (f"left by {_describe(holder)}, not renewed for {_duration(age)}, "
              f"more than lock_stale_seconds={self.stale_seconds:g}")
    return None

