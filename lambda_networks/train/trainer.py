"""The training loop: resume, train, log, checkpoint, evaluate, stop cleanly.

`train_and_evaluate(config, workdir)` trains the user's config;
`train.py` calls `train(resolved_config.prepare(config), workdir)`, the same
in two steps. The config is checked and resolved once (`resolved_config`),
the workdir made absolute and leased (one trainer per workdir:
process 0 holds a lock it renews, and every process learns whether it got
it) before anything is written. A run with the same workdir resumes from the
newest complete checkpoint that reads and matches its checksums (a damaged
one is renamed aside); rerunning a finished run changes nothing. A new run
with `config.init_from` (fine-tuning) starts from those weights instead of
random ones (`init_from.apply`, before the workdir is made).

Stopping: a single process catches SIGTERM (e.g. a preempted VM) and Ctrl-C
(SIGINT) itself, saves a checkpoint after the step and returns (a second
Ctrl-C exits at once, without saving). With several processes SIGTERM is left
to JAX's preemption service, which `jax.distributed.initialize` installs: a
SIGTERM to any process (SLURM's warning to every task, a TPU maintenance
event on one host) becomes a notice to all, and
`manager.reached_preemption(step)`, asked every step, turns true on every
process at the same step, where all save and return (a notice before the
checkpoint is restored, while no process has a step yet, is not seen).

Divergence: each checkpoint records its training loss and parameter norm
(`health`); a non-finite loss stops the run without saving, with a UserError
that lists the kept checkpoints and names the newest healthy one (finite is
not enough: weights can diverge before the loss overflows), and a run
resumed from a checkpoint that looks diverged warns.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any, Iterable

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
from jax.experimental import multihost_utils

from lambda_networks import data
from lambda_networks import models
from lambda_networks.errors import UserError
from lambda_networks.train import checkpointing
from lambda_networks.train import distributed
from lambda_networks.train import evaluation
from lambda_networks.train import experiment as experiment_lib
from lambda_networks.train import health
from lambda_networks.train import init_from
from lambda_networks.train import workdir as workdir_lib
from lambda_networks.train import progress
from lambda_networks.train import resolved_config
from lambda_networks.train import run_config


class NonFiniteLossError(UserError, FloatingPointError):
  """The loss or the gradients became NaN or infinite (the fix: a lower rate)."""


class _StopSignal:
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


def console(message: str) -> None:
  """A progress line on stdout (process 0 only) and in the log."""
  logging.info(message)
  if jax.process_index() == 0:
    print(message, flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       given: Iterable[str] = ()) -> dict[str, Any]:
  """Trains config.model as the config says; returns the final eval metrics.

  `config` is the user's; `given` names the fields set on the command line.
  Returns {"stopped_by": signal name, "step": N} instead when a signal or a
  preemption notice stopped the run after saving.
  """
  workdir = workdir_lib.resolve(workdir)
  return train(resolved_config.prepare(config, given), workdir)


def train(prepared: resolved_config.Prepared, workdir: str) -> dict[str, Any]:
  """`train_and_evaluate` of a config that `resolved_config.prepare` returned."""
  workdir = workdir_lib.resolve(workdir)
  # One trainer per workdir (all processes of a run write, process 0 holds
  # the lease): an existing workdir is locked before the (slow) build, a new
  # one after it, so that a config the build refuses leaves no empty workdir
  # behind. Process 0 decides both times and tells every process.
  config = prepared.config
  lock = workdir_lib.Lock(workdir, renew_seconds=config.lock_renew_seconds,
                          stale_seconds=config.lock_stale_seconds)
  chief = jax.process_index() == 0
  existed = chief and epath.Path(workdir).exists()  # Only process 0 asks.
  try:
    _lock_on_every_process(lock, existed)
    exp = experiment_lib.build(prepared)
    init_from.apply(exp, workdir, report=console)  # Fine-tuning's weights.
    workdir_lib.create(workdir)
    _lock_on_every_process(lock, chief and not existed)
    return _train(exp, workdir)
  finally:
    lock.release()


_MESSAGE_BYTES = 2048


def _lock_on_every_process(lock: workdir_lib.Lock, acquire: bool) -> None:
  """Process 0 takes the lock if `acquire`; every process raises its refusal.

  With several processes the outcome is broadcast (a collective every process
  calls at the same point), so that a refused lock ends all of them at once
  instead of leaving the others waiting in the next collective.
  """
  refusal, failure = "", None
  if acquire:
    try:
      lock.acquire()
    except Exception as error:  # pylint: disable=broad-exception-caught
      if jax.process_count() == 1:
        raise
      failure = error
      refusal = (str(error) if isinstance(error, UserError) else
                 f"process 0 could not take the workdir's lock ({error!r}); "
                 "see its output.")
  if jax.process_count() > 1:
    encoded = np.zeros(_MESSAGE_BYTES, np.uint8)
    data = refusal.encode()[:_MESSAGE_BYTES]
    encoded[:len(data)] = np.frombuffer(data, np.uint8)
    received = multihost_utils.broadcast_one_to_all(encoded)
    refusal = bytes(np.asarray(received, np.uint8)).rstrip(b"\0").decode(
        errors="replace")
  if failure is not None:
    raise failure
  if refusal:
    raise UserError(refusal)


def _finished_run(manager, exp: experiment_lib.Experiment,
                  workdir: str) -> dict[str, Any] | None:
  """The final metrics of a run already trained to the end; None to train on.

  Raises UserError when the newest checkpoint is past the end or was made by
  another model.
  """
  latest, total = manager.latest_step(), exp.total_steps
  if latest is None or latest < total:
    return None
  try:
    checkpointing.check_saved_record(manager, latest, exp.record)
  except checkpointing.CheckpointMismatchError:
    raise
  except Exception:  # pylint: disable=broad-exception-caught
    return None  # Damaged: restoring reports it and falls back.
  if latest > total:
    raise _past_the_end(manager, latest, total)
  try:
    final = json.loads((epath.Path(workdir) / "final_metrics.json").read_text())
  except (OSError, ValueError):
    return None  # Trained, not evaluated yet (stopped in between).
  if not isinstance(final, dict) or final.get("step") != total:
    return None
  console(f"This run is already complete: step {total} of {total} in "
          f"{manager.directory}, final metrics in {workdir}/final_metrics.json "
          f"({_headline(final)}). Nothing to do; raise num_train_steps "
          "to train further, or use a new --workdir.")
  return final


def _past_the_end(manager, step: int, total: int) -> UserError:
  return UserError(
      f"The newest checkpoint in {manager.directory} is at step {step}, past "
      f"this config's {total} steps; nothing was changed. Train it further "
      f"with num_train_steps > {step}, evaluate it with eval.py, or use a new "
      "--workdir.")


def _train(exp: experiment_lib.Experiment, workdir: str) -> dict[str, Any]:
  """The loop of `train_and_evaluate`, with the workdir locked."""
  config = exp.config
  info = exp.source.info
  total = exp.total_steps
  manager = checkpointing.create_manager(workdir, config)
  final = _finished_run(manager, exp, workdir)
  if final is not None:
    manager.close()
    return final
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0, asynchronous=True)
  state = exp.state
  baseline = health.Baseline.of(exp.parts.num_classes, state.params)
  if manager.latest_step() is not None:
    state = checkpointing.restore_newest(manager, state, exp.record,
                                         report=console)
  start_step = int(jax.device_get(state.step))
  if start_step > total:
    raise _past_the_end(manager, start_step, total)
  # Tells JAX's preemption sync where every process stands before the first
  # (long) compile: a notice that finds no process with a step is dropped.
  manager.reached_preemption(start_step)
  console(
      f"{config.model} on {info.name}: {info.num_train_examples} train / "
      f"{info.num_eval_examples} eval examples, {info.num_classes} classes, "
      f"{total} steps of {config.global_batch_size} "
      f"({exp.steps_per_epoch} per epoch), {jax.device_count()} devices in "
      f"{jax.process_count()} process(es), "
      f"{models.count_parameters(state.params):,} parameters.")
  if start_step:
    console(f"Resumed from step {start_step} in {checkpointing.checkpoint_dir(workdir)}.")
    warning = health.resume_warning(manager, start_step, baseline)
    if warning:
      console(warning)
  elif jax.process_index() == 0:
    writer.write_hparams({key: str(value) for key, value in
                          config.to_dict().items()})
  if jax.process_index() == 0:
    for change in run_config.record(config, workdir, start_step):
      console(f"WARNING: this resumed run's config differs from the one that "
              f"trained steps 1-{start_step} (kept in the workdir): {change}")

  # Several processes must stop at one step: JAX's preemption service owns
  # SIGTERM there (see the module docstring), and Ctrl-C stays an interrupt.
  stop = (_StopSignal((signal.SIGTERM, signal.SIGINT))
          if jax.process_count() == 1 else None)
  batches = data.prefetch(
      exp.source.train_batches(start_step, max(0, total - start_step)),
      size=config.prefetch_batches)
  pending = None  # (step, metrics) of the step before the one just dispatched.
  window: list[dict[str, float]] = []
  since_save: list[float] = []  # Losses since the last checkpoint (its health).

  def check(step_and_metrics) -> None:
    values = _check_finite(*step_and_metrics, manager, baseline)
    window.append(values)
    since_save.append(values["loss"])

  meter = progress.Meter()
  profile = _profiler(config, workdir)
  last_eval: dict[str, Any] = {}
  step = start_step
  try:
    while step < total:
      if profile is not None:
        profile(step)  # Starts or stops the trace between steps.
      batch = distributed.global_batch(next(batches), exp.mesh)
      state, metrics = exp.train_step(state, batch)
      meter.step_dispatched()
      if pending is not None:
        check(pending)
      pending = (step + 1, metrics)
      step += 1

      saving = manager.should_save(step) or step == total
      logging_now = step % config.log_every_steps == 0 or step == total
      evaluating = (config.eval_every_steps > 0 and step % config.eval_every_steps == 0
                    and step < total)
      # Asked every step on every process (the sync protocol counts on it).
      preempted = manager.reached_preemption(step) or (
          stop is not None and stop.received is not None)
      if saving or logging_now or evaluating or preempted:
        check(pending)
        pending = None
      if logging_now and window:
        _log_train(writer, step, window, meter.report(), total,
                   config.global_batch_size)
        window = []
      if saving or preempted:
        checkpointing.save(
            manager, state,
            {**exp.record, "health": health.record(since_save, state.params)},
            force=preempted or step == total)
        since_save = []
      if evaluating:
        with meter.paused():
          last_eval = _evaluate(exp, state, step, writer)
      if preempted:
        manager.wait_until_finished()
        name = (stop.received.name if stop is not None and stop.received
                else "a preemption notice")
        console(f"Stopped by {name} at step {step}; checkpoint saved in "
                f"{manager.directory}. Run the same command again to resume.")
        return {"stopped_by": name, "step": step}
  finally:
    if stop is not None:
      stop.restore()
    _stop_profile(profile)
    manager.wait_until_finished()
    writer.flush()

  if step == total and (not last_eval or last_eval.get("step") != step):
    last_eval = _evaluate(exp, state, step, writer)
  manager.close()
  writer.close()
  if jax.process_index() == 0 and last_eval:
    (epath.Path(workdir) / "final_metrics.json").write_text(
        json.dumps(last_eval, indent=2))
  return last_eval


def _check_finite(step: int, metrics: Any, manager,
                  baseline: health.Baseline) -> dict[str, float]:
  """The step's metrics as floats; raises NonFiniteLossError if not finite."""
  values = {key: float(value) for key, value in jax.device_get(metrics).items()}
  if not values.pop("finite"):
    manager.wait_until_finished()  # The report lists every saved step.
    raise NonFiniteLossError(
        f"Non-finite loss or gradients at step {step} (loss {values['loss']}); "
        "stopped without saving. Lower config.base_learning_rate or raise "
        "config.warmup_epochs. " + health.divergence_report(manager, baseline))
  return values


