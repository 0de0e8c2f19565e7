"""What the training loop does between steps: one object per action.

Each action owns its schedule and its state; `due(step)` (step: the number
of steps done) says whether it acts after that step. `DelayedMetrics` is the
one-step-delayed read of each step's metrics (and their finiteness check)
that the log lines and the checkpoints' health records are made of.

clu's `PeriodicAction`s decide and act in one call; the loop must know which
actions are due before any acts, to read the last step's metrics first, so
only clu's `Profile` is used (inside `Profiler`).
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from etils import epath

from lambda_networks.errors import UserError
from lambda_networks.train import checkpointing
from lambda_networks.train import evaluation
from lambda_networks.train import health
from lambda_networks.train import progress
from lambda_networks.train import run_config
from lambda_networks.train.progress import console

Values = dict[str, float]


class NonFiniteLossError(UserError, FloatingPointError):
  """The loss or the gradients became NaN or infinite (the fix: a lower rate)."""


def check_finite(step: int, metrics: Any, manager,
                 baseline: health.Baseline) -> Values:
  """The step's metrics as floats; raises NonFiniteLossError if not finite."""
  values = {key: float(value) for key, value in jax.device_get(metrics).items()}
  if not values.pop("finite"):
    manager.wait_until_finished()  # The report lists every saved step.
    raise NonFiniteLossError(
        f"Non-finite loss or gradients at step {step} (loss {values['loss']}); "
        "stopped without saving. Lower config.base_learning_rate or lengthen "
        "the warm-up (config.warmup_epochs or warmup_steps). " + health.divergence_report(manager, baseline))
  return values


class DelayedMetrics:
  """Reads each step's metrics on the host one step late.

  Reading step N's metrics waits for step N to finish on the device; read
  after step N+1 is dispatched, it finds N done and the device busy with
  N+1, so the host never stalls the device. `settle()` reads the newest step
  too, before anything that must see every step so far (a log line, a
  checkpoint's health record, an evaluation, a stop). Each read is checked
  (`check_finite`) and handed to every consumer.
  """

  def __init__(self, check: Callable[[int, Any], Values],
               consumers: tuple[Callable[[Values], None], ...]):
    self._check = check
    self._consumers = consumers
    self._pending: tuple[int, Any] | None = None

  def dispatched(self, step: int, metrics: Any) -> None:
    """Step `step` was dispatched: reads the one before it."""
    self.settle()
    self._pending = (step, metrics)

  def settle(self) -> None:
    """Reads the newest dispatched step's metrics, if not read yet."""
    if self._pending is not None:
      values = self._check(*self._pending)
      self._pending = None
      for consume in self._consumers:
        consume(values)


class TrainLog:
  """A progress line and train/ scalars every log_every_steps and at the end."""

  def __init__(self, writer, meter: progress.Meter, every: int, total: int,
               batch_size: int):
    self._writer, self._meter = writer, meter
    self._every, self._total, self._batch_size = every, total, batch_size
    self._window: list[Values] = []

  def add(self, values: Values) -> None:
    self._window.append(values)

  def due(self, step: int) -> bool:
    return step % self._every == 0 or step == self._total

  def write(self, step: int) -> None:
    """Means of the steps since the last line; speed without compile or eval."""
    if not self._window:
      return
    speed = self._meter.report()
    means = {key: float(np.mean([m[key] for m in self._window]))
             for key in self._window[0]}
    self._window = []
    step_time = speed.step_time
    means.update(examples_per_second=speed.examples_per_second(self._batch_size),
                 step_time=step_time)
    self._writer.write_scalars(
        step, {f"train/{key}": value for key, value in means.items()})
    eta = (self._total - step) * step_time
    console(
        f"step {step}/{self._total}  loss {means['loss']:.4f}  accuracy "
        f"{means['accuracy']:.3f}  "
        + (f"bits/byte {means['bits_per_byte']:.3f}  "
           if "bits_per_byte" in means else "")
        + f"lr {means['learning_rate']:.4g}  "
        f"{means['examples_per_second']:.1f} examples/s  "
        f"{step_time * 1000:.0f} ms/step  ETA {progress.duration(eta)}"
        + ("" if speed.compile_seconds is None else
           f"  (compilation {speed.compile_seconds:.0f} s not counted)"))


class Checkpoints:
  """Saves when Orbax's policy says (checkpoint_every_steps), at the last
  step and when stopping; each checkpoint records the health of the training
  losses since the one before (`health.record`)."""

  def __init__(self, manager, record: dict[str, Any], total: int):
    self._manager, self._record, self._total = manager, record, total
    self._losses: list[float] = []

  def add(self, values: Values) -> None:
    self._losses.append(values["loss"])

  def due(self, step: int) -> bool:
    return self._manager.should_save(step) or step == self._total

  def save(self, step: int, state, force: bool = False) -> None:
    """Saves `state`; `force` saves off Orbax's schedule too (a stop)."""
    checkpointing.save(
        self._manager, state,
        {**self._record, "health": health.record(self._losses, state.params)},
        force=force or step == self._total)
    self._losses = []


