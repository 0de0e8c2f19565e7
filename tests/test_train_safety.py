"""End to end: nothing typed or done to a workdir loses work or crashes late.

train.py and eval.py as subprocesses (8 simulated devices, the tiny model):
a relative workdir, bad command lines against a finished run (one line,
exit 2, files unchanged; most through train.py's path in this process), a live lock, a blocked result file, Ctrl-C, and
damaged checkpoints, each compared bit for bit with an uninterrupted run.
The runs are early runs (conftest.early_run), each on its own copy of a
finished or interrupted run; the tests check what they left.
"""

import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lambda_networks.train import checkpointing
from lambda_networks import native_logs
from lambda_networks.train import workdir as workdir_lib
from conftest import (CONFIG, REPO, SYNTHETIC_STEPS, assert_same_state,
                      early_run, run, train_command)

pytestmark = pytest.mark.slow


def snapshot(directory: pathlib.Path) -> dict[str, tuple[int, int, str]]:
  """Every file under `directory`: size, modification time and SHA-256."""
  return {str(path.relative_to(directory)):
          (path.stat().st_size, path.stat().st_mtime_ns,
           hashlib.sha256(path.read_bytes()).hexdigest())
          for path in sorted(directory.rglob("*")) if path.is_file()}


@early_run
def interrupted_run(tmp_path_factory):
  """A run stopped by Ctrl-C (SIGINT) during step 7: (workdir, status, output)."""
  workdir = tmp_path_factory.mktemp("interrupted") / "run"
  code, output = run(["tests/signal_at_step.py", "7", "SIGINT", "train.py",
                      CONFIG, f"--workdir={workdir}"], expect_ok=False)
  return workdir, code, output


def _interrupted_workdir(interrupted_run) -> pathlib.Path:
  workdir, code, output = interrupted_run
  assert code == 130, output[-3000:]
  assert "Stopped by SIGINT at step 7; checkpoint saved" in output
  assert "Traceback" not in output
  return workdir


def test_relative_workdir_runs_end_to_end(finished_run):
  final = json.loads((finished_run / "final_metrics.json").read_text())
  assert final["step"] == SYNTHETIC_STEPS and final["examples"] == 37
  step_dir = finished_run / "checkpoints" / str(SYNTHETIC_STEPS)
  assert sorted(p.name for p in step_dir.iterdir() if p.is_dir()) == [
      "checksums", "meta", "state"]
  assert not (finished_run / workdir_lib.LOCK_NAME).exists()


# (script, extra flags, exit status, message fragment, traceback shown?, run
# as a process?). The refusals not run as processes take train.py's path in
# this process (conftest.train_command): the same checks, lines and
# status, without a process start each; the two processes prove the real exit
# status, one line on stderr (a traceback with --verbosity=1) and nothing
# written, for train.py and eval.py.
BAD_RUNS = [
    ("train.py", ["--config.num_train_steps=abc"], 2,
     "--config.num_train_steps=abc: invalid literal for int()", False, False),
    ("train.py", ["--config.learning_rate=0.1"], 2,
     "unknown config field 'learning_rate' (overrides given: "
     "--config.learning_rate). Did you mean \"base_learning_rate\"", False,
     False),
    ("train.py", ["--config.num_train_steps=-5", "--verbosity=1"], 2,
     "num_train_steps=-5 is out of range", True, True),
    ("train.py", ["--config.dataset=mnistt", "--config.image_size=28"], 2,
     "config.dataset='mnistt' is not a TFDS dataset: did you mean 'mnist'",
     False, False),
    ("train.py", [], 0, "This run is already complete: step 8 of 8", False,
     False),
    ("train.py", ["--config.num_train_steps=5"], 2,
     "is at step 8, past this config's 5 steps; nothing was changed", False,
     False),
    ("eval.py", ["--step=99"], 2, "No checkpoint for step 99", False, True),
    ("train.py", ["--config.model_overrides.image_size=16"], 2,
     "config.model_overrides.image_size=16 does not match the 32×32 images",
     False, False),
]


def _run_id(script: str, extra: list[str]) -> str:
  return f"{script} {' '.join(extra)}"


def _bad_runs(tmp_path_factory, finished_run, as_process: bool):
  """Each of BAD_RUNS run `as_process` (or not) against its own copy of the
  finished run, by a relative path: {id: (status, output, files before, files
  after)}."""
  results = {}
  for script, extra, *_, process in BAD_RUNS:
    if process != as_process:
      continue
    workdir = tmp_path_factory.mktemp("bad_run") / "run"
    shutil.copytree(finished_run, workdir)
    before = snapshot(workdir)
    if process:
      code, output = run([script, CONFIG, f"--workdir={os.path.relpath(workdir, REPO)}",
                          *extra], expect_ok=False)
    else:
      code, output = train_command([CONFIG, f"--workdir={os.path.relpath(workdir)}",
                                    *extra])
    results[_run_id(script, extra)] = code, output, before, snapshot(workdir)
  return results


