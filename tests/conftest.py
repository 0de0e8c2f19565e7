"""Helpers shared by the test files.

Keys, abstract models and a jitted apply for the model tests; subprocess runs
of train.py / eval.py (one process or two), train.py's steps in this process
(`train_command`) and its command-line checks (`validate_command_line`), and
one finished training run for the end-to-end tests.
Runs registered with `early_run` start with the session, in a background
thread, so they overlap the in-process tests (mostly one core's work).
pytest puts tests/ on sys.path (no __init__.py), so test files import the
functions with `from conftest import ...`; fixtures need no import.
"""

import concurrent.futures
import contextlib
import functools
import inspect
import io
import os
import pathlib
import socket
import subprocess
import sys
import time

# Tests compile hundreds of small XLA programs and run each a few times, so
# compiling dominates: without LLVM's optimisations they compile about a
# third faster, and with XLA's classic CPU fusion emitters instead of its
# newer MLIR ones about twice as fast again, computing the same thing (no
# fast math); runs a test compares all use the flags. Set before JAX starts a
# backend; subprocesses (train.py, eval.py, scripts) inherit them.
FAST_COMPILE_FLAGS = " ".join(("--xla_backend_optimization_level=0",
                              "--xla_cpu_use_fusion_emitters=false",
                              "--xla_cpu_parallel_codegen_split_count=1"))
os.environ["XLA_FLAGS"] = " ".join(
    filter(None, (os.environ.get("XLA_FLAGS"), FAST_COMPILE_FLAGS)))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tfds_mock
from absl import flags
from flax import nnx
from ml_collections import config_flags

from lambda_networks.train import checkpointing
from lambda_networks.train import cli
from lambda_networks.train import config_checks
from lambda_networks.train import model_flags
from lambda_networks.train import resolved_config
from lambda_networks.train import trainer
from lambda_networks.train import workdir as workdir_lib

from lambda_networks.models import get_model


def rbg_rngs(seed: int = 0) -> nnx.Rngs:
  """RBG keys: tiny modules initialise with about half the XLA compiles' cost."""
  return nnx.Rngs(params=jax.random.key(seed, impl="rbg"),
                  dropout=jax.random.key(seed + 1, impl="rbg"))


@nnx.jit
def jit_apply(module: nnx.Module, inputs: jax.Array) -> jax.Array:
  """`module(inputs)` under one shared nnx.jit (one compile per graph)."""
  return module(inputs)


@functools.lru_cache(maxsize=None)
def abstract_model(name: str, num_classes: int = 1000, **overrides) -> nnx.Module:
  """A registered model built abstractly (nnx.eval_shape): shapes, no arrays.

  Cached: several tests read the same full-size model; none may modify it.
  """
  return nnx.eval_shape(lambda: get_model(name, num_classes=num_classes,
                                          rngs=nnx.Rngs(0), **overrides))


REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "--config=tests/tiny_config.py"
SYNTHETIC_STEPS = 8
# Subprocesses share compiled programs (same model, devices and shapes).
COMPILATION_CACHE = REPO / ".pytest_cache" / "jax_compilation_cache"


