"""The training loop: resume, train, log, checkpoint, evaluate, stop cleanly.

`train_and_evaluate(config, workdir)` is all `train.py` calls. A run with the
same workdir resumes from the newest complete checkpoint; SIGTERM (e.g. a
preempted VM) or a JAX preemption notice saves a checkpoint and returns; a
non-finite loss stops the run without saving, so the last good checkpoint is
what a restart resumes from.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from etils import epath

from lambda_networks import data
from lambda_networks.train import checkpointing
from lambda_networks.train import distributed
from lambda_networks.train import evaluation
from lambda_networks.train import experiment as experiment_lib
from lambda_networks.train import progress
from lambda_networks.train import run_config


class NonFiniteLossError(FloatingPointError):
  """The loss or the gradients became NaN or infinite."""


class _StopSignal:
  """Remembers a SIGTERM so the loop can checkpoint and exit between steps."""

  def __init__(self):
    self.received = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def console(message: str) -> None:
  """A progress line on stdout (process 0 only) and in the log."""
  logging.info(message)
  if jax.process_index() == 0:
    print(message, flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, Any]:
  """Trains config.model as the config says; returns the final eval metrics."""
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  run_config.resolve(config)  # "auto" eval split, statistics from the data.
  exp = experiment_lib.build(config)
  info = exp.source.info
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0, asynchronous=True)
  manager = checkpointing.create_manager(workdir, config)
  state = exp.state
  if manager.latest_step() is not None:
    state = checkpointing.restore(manager, state, exp.record)
  start_step = int(jax.device_get(state.step))
  total = exp.total_steps
  console(
      f"{config.model} on {info.name}: {info.num_train_examples} train / "
      f"{info.num_eval_examples} eval examples, {info.num_classes} classes, "
      f"{total} steps of {config.global_batch_size} "
      f"({exp.steps_per_epoch} per epoch), {jax.device_count()} devices in "
      f"{jax.process_count()} process(es), "
      f"{sum(np.size(p) for p in jax.tree.leaves(state.params)):,} parameters.")
  if start_step:
    console(f"Resumed from step {start_step} in {checkpointing.checkpoint_dir(workdir)}.")
  elif jax.process_index() == 0:
    writer.write_hparams({key: str(value) for key, value in
                          config.to_dict().items()})
  if jax.process_index() == 0:
    for change in run_config.record(config, workdir, start_step):
      console(f"WARNING: this resumed run's config differs from the one that "
              f"trained steps 1-{start_step} (kept in the workdir): {change}")

  stop = _StopSignal()
  batches = data.prefetch(
      exp.source.train_batches(start_step, max(0, total - start_step)),
      size=config.prefetch_batches)
  pending = None  # (step, metrics) of the step before the one just dispatched.
  window: list[dict[str, float]] = []
  meter = progress.Meter()
  last_eval: dict[str, Any] = {}
  step = start_step
  try:
    while step < total:
      _maybe_profile(config, step, workdir)
      batch = distributed.global_batch(next(batches), exp.mesh)
      state, metrics = exp.train_step(state, batch)
      meter.step_dispatched()
      if pending is not None:
        window.append(_check_finite(*pending, manager))
      pending = (step + 1, metrics)
      step += 1

      saving = manager.should_save(step) or step == total
      logging_now = step % config.log_every_steps == 0 or step == total
      evaluating = (config.eval_every_steps > 0 and step % config.eval_every_steps == 0
                    and step < total)
      # A lone SIGTERM is acted on only by single-process runs: with several
      # processes they must agree on the step, which JAX's preemption
      # service (jax.distributed on TPU pods and SLURM) arranges.
      preempted = manager.reached_preemption(step) or (
          stop.received and jax.process_count() == 1)
      if saving or logging_now or evaluating or preempted:
        window.append(_check_finite(*pending, manager))
        pending = None
      if logging_now and window:
        _log_train(writer, step, window, meter.report(), total,
                   config.global_batch_size)
        window = []
      if saving or preempted:
        checkpointing.save(manager, state, exp.record, force=preempted or step == total)
      if evaluating:
        with meter.paused():
          last_eval = _evaluate(exp, state, step, writer)
      if preempted:
        manager.wait_until_finished()
        console(f"Stopped by a preemption signal at step {step}; checkpoint "
                "saved. Run the same command again to resume.")
        return {"preempted_at_step": step}
  finally:
    stop.restore()
    _stop_profile(config, step)
    manager.wait_until_finished()
    writer.flush()

  if step == total and (not last_eval or last_eval.get("step") != step):
    last_eval = _evaluate(exp, state, step, writer)
  manager.close()
  writer.close()
  if jax.process_index() == 0:
    (epath.Path(workdir) / "final_metrics.json").write_text(
        json.dumps(last_eval, indent=2))
  return last_eval


def _check_finite(step: int, metrics: Any, manager) -> dict[str, float]:
  values = {key: float(value) for key, value in jax.device_get(metrics).items()}
  if not values.pop("finite"):
    raise NonFiniteLossError(
        f"Non-finite loss or gradients at step {step} (loss {values['loss']}); "
        f"stopping without saving. The last good checkpoint (step "
        f"{manager.latest_step()}) is kept in {manager.directory}; lower "
        "config.base_learning_rate or raise config.warmup_epochs, then rerun.")
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
      f"{means['accuracy']:.3f}  lr {means['learning_rate']:.4g}  "
      f"{means['examples_per_second']:.1f} examples/s  "
      f"{step_time * 1000:.0f} ms/step  ETA {_duration(eta)}"
      + ("" if speed.compile_seconds is None else
         f"  (compilation {speed.compile_seconds:.0f} s not counted)"))


def _evaluate(exp: experiment_lib.Experiment, state, step: int,
              writer) -> dict[str, Any]:
  params, weights = evaluation.eval_weights(state, exp.config.eval_use_ema)
  result = evaluation.evaluate(exp.eval_step, params, state.batch_stats,
                               exp.source, exp.mesh)
  result.update(run_config.describe(exp.config), step=step, weights=weights)
  writer.write_scalars(step, {f"eval/{key}": result[key]
                              for key in ("top1", "top5", "loss")})
  writer.flush()
  console(f"eval at step {step} ({weights} weights, {result['examples']} "
          f"examples of {exp.config.eval_split!r}): top-1 {result['top1']:.4f}  "
          f"top-5 {result['top5']:.4f}  loss {result['loss']:.4f}")
  return result


def _maybe_profile(config: ml_collections.ConfigDict, step: int, workdir: str) -> None:
  if config.profile_num_steps <= 0 or jax.process_index() != 0:
    return
  if step == config.profile_start_step:
    jax.profiler.start_trace(str(epath.Path(workdir) / "profile"))
  elif step == config.profile_start_step + config.profile_num_steps:
    jax.profiler.stop_trace()


def _stop_profile(config: ml_collections.ConfigDict, step: int) -> None:
  """Ends a trace that the run's end (or an error) interrupted."""
  start = config.profile_start_step
  if (config.profile_num_steps > 0 and jax.process_index() == 0
      and start <= step < start + config.profile_num_steps):
    jax.profiler.stop_trace()


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