@early_run
def bad_runs(tmp_path_factory, finished_run):
  """The BAD_RUNS run as processes."""
  return _bad_runs(tmp_path_factory, finished_run, as_process=True)


@pytest.fixture(scope="module")
def bad_runs_in_process(tmp_path_factory, finished_run):
  """The other BAD_RUNS, in this process."""
  return _bad_runs(tmp_path_factory, finished_run, as_process=False)


@pytest.mark.parametrize("script,extra,status,message,traceback,process",
                         BAD_RUNS, ids=[_run_id(s, e) for s, e, *_ in BAD_RUNS])
def test_bad_runs_leave_the_finished_workdir_unchanged(
    bad_runs, request, script, extra, status, message, traceback, process):
  runs = bad_runs if process else request.getfixturevalue("bad_runs_in_process")
  code, output, before, after = runs[_run_id(script, extra)]
  assert code == status, output[-3000:]
  assert message in output, output[-3000:]
  assert ("Traceback" in output) == traceback, output[-3000:]
  if status:
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output[-3000:]
  assert after == before


@pytest.fixture(scope="module")
def live_lock_run(tmp_path_factory, finished_run):
  """train.py's path (in this process, as the refusals of BAD_RUNS) on a
  copy of the finished run locked by a live process: (holder's pid, status,
  output, files before, files after)."""
  workdir = tmp_path_factory.mktemp("locked") / "run"
  shutil.copytree(finished_run, workdir)
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
  try:
    (workdir / workdir_lib.LOCK_NAME).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": sleeper.pid,
         "start_time": "2026-01-01T00:00:00+00:00"}))
    before = snapshot(workdir)
    code, output = train_command([CONFIG, f"--workdir={workdir}",
                                  "--config.num_train_steps=12"])
    return sleeper.pid, code, output, before, snapshot(workdir)
  finally:
    sleeper.kill()
    sleeper.wait()


def test_a_live_trainer_keeps_its_workdir(live_lock_run):
  pid, code, output, before, after = live_lock_run
  assert code == 2, output[-3000:]
  assert f"Another trainer is using this workdir (host '{socket.gethostname()}', " \
         f"pid {pid}" in output
  assert after == before


@early_run
def blocked_eval_run(tmp_path_factory, finished_run):
  """eval.py on a copy of the finished run whose result file cannot be
  written (a directory stands in its place): (workdir, status, output)."""
  workdir = tmp_path_factory.mktemp("blocked") / "run"
  shutil.copytree(finished_run, workdir)
  (workdir / f"eval_test_step{SYNTHETIC_STEPS}.json").mkdir()
  code, output = run(["eval.py", CONFIG, f"--workdir={os.path.relpath(workdir, REPO)}"],
                     expect_ok=False)
  return workdir, code, output


def test_eval_prints_its_result_before_a_failed_write(blocked_eval_run):
  workdir, code, output = blocked_eval_run
  assert code == 2, output[-3000:]
  result_at = output.index('"top1"')
  blocked = workdir / f"eval_test_step{SYNTHETIC_STEPS}.json"
  error_at = output.index(f"Error: Could not write {blocked}")
  assert result_at < error_at and "Traceback" not in output
  final = json.loads((workdir / "final_metrics.json").read_text())
  assert f'"top1": {final["top1"]}' in output  # Same weights, same score.


@early_run
def resumed_after_sigint(tmp_path_factory, interrupted_run):
  """A copy of the interrupted run, run again to the end."""
  workdir = tmp_path_factory.mktemp("resumed") / "run"
  shutil.copytree(interrupted_run[0], workdir)
  listed = sorted(p.name for p in workdir.iterdir())
  _, output = run(["train.py", CONFIG, f"--workdir={workdir}"])
  return workdir, listed, output


def test_sigint_saves_and_resumes_exactly(finished_run, interrupted_run,
                                          resumed_after_sigint):
  interrupted = _interrupted_workdir(interrupted_run)
  workdir, listed, output = resumed_after_sigint
  assert (interrupted / "checkpoints" / "7").is_dir()
  assert workdir_lib.LOCK_NAME not in listed
  assert "Resumed from step 7" in output
  assert_same_state(finished_run, workdir)