def run(args, *, devices=8, expect_ok=True, timeout=420, wait=True, extra_env=None):
  """Runs `python ARGS` in the repo on `devices` simulated CPU devices.

  Returns (exit status, stdout + stderr), or the Popen when wait=False.
  """
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
             XLA_FLAGS=(f"--xla_force_host_platform_device_count={devices} "
                        f"{FAST_COMPILE_FLAGS}"),
             JAX_COMPILATION_CACHE_DIR=str(COMPILATION_CACHE),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
  env.update(extra_env or {})
  command = [sys.executable, *args]
  if not wait:
    return subprocess.Popen(command, cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  result = subprocess.run(command, cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout)
  output = result.stdout + result.stderr
  if expect_ok and result.returncode:
    pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{output[-6000:]}")
  return result.returncode, output


def assert_same_state(expected_dir, actual_dir, step=SYNTHETIC_STEPS,
                      **tolerance):
  """Compares two runs' checkpoints of `step` (by default the final one),
  leaf by leaf: exactly, or within `tolerance` (assert_allclose's)."""
  expected = checkpointing.load_arrays(str(expected_dir), step)
  actual = checkpointing.load_arrays(str(actual_dir), step)
  assert int(actual["step"]) == int(expected["step"]) == step
  flat_expected = jax.tree_util.tree_flatten_with_path(expected)[0]
  flat_actual = jax.tree_util.tree_flatten_with_path(actual)[0]
  assert [p for p, _ in flat_expected] == [p for p, _ in flat_actual]
  assert len(flat_expected) > 20
  for (path, want), (_, got) in zip(flat_expected, flat_actual):
    name = jax.tree_util.keystr(path)
    if tolerance:
      np.testing.assert_allclose(got, want, err_msg=name, **tolerance)
    else:
      np.testing.assert_array_equal(got, want, err_msg=name)

# train.py's steps in this process, and train.py as two processes.

def _train_flags(argv: list[str]) -> flags.FlagValues:
  """train.py's --config and --workdir, on a fresh set of flags.

  The config flag reads its overrides from `argv` less the model's
  (`cli.parse_flags` applies those), as train.py's reads sys.argv.
  """
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values,
                                  lock_config=True,
                                  sys_argv=model_flags.extract(argv)[0])
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
  return flag_values


def validate_command_line(argv: list[str]) -> None:
  """What train.py checks before building anything, on a fresh set of flags."""
  argv = ["train.py", *argv]
  flag_values = _train_flags(argv)

  @cli.report_user_errors
  def main(unused_argv):
    cli.parse_flags(argv, flag_values)
    config_checks.check(flag_values.config, given=cli.config_overrides(argv))
    workdir_lib.resolve(flag_values.workdir)

  main(argv)


def train_command(argv: list[str]) -> tuple[int, str]:
  """train.py ARGV in this process (one process, 1 device; no
  jax.distributed): train.py's main, step for step after `cli.start`, under
  its error reporting. Returns (exit status, stdout + stderr)."""
  argv = ["train.py", *argv]
  flag_values = _train_flags(argv)

  @cli.report_user_errors
  def main(unused_argv):
    cli.parse_flags(argv, flag_values)
    workdir = workdir_lib.resolve(flag_values.workdir)
    prepared = resolved_config.prepare(
        flag_values.config, given=cli.config_overrides(argv), workdir=workdir)
    trainer.train(prepared, workdir)

  output = io.StringIO()
  with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
    try:
      main(argv)
      status = 0
    except SystemExit as exit_info:
      status = exit_info.code
  return status, output.getvalue()


def _free_port():
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


def run_two_processes(workdir, wrappers=((), ()), flags=(), timeout=420):
  """train.py as 2 processes of 4 devices (jax.distributed on localhost),
  with `flags` after the tiny config, process i started through
  `wrappers[i]` (helper scripts and their arguments); ([exit statuses],
  [outputs]). A process still running after `timeout` seconds is killed and
  fails the test."""
  address = f"localhost:{_free_port()}"
  processes = [
      run([*wrappers[index], "train.py", CONFIG, f"--workdir={workdir}",
           *flags, f"--coordinator_address={address}", "--num_processes=2",
           f"--process_id={index}"], devices=4, wait=False)
      for index in range(2)
  ]
  deadline = time.monotonic() + timeout
  try:
    outputs = [p.communicate(timeout=max(1, deadline - time.monotonic()))[0]
               for p in processes]
  except subprocess.TimeoutExpired:
    for process in processes:
      process.kill()
    outputs = [p.communicate()[0] for p in processes]
    pytest.fail(f"2-process run still running after {timeout} s:\n"
                + "\n".join(output[-3000:] for output in outputs))
  return [p.returncode for p in processes], outputs


# Name -> function of each early run, in the order they start.
_EARLY_RUNS = {}


