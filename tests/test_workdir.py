"""The workdir: absolute paths, and one trainer at a time (the lock, a lease)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lambda_networks.errors import UserError
from lambda_networks.train import results
from lambda_networks.train import workdir as workdir_lib


def test_relative_workdirs_become_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert workdir_lib.resolve("runs/a") == str(tmp_path / "runs" / "a")
  assert workdir_lib.resolve("./b/../c/") == str(tmp_path / "c")
  assert workdir_lib.resolve("gs://bucket/run/") == "gs://bucket/run"


def _plant_lock(workdir, host, age_seconds, pid=1):
  """A lock file left by `host`, last written `age_seconds` ago."""
  path = workdir / workdir_lib.LOCK_NAME
  path.write_text(json.dumps({"host": host, "pid": pid,
                              "start_time": "2026-01-01T00:00:00+00:00"}))
  written = time.time() - age_seconds
  os.utime(path, (written, written))
  return path


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path, capsys):
  first = workdir_lib.Lock(str(tmp_path))
  first.acquire()
  holder = (tmp_path / workdir_lib.LOCK_NAME).read_text()
  assert f'"pid": {os.getpid()}' in holder
  with pytest.raises(UserError, match="Another trainer is using this workdir"):
    workdir_lib.Lock(str(tmp_path)).acquire()
  first.release()
  assert not (tmp_path / workdir_lib.LOCK_NAME).exists()

  # A fresh lock left by a process that is still running on this host ...
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    _plant_lock(tmp_path, socket.gethostname(), 0, pid=sleeper.pid)
    with pytest.raises(UserError, match=f"pid {sleeper.pid}"):
      workdir_lib.Lock(str(tmp_path)).acquire()
  finally:
    sleeper.kill()
    sleeper.wait()
  # ... is stale as soon as that process is dead: taken over, with a message.
  second = workdir_lib.Lock(str(tmp_path))
  second.acquire()
  assert (f"Taking over a stale lock on the workdir (left by host "
          f"'{socket.gethostname()}', pid {sleeper.pid}") in capsys.readouterr().err
  assert f'"pid": {os.getpid()}' in (tmp_path / workdir_lib.LOCK_NAME).read_text()
  second.release()


def test_a_lock_from_another_host_is_a_lease(tmp_path, capsys):
  # Renewed 10 s ago on another host (a live trainer elsewhere): refused,
  # and the file is left as it was.
  path = _plant_lock(tmp_path, "node-a", 10)
  before = (path.read_text(), path.stat().st_mtime_ns)
  with pytest.raises(UserError, match=r"\(host 'node-a', pid 1, started "
                     r"2026-01-01T00:00:00\+00:00, renewed 1\d s ago"):
    workdir_lib.Lock(str(tmp_path), stale_seconds=300).acquire()
  assert (path.read_text(), path.stat().st_mtime_ns) == before

  # Not renewed for two hours (its node died; the job was requeued here):
  # taken over, naming the old holder.
  _plant_lock(tmp_path, "node-a", 7200)
  lock = workdir_lib.Lock(str(tmp_path), stale_seconds=300)
  lock.acquire()
  err = capsys.readouterr().err
  assert ("Taking over a stale lock on the workdir (left by host 'node-a', pid "
          "1, started 2026-01-01T00:00:00+00:00, not renewed for 2:00:") in err
  assert "more than lock_stale_seconds=300" in err
  holder = json.loads(path.read_text())
  assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
  lock.release()
  assert not path.exists()


def test_the_holder_renews_its_lease_until_released(tmp_path, capsys):
  lock = workdir_lib.Lock(str(tmp_path), renew_seconds=0.05, stale_seconds=1)
  lock.acquire()
  path = tmp_path / workdir_lib.LOCK_NAME
  first = json.loads(path.read_text())
  old = time.time() - 3600  # Backdate it: only a renewal makes it fresh again.
  os.utime(path, (old, old))
  deadline = time.time() + 10
  while path.stat().st_mtime < time.time() - 60 and time.time() < deadline:
    time.sleep(0.05)
  renewed = json.loads(path.read_text())
  assert path.stat().st_mtime > time.time() - 60, "not renewed"
  assert {k: v for k, v in renewed.items() if k != "renewed_at"} == {
      k: v for k, v in first.items() if k != "renewed_at"}
  with pytest.raises(UserError, match="Another trainer is using this workdir"):
    workdir_lib.Lock(str(tmp_path), renew_seconds=0.05, stale_seconds=1).acquire()

  # Taken over while this holder was frozen: it warns and leaves the new
  # holder's lock alone, also when released.
  _plant_lock(tmp_path, "node-b", 0, pid=7)
  deadline = time.time() + 10
  while "taken over by host 'node-b'" not in capsys.readouterr().err:
    assert time.time() < deadline, "no warning"
    if json.loads(path.read_text())["host"] != "node-b":
      # A renewal that read the file just before the plant; the next sees it.
      _plant_lock(tmp_path, "node-b", 0, pid=7)
    time.sleep(0.05)
  lock.release()
  assert json.loads(path.read_text())["host"] == "node-b"
  assert not list(tmp_path.glob(".trainer.lock*"))  # No renewal leftovers.


def test_a_lease_shorter_than_its_renewal_is_refused(tmp_path):
  with pytest.raises(ValueError, match="shorter than its stale time"):
    workdir_lib.Lock(str(tmp_path), renew_seconds=60, stale_seconds=60)


def test_eval_results_are_named_and_found_newest_step_first(tmp_path):
  assert results.newest_metrics_file(tmp_path) is None
  (tmp_path / "final_metrics.json").write_text("{}")
  assert results.newest_metrics_file(tmp_path).name == "final_metrics.json"
  names = [results.metrics_file_name(split, step) for split, step in (
      ("validation", 10), ("train[:5%]", 30), ("test", 30), ("validation", 30))]
  assert names[1] == "eval_train_5__step30.json"  # A file name from any split.
  for name in names:
    (tmp_path / name).write_text("{}")
  # The largest step wins over final_metrics.json; at a tie, validation.
  assert results.newest_metrics_file(tmp_path).name == names[3]
  (tmp_path / names[3]).unlink()
  assert results.newest_metrics_file(tmp_path).name in names[1:3]