def _array_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  """Every data file of a step's arrays. All of them: OCDBT leaves some that
  the saved tree no longer references, so damaging one chosen by size may
  damage nothing."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()
           and p.parent.name == "d"]
  assert files, f"no array data files under {step_dir}"
  return files


def _flip_one_bit_silently(workdir: pathlib.Path, step: int) -> None:
  """Rewrites a step's arrays, one bit changed, as valid files (silent damage)."""
  arrays = checkpointing.load_arrays(str(workdir), step)
  kernel = np.array(arrays["params"]["head"]["kernel"])
  kernel.view(np.uint32).flat[5] ^= 1 << 20
  arrays["params"]["head"]["kernel"] = kernel
  tree = jax.tree.map(jnp.asarray, arrays)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(workdir / "checkpoints" / str(step) / "state", tree, force=True)


@early_run
def resumed_from_damaged_checkpoints(tmp_path_factory, interrupted_run):
  """A copy of the interrupted run with checkpoint 7's files truncated, 6
  silently changed, 3's array files missing and the lock of a dead trainer,
  run again."""
  workdir = tmp_path_factory.mktemp("damaged") / "run"
  shutil.copytree(interrupted_run[0], workdir)
  checkpoints = workdir / "checkpoints"
  steps = sorted(int(p.name) for p in checkpoints.iterdir())
  if steps != [1, 3, 6, 7]:
    return workdir, steps, ""
  for truncated in _array_files(checkpoints / "7"):
    truncated.write_bytes(truncated.read_bytes()[:truncated.stat().st_size // 2])
  _flip_one_bit_silently(workdir, 6)
  for missing in _array_files(checkpoints / "3"):
    missing.unlink()
  # The lock of a trainer that died (SIGKILL) on this host.
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  (workdir / workdir_lib.LOCK_NAME).write_text(json.dumps(
      {"host": socket.gethostname(), "pid": int(dead.stdout), "start_time": "x"}))
  _, output = run(["train.py", CONFIG, f"--workdir={workdir}"])
  return workdir, steps, output


def test_damaged_checkpoints_fall_back_to_the_newest_good_one(
    finished_run, interrupted_run, resumed_from_damaged_checkpoints):
  _interrupted_workdir(interrupted_run)
  workdir, steps, output = resumed_from_damaged_checkpoints
  checkpoints = workdir / "checkpoints"
  assert steps == [1, 3, 6, 7]
  assert "Taking over a stale lock" in output, output[-5000:]
  assert f"Checkpoint {checkpoints / '7'} is damaged (" in output, output[-5000:]
  assert (f"Checkpoint {checkpoints / '6'} is damaged (CorruptCheckpointError: 1 "
          "array(s)") in output and "params/head/kernel" in output, output[-5000:]
  assert f"Checkpoint {checkpoints / '3'} is damaged" in output, output[-5000:]
  assert "Resumed from step 1" in output, output[-5000:]
  # TensorStore's I/O threads sometimes print "Event loop is closed"
  # tracebacks from asyncio/Orbax after a failed read (upstream noise,
  # harmless, interleaved between threads); no traceback passes through the
  # project's code.
  frames = [line for line in output.splitlines() if 'File "' in line]
  assert not [line for line in frames
              if "train.py" in line or "lambda_networks" in line], frames
  for step in (3, 6, 7):  # Set aside, never deleted.
    assert (checkpoints / f"{step}.corrupt" / "state").is_dir()
  assert_same_state(finished_run, workdir)



# Reads part of a cached dataset: TensorFlow's C++ reader warns about it on
# every machine (the notice users saw at the top of each run).
_CACHE_NOTICE = "did not fully read the dataset being cached"
_READ_PART_OF_A_CACHE = """
from lambda_networks import native_logs
native_logs.quiet()
import jax  # Sets its own default level if none is set.
import tensorflow as tf
print("read", [int(x) for x in tf.data.Dataset.range(10).cache().take(2)])
"""


def test_tensorflow_notices_are_quiet_unless_the_user_sets_the_level():
  names = tuple(native_logs.DEFAULTS)
  env = {name: value for name, value in os.environ.items() if name not in names}
  env["PYTHONPATH"] = str(REPO)
  user_levels = {name: "0" if name == "TF_CPP_MIN_LOG_LEVEL" else "1"
                 for name in names}
  processes = [
      subprocess.Popen([sys.executable, "-c", _READ_PART_OF_A_CACHE], cwd=REPO,
                       env=dict(env, **extra), text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
      for extra in ({}, user_levels)]
  quiet, loud = (process.communicate(timeout=120)[0] for process in processes)
  assert "read [0, 1]" in quiet and "read [0, 1]" in loud, quiet + loud
  assert _CACHE_NOTICE not in quiet, quiet
  assert "absl::InitializeLog" not in quiet, quiet
  assert _CACHE_NOTICE in loud, loud  # The user's own setting wins.
