"""The workdir: absolute paths, and one trainer at a time (the lock)."""

import os
import subprocess
import sys

import pytest

from lambda_networks.errors import UserError
from lambda_networks.train import workdir as workdir_lib


def test_relative_workdirs_become_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert workdir_lib.resolve("runs/a") == str(tmp_path / "runs" / "a")
  assert workdir_lib.resolve("./b/../c/") == str(tmp_path / "c")
  assert workdir_lib.resolve("gs://bucket/run/") == "gs://bucket/run"


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path, capsys):
  first = workdir_lib.Lock(str(tmp_path))
  first.acquire()
  holder = (tmp_path / workdir_lib.LOCK_NAME).read_text()
  assert f'"pid": {os.getpid()}' in holder
  with pytest.raises(UserError, match="Another trainer is using this workdir"):
    workdir_lib.Lock(str(tmp_path)).acquire()
  first.release()
  assert not (tmp_path / workdir_lib.LOCK_NAME).exists()

  # A lock left by a process that is still running on this host ...
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    first._record["pid"] = sleeper.pid  # pylint: disable=protected-access
    first.acquire()
    with pytest.raises(UserError, match=f"pid {sleeper.pid}"):
      workdir_lib.Lock(str(tmp_path)).acquire()
  finally:
    sleeper.kill()
    sleeper.wait()
  # ... is stale once that process is dead: taken over, with a message.
  second = workdir_lib.Lock(str(tmp_path))
  second.acquire()
  assert "Taking over a stale lock" in capsys.readouterr().err
  assert f'"pid": {os.getpid()}' in (tmp_path / workdir_lib.LOCK_NAME).read_text()
  second.release()

  # A lock from another host is never taken over.
  (tmp_path / workdir_lib.LOCK_NAME).write_text(
      '{"host": "elsewhere", "pid": 1, "start_time": "earlier"}')
  with pytest.raises(UserError, match="host 'elsewhere'"):
    workdir_lib.Lock(str(tmp_path)).acquire()


def test_eval_results_are_named_and_found_newest_step_first(tmp_path):
  assert workdir_lib.newest_metrics_file(tmp_path) is None
  (tmp_path / "final_metrics.json").write_text("{}")
  assert workdir_lib.newest_metrics_file(tmp_path).name == "final_metrics.json"
  names = [workdir_lib.metrics_file_name(split, step) for split, step in (
      ("validation", 10), ("train[:5%]", 30), ("test", 30), ("validation", 30))]
  assert names[1] == "eval_train_5__step30.json"  # A file name from any split.
  for name in names:
    (tmp_path / name).write_text("{}")
  # The largest step wins over final_metrics.json; at a tie, validation.
  assert workdir_lib.newest_metrics_file(tmp_path).name == names[3]
  (tmp_path / names[3]).unlink()
  assert workdir_lib.newest_metrics_file(tmp_path).name in names[1:3]