def early_run(function):
  """Makes `function(tmp_path_factory, **earlier_runs)` a session fixture.

  The fixture has the function's name. If a selected test uses it, the
  function starts when the session starts, in one background thread that
  runs the early runs one after another in the order they were registered;
  its other parameters name early runs registered before it, whose results
  it receives. The fixture waits for the result (or raises its failure).
  """
  _EARLY_RUNS[function.__name__] = function

  @pytest.fixture(scope="session", name=function.__name__)
  def fixture(early_runs):
    waited = time.monotonic()
    try:
      return early_runs[function.__name__].result()
    finally:
      _EARLY_RUN_WAITS[function.__name__] = time.monotonic() - waited

  fixture.__doc__ = function.__doc__
  return fixture


def _earlier_runs(function) -> list[str]:
  return [name for name in inspect.signature(function).parameters
          if name != "tmp_path_factory"]


# Name -> (start, end) of each early run, seconds since the session started,
# and how long the tests waited for it.
_EARLY_RUN_TIMES, _EARLY_RUN_WAITS = {}, {}
_SESSION_START = time.monotonic()


def _start(function, tmp_path_factory, runs):
  earlier = {name: runs[name].result() for name in _earlier_runs(function)}
  start = time.monotonic() - _SESSION_START
  try:
    return function(tmp_path_factory, **earlier)
  finally:
    _EARLY_RUN_TIMES[function.__name__] = (start, time.monotonic() - _SESSION_START)


def pytest_terminal_summary(terminalreporter):
  """When each early run ran (they are the suite's critical path)."""
  if _EARLY_RUN_TIMES and terminalreporter.config.option.durations is not None:
    terminalreporter.section("early runs (one background thread)")
    for name, (start, end) in _EARLY_RUN_TIMES.items():
      terminalreporter.write_line(
          f"{end - start:7.1f}s  {name}  (from {start:.0f}s to {end:.0f}s; "
          f"the tests waited {_EARLY_RUN_WAITS.get(name, 0):.1f}s for it)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
  """Test files that read early runs go last, in the order of the latest
  early run each reads: the other tests fill the time the runs take, and
  the tests wait for none of them (pytest's order otherwise)."""
  order = {name: index for index, name in enumerate(_EARLY_RUNS)}
  last_run = {}  # Test file -> index of the latest early run it reads (-1: none).
  for item in items:
    indices = [order[name] for name in item.fixturenames if name in order]
    last_run[item.path] = max(last_run.get(item.path, -1), *indices, -1)
  items.sort(key=lambda item: last_run[item.path])  # Stable: order kept within.


@pytest.fixture(scope="session", autouse=True)
def early_runs(request, tmp_path_factory):
  """Futures of the early runs the selected tests use, started now."""
  needed = {name for item in request.session.items for name in item.fixturenames}
  for name in reversed(list(_EARLY_RUNS)):  # Each needs only earlier ones.
    if name in needed:
      needed.update(_earlier_runs(_EARLY_RUNS[name]))
  runs = {}
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
    for name, function in _EARLY_RUNS.items():
      if name in needed:
        runs[name] = executor.submit(_start, function, tmp_path_factory, runs)
    yield runs


@early_run
def finished_run(tmp_path_factory):
  """An uninterrupted 8-step run (1 process, 8 devices), started with a
  relative --workdir. Shared: tests may read it or run failing commands
  against it, and must leave it as they found it."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  relative = os.path.relpath(workdir, REPO)
  assert not os.path.isabs(relative)
  _, output = run(["train.py", CONFIG, f"--workdir={relative}"])
  assert f"step {SYNTHETIC_STEPS}/{SYNTHETIC_STEPS}" in output
  return workdir


@pytest.fixture(scope="module")
def mock_imagenet(tmp_path_factory):
  """A TFDS data_dir with mock imagenet2012 (30 train / 37 validation), active
  for the module's tests."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  tfds_mock.write_metadata(data_dir, num_train=30, num_eval=37)
  with tfds.testing.mock_data(data_dir=data_dir, as_dataset_fn=tfds_mock.as_dataset,
                              policy=tfds.testing.MockPolicy.USE_FILES):
    yield data_dir