class Evaluations:
  """Scores the eval split every eval_every_steps (0: never) before the end,
  and once at the end (`final`); the time is not training time."""

  def __init__(self, exp, writer, meter: progress.Meter):
    self._exp, self._writer, self._meter = exp, writer, meter
    self._every, self._total = exp.config.eval_every_steps, exp.total_steps
    self.last: dict[str, Any] = {}

  def due(self, step: int) -> bool:
    return self._every > 0 and step % self._every == 0 and step < self._total

  def run(self, step: int, state) -> dict[str, Any]:
    with self._meter.paused():
      self.last = evaluate(self._exp, state, step, self._writer)
    return self.last

  def final(self, step: int, state) -> dict[str, Any]:
    """The last step's result (scored now unless it already was)."""
    if self.last.get("step") != step:
      self.run(step, state)
    return self.last


def evaluate(exp, state, step: int, writer) -> dict[str, Any]:
  """Scores `state` on the eval split; writes and prints the result."""
  config = exp.config
  params, batch_stats, weights = evaluation.eval_weights(
      state, config.eval_use_ema)
  result = evaluation.evaluate(exp.eval_step, params, batch_stats,
                               exp.source, exp.mesh, exp.task)
  result.update(run_config.describe(config), step=step, weights=weights)
  writer.write_scalars(step, {f"eval/{key}": result[key]
                              for key in exp.task.scalar_keys})
  writer.flush()
  console(f"eval at step {step} ({weights} weights, {result['examples']} "
          f"examples of {config.eval_split!r}): {exp.task.summary(result)}")
  return result


class StopSignal:
  """Single-process runs: SIGTERM / SIGINT make the loop checkpoint and stop
  between steps; a second signal exits at once (status 128 + signal), without
  saving.

  Never installed with several processes: it would replace the SIGTERM
  handler of JAX's preemption service, and no process would learn of it.
  """

  def __init__(self, signals: tuple[signal.Signals, ...]):
    self.received: signal.Signals | None = None
    self._previous = {signum: signal.signal(signum, self._handle)
                      for signum in signals}

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.received is not None:
      os.write(2, f"\n{name} again: exiting now without saving.\n".encode())
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.received = signal.Signals(signum)
    os.write(2, f"\n{name}: saving a checkpoint after this step, then "
             f"stopping ({name} again exits at once, without saving).\n".encode())

  def restore(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


class StopRequest:
  """Whether to save and stop after a step: a signal to this process (one
  process) or a preemption notice (JAX's preemption sync, several processes).

  `requested(step)` must be asked after every step on every process: the
  sync protocol counts on it, and it turns true on every process at the same
  step. Made before the first (long) compile, it tells the sync where every
  process stands: a notice that finds no process with a step is dropped.
  """

  def __init__(self, manager, start_step: int):
    self._manager = manager
    manager.reached_preemption(start_step)
    # Several processes: JAX's preemption service owns SIGTERM, and Ctrl-C
    # stays an interrupt.
    self._signal = (StopSignal((signal.SIGTERM, signal.SIGINT))
                    if jax.process_count() == 1 else None)

  def requested(self, step: int) -> bool:
    preempted = self._manager.reached_preemption(step)
    return preempted or self.name is not None

  @property
  def name(self) -> str | None:
    """What stopped the run: a signal's name, a preemption notice, or None."""
    if self._signal is not None and self._signal.received is not None:
      return self._signal.received.name
    return None

  def stopped(self, step: int) -> dict[str, Any]:
    """Waits for the stop's checkpoint, says so; what the trainer returns."""
    self._manager.wait_until_finished()
    name = self.name or "a preemption notice"
    console(f"Stopped by {name} at step {step}; checkpoint saved in "
            f"{self._manager.directory}. Run the same command again to resume.")
    return {"stopped_by": name, "step": step}

  def close(self) -> None:
    """Gives the signals back to their previous handlers."""
    if self._signal is not None:
      self._signal.restore()


class Profiler:
  """A trace of steps profile_start_step+1 … +profile_num_steps (process 0).

  Called before each step with the steps done; clu's `Profile` starts and
  stops the trace. `close` ends a trace that the run's end (or an error)
  interrupted: clu stops one only when called after its last traced step.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self._profile = None
    if config.profile_num_steps > 0 and jax.process_index() == 0:
      # Imported here: clu.periodic_actions imports TensorFlow (its writers).
      from clu import periodic_actions  # pylint: disable=g-import-not-at-top
      self._profile = periodic_actions.Profile(
          logdir=str(epath.Path(workdir) / "profile"),
          num_profile_steps=config.profile_num_steps, profile_duration_ms=None,
          first_profile=config.profile_start_step, every_steps=None,
          every_secs=None)

  def __call__(self, step: int) -> None:
    if self._profile is not None:
      self._profile(step)

  def close(self) -> None:
    if self._profile is None:
      return
    try:
      jax.profiler.stop_trace()
    except RuntimeError:
      pass  # No trace running: none was started, or Profile ended it.