def _log_train(writer, step: int, window: list[dict[str, float]],
               speed: progress.Speed, total: int, batch_size: int) -> None:
  means = {key: float(np.mean([m[key] for m in window])) for key in window[0]}
  step_time = speed.step_time
  means.update(examples_per_second=speed.examples_per_second(batch_size),
               step_time=step_time)
  writer.write_scalars(step, {f"train/{key}": value for key, value in means.items()})
  eta = (total - step) * step_time
  console(
      f"step {step}/{total}  loss {means['loss']:.4f}  accuracy "
      f"{means['accuracy']:.3f}  "
      + (f"bits/byte {means['bits_per_byte']:.3f}  " if "bits_per_byte" in means
         else "")
      + f"lr {means['learning_rate']:.4g}  "
      f"{means['examples_per_second']:.1f} examples/s  "
      f"{step_time * 1000:.0f} ms/step  ETA {_duration(eta)}"
      + ("" if speed.compile_seconds is None else
         f"  (compilation {speed.compile_seconds:.0f} s not counted)"))


def _evaluate(exp: experiment_lib.Experiment, state, step: int,
              writer) -> dict[str, Any]:
  params, batch_stats, weights = evaluation.eval_weights(
      state, exp.config.eval_use_ema)
  result = evaluation.evaluate(exp.eval_step, params, batch_stats,
                               exp.source, exp.mesh, exp.task)
  result.update(run_config.describe(exp.config), step=step, weights=weights)
  writer.write_scalars(step, {f"eval/{key}": result[key]
                              for key in exp.task.scalar_keys})
  writer.flush()
  console(f"eval at step {step} ({weights} weights, {result['examples']} "
          f"examples of {exp.config.eval_split!r}): {exp.task.summary(result)}")
  return result


def _profiler(config: ml_collections.ConfigDict,
              workdir: str) -> periodic_actions.Profile | None:
  """A trace of steps profile_start_step+1 … +profile_num_steps (process 0)."""
  if config.profile_num_steps <= 0 or jax.process_index() != 0:
    return None
  return periodic_actions.Profile(
      logdir=str(epath.Path(workdir) / "profile"),
      num_profile_steps=config.profile_num_steps, profile_duration_ms=None,
      first_profile=config.profile_start_step, every_steps=None,
      every_secs=None)


def _stop_profile(profile: periodic_actions.Profile | None) -> None:
  """Ends a trace that the run's end (or an error) interrupted.

  clu's Profile stops a trace only when it is called after the last traced
  step, which a run that ends or stops earlier never does.
  """
  if profile is None:
    return
  try:
    jax.profiler.stop_trace()
  except RuntimeError:
    pass  # No trace running: none was started, or Profile ended it.


def _headline(final: dict[str, Any]) -> str:
  """The main eval metric of a finished run, whatever its task."""
  if "top1" in final:
    return f"top-1 {final['top1']}"
  return f"bits per byte {final.get('bits_per_byte')}"


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
