"""End-to-end tests of train.py / eval.py on CPU with 8 simulated devices.

Runs on 8 devices or several processes are subprocesses (XLA_FLAGS must be
set before JAX starts) with the tiny model of tests/tiny_config.py; `run`
and the shared `finished_run` (an uninterrupted 8-step run) are in
conftest.py. The 1-device run and a refusal after the build take train.py's
steps in this process (one CPU device; conftest.train_command). The longer
runs are early runs (conftest.early_run): they start with the session, the
tests check them.
Runs of 2 processes (jax.distributed on localhost, 4 devices each) check
agreement with 1 process, preemption by SIGTERM to one or both processes
and an exact resume of each host's data (mock ImageNet through tf.data),
and the workdir lease seen by every process.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lambda_networks.train import checkpointing
from lambda_networks.train import config_checks
from lambda_networks.train import workdir as workdir_lib
from configs import default
from conftest import (CONFIG, REPO, assert_same_state, early_run, run,
                      run_two_processes, train_command)


@early_run
def mock_tfds_runs(tmp_path_factory):
  """train.py on (mock) ImageNet with model overrides and eval_split=auto,
  then eval.py with only --workdir, then with flags, batch 24, raw weights."""
  tmp_path = tmp_path_factory.mktemp("mock_tfds")
  data_dir, workdir = tmp_path / "tfds", tmp_path / "run"
  mock = ["tests/tfds_mock.py", str(data_dir), "40", "37"]
  flags = [CONFIG, f"--workdir={workdir}", "--config.dataset=imagenet2012",
           f"--config.data_dir={data_dir}", "--config.eval_split=auto",
           "--config.image_size=32", "--config.randaugment_magnitude=5",
           "--config.num_train_steps=4", "--config.eval_batch_size=16",
           "--config.model_overrides.receptive_field=none",
           "--config.model_overrides.width_multiplier=0.5"]
  result = workdir / "eval_validation_step4.json"
  _, train_output = run([*mock, "train.py", *flags])
  _, eval_output = run([*mock, "eval.py", f"--workdir={workdir}"])
  eval_metrics = json.loads(result.read_text())
  run([*mock, "eval.py", *flags, "--config.eval_batch_size=24", "--weights=raw"])
  return dict(workdir=workdir, train_output=train_output, eval_output=eval_output,
              eval_metrics=eval_metrics, raw_metrics=json.loads(result.read_text()))


@pytest.mark.slow
def test_end_to_end_on_mock_tfds(mock_tfds_runs):
  workdir = mock_tfds_runs["workdir"]
  output = mock_tfds_runs["train_output"]
  assert "1000 classes" in output
  assert "eval at step 4 (ema weights, 37 examples of 'validation')" in output
  assert list(workdir.glob("events.out.tfevents.*")), "no TensorBoard events"
  assert (workdir / "checkpoints" / "4").is_dir()
  final = json.loads((workdir / "final_metrics.json").read_text())
  assert final["examples"] == 37 and final["step"] == 4

  # eval.py: another batch size, same count; raw weights on request.
  metrics = mock_tfds_runs["raw_metrics"]
  assert metrics["examples"] == 37
  assert metrics["weights"] == "raw" and metrics["step"] == 4
  assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
  assert np.isfinite(metrics["loss"])


@pytest.mark.slow
def test_eval_with_only_the_workdir_reproduces_training(mock_tfds_runs):
  workdir = mock_tfds_runs["workdir"]
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["eval_split"] == "validation"  # "auto" resolved from the dataset.
  assert saved["model_overrides"]["width_multiplier"] == 0.5
  final = json.loads((workdir / "final_metrics.json").read_text())
  # eval.py's own warning when the config it scores with differs from the run's.
  assert "differs from the run's" not in mock_tfds_runs["eval_output"]
  metrics = mock_tfds_runs["eval_metrics"]
  for key in ("top1", "top5", "loss", "examples", "step", "weights", "model",
              "model_overrides", "dataset", "split", "image_size", "dtype"):
    assert metrics[key] == final[key], key
  assert metrics["model_overrides"]["receptive_field"] == "none"
  assert metrics["model"] == "resnet26" and metrics["examples"] == 37


@early_run
def sigkilled_and_resumed_run(tmp_path_factory):
  """A run SIGKILLed after the save of step 6, then resumed to the end."""
  workdir = tmp_path_factory.mktemp("killed") / "run"
  code, killed_output = run(["tests/kill_after_save.py", "6", "train.py", CONFIG,
                             f"--workdir={workdir}"], expect_ok=False)
  # A half-written checkpoint (as a crash mid-save leaves) must be ignored.
  partial = workdir / "checkpoints" / "7.orbax-checkpoint-tmp-123"
  partial.mkdir(parents=True)
  (partial / "garbage").write_text("not a checkpoint")
  _, output = run(["train.py", CONFIG, f"--workdir={workdir}"])
  return workdir, code, killed_output, output


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(finished_run,
                                                       sigkilled_and_resumed_run):
  workdir, code, killed_output, output = sigkilled_and_resumed_run
  assert code == -signal.SIGKILL, killed_output[-3000:]
  resumed = [line for line in output.splitlines() if "Resumed from step" in line]
  assert resumed and ("step 3 " in resumed[0] or "step 6 " in resumed[0]), output
  assert_same_state(finished_run, workdir)  # Fails with the leaf that differs.


def plant_lock(workdir, host, age_seconds):
  """A lock file of a trainer on `host` that last renewed it `age_seconds` ago."""
  path = workdir / workdir_lib.LOCK_NAME
  path.write_text(json.dumps({"host": host, "pid": 4242,
                              "start_time": "2026-01-01T00:00:00+00:00"}))
  written = time.time() - age_seconds
  os.utime(path, (written, written))


@early_run
def two_process_run(tmp_path_factory):
  """The 8-step run as 2 processes of 4 devices (jax.distributed)."""
  workdir = tmp_path_factory.mktemp("two_process") / "run"
  codes, outputs = run_two_processes(workdir)
  return workdir, codes, outputs


@pytest.mark.slow
def test_two_processes_match_one_process(finished_run, two_process_run):
  workdir, codes, outputs = two_process_run
  for code, output in zip(codes, outputs):
    assert code == 0, output[-6000:]
  assert "8 devices in 2 process(es)" in outputs[0]
  assert "step 8/8" not in outputs[1]  # Only process 0 prints progress.
  assert_same_state(finished_run, workdir, rtol=2e-5, atol=2e-6)
  # Process 0 hashed its copy in the background: the saved arrays' checksums.
  checksums = workdir / "checkpoints" / "8" / "checksums" / checkpointing.CHECKSUMS_FILE
  assert json.loads(checksums.read_text()) == checkpointing.array_checksums(
      checkpointing.load_arrays(str(workdir)))


def _sigterm_at(step):
  return ["tests/signal_at_step.py", str(step), "SIGTERM"]


# Mock ImageNet for the 2-process preemption runs: 18 training examples per
# host and host batches of 8, so epochs end inside steps 3, 5 and 7 (at 2.25,
# 4.5 and 6.75 batches) and every step a run can resume from is mid-epoch.
MOCK_TRAIN_EXAMPLES, MOCK_EVAL_EXAMPLES = 36, 37
MOCK_FLAGS = ["--config.dataset=imagenet2012", "--config.eval_split=validation",
              "--config.image_size=16", "--config.shuffle_buffer=8",
              "--config.shuffle_chunk=4",
              "--config.model_overrides.receptive_field=none"]


@early_run
def preempted_two_process_runs(tmp_path_factory):
  """2 processes on mock ImageNet (each host reads its own share through
  tf.data): an uninterrupted run that saves every step, and a run stopped
  by SIGTERM to both processes during step 2 (SLURM signals every task),
  then resumed past the stale lock of a node that is gone (a job requeued
  elsewhere) and stopped by SIGTERM to process 1 only during its first step
  (a maintenance event on one host): (uninterrupted workdir, workdir,
  [(statuses, outputs)] of the 2 interrupted runs)."""
  tmp_path = tmp_path_factory.mktemp("preempted")
  data_dir = tmp_path / "tfds"
  # In a process of its own: this runs on the early-run thread, and TFDS's
  # builder state is global, shared with tests that read another mock
  # dataset on the main thread meanwhile.
  subprocess.run(
      [sys.executable, "-c", "import sys; sys.path.insert(0, 'tests'); "
       "import tfds_mock; tfds_mock.write_metadata(*sys.argv[1:2], "
       "*map(int, sys.argv[2:]))", str(data_dir), str(MOCK_TRAIN_EXAMPLES),
       str(MOCK_EVAL_EXAMPLES)], check=True, cwd=REPO)
  mock = ["tests/tfds_mock.py", str(data_dir), str(MOCK_TRAIN_EXAMPLES),
          str(MOCK_EVAL_EXAMPLES)]
  flags = [*MOCK_FLAGS, f"--config.data_dir={data_dir}"]
  uninterrupted, workdir = tmp_path / "uninterrupted", tmp_path / "run"
  codes, outputs = run_two_processes(
      uninterrupted, (mock, mock), [*flags, "--config.checkpoint_every_steps=1"])
  assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  runs = [run_two_processes(workdir, ([*_sigterm_at(2), *mock],
                                      [*_sigterm_at(2), *mock]), flags)]
  plant_lock(workdir, "node-gone", age_seconds=3600)
  runs.append(run_two_processes(workdir, (mock, [*_sigterm_at(1), *mock]),
                                flags))
  return uninterrupted, workdir, runs


def _stopped_step(codes, outputs) -> int:
  """The step where both processes stopped: exit 0 and one line (process 0)."""
  assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  stopped = re.findall(r"Stopped by a preemption notice at step (\d+); "
                       "checkpoint saved", outputs[0])
  assert len(stopped) == 1, outputs[0][-3000:]
  assert "Stopped by" not in outputs[1]
  assert "Traceback" not in outputs[0] + outputs[1]
  return int(stopped[0])


def _resumed_step(output) -> int:
  return int(re.search(r"Resumed from step (\d+)", output)[1])


@pytest.mark.slow
def test_sigterm_to_every_process_saves_one_step_and_exits_0(
    preempted_two_process_runs):
  _, workdir, runs = preempted_two_process_runs
  step = _stopped_step(*runs[0])
  assert 2 <= step < 8
  assert (workdir / "checkpoints" / str(step)).is_dir()
  assert _resumed_step(runs[1][1][0]) == step  # Saved by both processes.


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step(preempted_two_process_runs):
  _, workdir, runs = preempted_two_process_runs
  first, step = _stopped_step(*runs[0]), _stopped_step(*runs[1])
  assert first < step < 8
  assert (workdir / "checkpoints" / str(step)).is_dir()
  # The newest checkpoint, complete: what the next run resumes from.
  assert int(checkpointing.load_arrays(str(workdir))["step"]) == step


@pytest.mark.slow
def test_preempted_two_process_tfds_runs_resume_bit_identical(
    preempted_two_process_runs):
  """Each host's tf.data stream resumes mid-epoch exactly where it stopped
  (tests/test_data.py checks the streams): both interrupted runs' saves
  equal the uninterrupted run's checkpoints of the same steps, bit for bit
  (the same layout of processes and devices)."""
  uninterrupted, workdir, runs = preempted_two_process_runs
  codes, outputs = runs[1]
  assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  assert ("Taking over a stale lock on the workdir (left by host 'node-gone', "
          "pid 4242") in outputs[0]
  assert not (workdir / workdir_lib.LOCK_NAME).exists()
  for step in (_stopped_step(*runs[0]), _stopped_step(*runs[1])):
    assert (step * 8) % (MOCK_TRAIN_EXAMPLES // 2), step  # Mid-epoch.
    assert_same_state(uninterrupted, workdir, step)


@early_run
def refused_two_process_run(tmp_path_factory):
  """2 processes on a workdir whose lock another host renewed a minute ago:
  (statuses, outputs, files before, files after)."""
  workdir = tmp_path_factory.mktemp("leased") / "run"
  workdir.mkdir()
  plant_lock(workdir, "node-busy", age_seconds=60)
  files = lambda: {str(p): (p.stat().st_mtime_ns, p.read_bytes())
                   for p in workdir.rglob("*")}
  before = files()
  codes, outputs = run_two_processes(workdir, timeout=180)
  return codes, outputs, before, files()


@pytest.mark.slow
def test_a_refused_lock_ends_every_process(refused_two_process_run):
  codes, outputs, before, after = refused_two_process_run
  assert codes == [2, 2], outputs[0][-3000:] + outputs[1][-3000:]
  for output in outputs:  # The same one line from each process.
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output[-3000:]
    assert errors[0].startswith("Error: Another trainer is using this workdir "
                                "(host 'node-busy', pid 4242"), errors[0]
    assert re.search(r"renewed \d+ s ago", errors[0]), errors[0]
  assert after == before  # Nothing written.


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
  """The 8-step run on 1 device (the finished run has 8): train.py's path in
  this process, which has one CPU device (conftest.train_command)."""
  workdir = tmp_path_factory.mktemp("one_device") / "run"
  code, output = train_command([CONFIG, f"--workdir={workdir}"])
  assert code == 0, output[-3000:]
  assert "1 devices in 1 process(es)" in output, output[-3000:]
  return workdir


@pytest.mark.slow
def test_one_device_matches_eight_devices(finished_run, one_device_run):
  # The batch-norm statistics are global (the batch is sharded, XLA reduces
  # across devices), so they and everything after them agree up to the order
  # of floating-point sums.
  stats = checkpointing.load_arrays(str(finished_run))["batch_stats"]
  means = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(stats)[0]
           if "mean" in jax.tree_util.keystr(path)]
  assert len(means) >= 5 and all(np.abs(m).max() > 1e-3 for m in means)
  assert_same_state(finished_run, one_device_run, rtol=2e-5, atol=2e-6)


@pytest.fixture(scope="module")
def mismatched_run(tmp_path_factory, finished_run):
  """The finished run's checkpoints under another model, refused after the
  build: train.py's path in this process (conftest.train_command;
  the process's exit status is tested in test_train_safety)."""
  workdir = tmp_path_factory.mktemp("refused") / "other_model"
  shutil.copytree(finished_run / "checkpoints", workdir / "checkpoints")
  return train_command([CONFIG, f"--workdir={workdir}",
                        "--config.model_overrides.stage_widths=(8,24)"])


@early_run
def indivisible_batch_run(tmp_path_factory):
  """A batch the 8 devices cannot split, refused after JAX starts."""
  workdir = tmp_path_factory.mktemp("refused") / "batch"
  return run(["train.py", CONFIG, f"--workdir={workdir}",
              "--config.global_batch_size=12"], expect_ok=False)


@pytest.mark.slow
def test_mismatched_checkpoint_is_refused(mismatched_run):
  code, output = mismatched_run
  assert code != 0
  assert "different model or shape" in output
  assert "Use a new --workdir" in output


@pytest.mark.slow
def test_batch_not_divisible_by_the_devices_is_refused(indivisible_batch_run):
  code, output = indivisible_batch_run
  assert code != 0
  assert "not divisible by the 8 devices" in output, output[-3000:]


def test_unknown_model_is_refused():
  config = default.get_config()
  config.model = "lambda_resnet51"
  with pytest.raises(ValueError, match="unknown model 'lambda_resnet51'"):
    config_checks.check(config)
