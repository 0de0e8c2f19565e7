"""The training run: lease, build, resume, then the loop, step by step.

`train_and_evaluate(config, workdir)` trains the user's config; `train.py`
calls `train(resolved_config.prepare(config), workdir)`, the same in two
steps. The config is checked and resolved once (`resolved_config`), the
workdir made absolute and leased (one trainer per workdir: process 0 holds a
lock it renews, and every process learns whether it got it) before anything
is written. What happens between steps (logging, checkpoints, evaluation,
stopping, profiling, the delayed read of each step's metrics) is one object
per action in `periodic`; `_train` reads as the order they act in. A run
with the same workdir resumes from the newest complete checkpoint that reads
and matches its checksums (a damaged one is renamed aside); rerunning a
finished run changes nothing. A new run with `config.init_from` (fine-tuning)
starts from those weights instead of random ones (`init_from.apply`, before
the workdir is made).

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
from typing import Any, Iterable

import jax
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from lambda_networks import data
from lambda_networks import models
from lambda_networks.errors import UserError
from lambda_networks.train import checkpointing
from lambda_networks.train import device_prefetch
from lambda_networks.train import experiment as experiment_lib
from lambda_networks.train import health
from lambda_networks.train import init_from
from lambda_networks.train import metric_writer
from lambda_networks.train import periodic
from lambda_networks.train import progress
from lambda_networks.train import results
from lambda_networks.train import resolved_config
from lambda_networks.train import run_config
from lambda_networks.train import workdir as workdir_lib

NonFiniteLossError = periodic.NonFiniteLossError  # What a diverged run raises.
console = progress.console  # A module global, so that tests can capture it.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       given: Iterable[str] = ()) -> dict[str, Any]:
  """Trains config.model as the config says; returns the final eval metrics.

  `config` is the user's; `given` names the fields set on the command line.
  Returns {"stopped_by": signal name, "step": N} instead when a signal or a
  preemption notice stopped the run after saving.
  """
  workdir = workdir_lib.resolve(workdir)
  return train(resolved_config.prepare(config, given, workdir), workdir)


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
    final = json.loads(
        (epath.Path(workdir) / results.FINAL_METRICS_FILE).read_text())
  except (OSError, ValueError):
    return None  # Trained, not evaluated yet (stopped in between).
  if not isinstance(final, dict) or final.get("step") != total:
    return None
  console(f"This run is already complete: step {total} of {total} in "
          f"{manager.directory}, final metrics in {workdir}/{results.FINAL_METRICS_FILE} "
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
  config, total = exp.config, exp.total_steps
  manager = checkpointing.create_manager(workdir, config)
  final = _finished_run(manager, exp, workdir)
  if final is not None:
    manager.close()
    return final
  writer = metric_writer.MetricWriter(
      workdir if jax.process_index() == 0 else None)
  baseline = health.Baseline.of(exp.parts.num_classes, exp.state.params)
  state = _resume(exp, manager, workdir, writer, baseline)
  step = int(jax.device_get(state.step))

  meter = progress.Meter()
  log = periodic.TrainLog(writer, meter, config.log_every_steps, total,
                          config.global_batch_size)
  checkpoints = periodic.Checkpoints(manager, exp.record, total)
  evaluations = periodic.Evaluations(exp, writer, meter)
  metrics = periodic.DelayedMetrics(
      lambda step, values: periodic.check_finite(step, values, manager, baseline),
      consumers=(log.add, checkpoints.add))
  profile = periodic.Profiler(config, workdir)
  batches = device_prefetch.to_devices(
      data.prefetch(exp.source.train_batches(step, total - step),
                    size=config.prefetch_batches), exp.mesh)
  stop = periodic.StopRequest(manager, start_step=step)
  try:
    while step < total:
      profile(step)  # Starts or stops the trace between steps.
      state, step_metrics = exp.train_step(state, next(batches))
      meter.step_dispatched()
      step += 1
      metrics.dispatched(step, step_metrics)  # Reads the step before.
      stopping = stop.requested(step)  # On every process, every step.
      logging_due, saving_due, evaluation_due = (
          log.due(step), checkpoints.due(step), evaluations.due(step))
      if stopping or logging_due or saving_due or evaluation_due:
        metrics.settle()  # Each of them sees every step up to this one.
      if logging_due:
        log.write(step)
      if stopping or saving_due:
        checkpoints.save(step, state, force=stopping)
      if evaluation_due:
        evaluations.run(step, state)
      if stopping:
        return stop.stopped(step)
  finally:
    stop.close()
    profile.close()
    manager.wait_until_finished()
    writer.flush()

  final = evaluations.final(step, state)
  manager.close()
  writer.close()
  if jax.process_index() == 0:
    (epath.Path(workdir) / results.FINAL_METRICS_FILE).write_text(
        json.dumps(final, indent=2))
  return final


def _resume(exp: experiment_lib.Experiment, manager, workdir: str, writer,
            baseline: health.Baseline):
  """The state to train from (the newest good checkpoint, or the initial
  one), after the run's header line, resume warnings and config.json."""
  config, info, total = exp.config, exp.source.info, exp.total_steps
  state = exp.state
  if manager.latest_step() is not None:
    state = checkpointing.restore_newest(manager, state, exp.record,
                                         report=console)
  start_step = int(jax.device_get(state.step))
  if start_step > total:
    raise _past_the_end(manager, start_step, total)
  console(
      f"{config.model} on {info.name}: {info.num_train_examples} train / "
      f"{info.num_eval_examples} eval examples, {info.num_classes} classes, "
      f"{total} steps of {config.global_batch_size} "
      f"({exp.steps_per_epoch} per epoch), {jax.device_count()} devices in "
      f"{jax.process_count()} process(es), "
      f"{models.count_parameters(state.params):,} parameters.")
  if start_step:
    console(f"Resumed from step {start_step} in "
            f"{checkpointing.checkpoint_dir(workdir)}.")
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
  return state


def _headline(final: dict[str, Any]) -> str:
  """The main eval metric of a finished run, whatever its task."""
  if "top1" in final:
    return f"top-1 {final['top1']}"
  return f"bits per byte {final.get('bits_per_byte')}"

