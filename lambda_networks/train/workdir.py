"""The run's directory: an absolute path, and one trainer at a time.

`resolve` turns what the user typed into an absolute local path (or keeps a
URL such as gs://bucket/run) and refuses paths that cannot be a workdir,
before anything is written. `Lock` is a lock file in the workdir naming the
host, process id and start time of the trainer that holds it: a second
trainer is refused while the first lives; a lock left by a process that died
on this host (SIGKILL, power loss) is taken over with a message. Local locks
are created atomically (O_EXCL); on object stores (gs://) the check and the
write are two steps, so two trainers started in the same instant may both
pass. eval.py's result files are named, and found, here.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import socket
import sys
import time

from etils import epath

from lambda_networks.errors import UserError

LOCK_NAME = "trainer.lock"


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
  """Holds `<workdir>/trainer.lock` from `acquire()` to `release()`."""

  def __init__(self, workdir: str):
    self.path = epath.Path(workdir) / LOCK_NAME
    self._held = False
    self._record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start_time": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
    }

  def acquire(self) -> None:
    """Takes the lock, taking over a stale one; raises UserError if it is held."""
    if self._try_create():
      return
    holder = self._read(attempts=5)  # A new lock may not be written yet.
    if holder is not None and not self._is_stale(holder):
      raise UserError(
          f"Another trainer is using this workdir ({_describe(holder)}; lock "
          f"file {self.path}). Wait for it to finish, stop it, or use another "
          "--workdir. If that trainer is dead, delete the lock file.")
    reason = ("unreadable" if holder is None else
              f"left by {_describe(holder)}, which is no longer running")
    print(f"Taking over a stale lock on the workdir ({reason}).",
          file=sys.stderr, flush=True)
    self.path.unlink(missing_ok=True)
    if not self._try_create():
      holder = self._read() or {}
      raise UserError(
          f"Another trainer took the workdir's lock first ({_describe(holder)}; "
          f"lock file {self.path}); use another --workdir or wait for it.")

  def release(self) -> None:
    if not self._held:
      return
    self._held = False
    holder = self._read()
    if holder is not None and holder == self._record:
      self.path.unlink(missing_ok=True)

  def __enter__(self) -> "Lock":
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()

  def _try_create(self) -> bool:
    text = json.dumps(self._record) + "\n"
    if is_url(str(self.path)):
      if self.path.exists():
        return False
      self.path.write_text(text)
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
        file.write(text)
    self._held = True
    return True

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

  def _is_stale(self, holder: dict) -> bool:
    """A lock is stale only when its process provably died on this host."""
    if holder.get("host") != self._record["host"]:
      return False
    pid = holder.get("pid")
    return isinstance(pid, int) and pid != os.getpid() and not _alive(pid)


def metrics_file_name(split: str, step: int) -> str:
  """eval.py's result file for a split at a step: eval_<split>_step<N>.json."""
  return f"eval_{re.sub(r'[^A-Za-z0-9_.-]+', '_', split)}_step{step}.json"


def newest_metrics_file(workdir: str | pathlib.Path) -> pathlib.Path | None:
  """The eval_<split>_step<N>.json with the largest N (validation first), else
  the run's final_metrics.json, else None."""
  workdir = pathlib.Path(workdir)
  found = [(int(m[2]), m[1] == "validation", path)
           for path in workdir.glob("eval_*_step*.json")
           if (m := re.fullmatch(r"eval_(.+)_step(\d+)\.json", path.name))]
  final = workdir / "final_metrics.json"
  return max(found)[2] if found else (final if final.exists() else None)
