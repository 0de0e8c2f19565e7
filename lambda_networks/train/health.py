"""Is a checkpoint's model healthy? Loss and weight size recorded when it is saved.

A run on the way to a non-finite loss can save finite but diverged weights
(huge parameters, a loss thousands of times chance level); resuming from
such a checkpoint trains on from garbage without an error. So each
checkpoint's meta carries `health`: the mean training loss of the steps
since the previous checkpoint and the global L2 norm of the saved
parameters. A checkpoint counts as healthy when

- its training loss is at most `LOSS_FACTOR` × ln(classes), the loss of a
  uniform guess (where a freshly initialised classifier starts), and
- its parameter norm is at most `NORM_FACTOR` × the initial parameters'.

Both bounds are far above what a training run reaches and far below what a
diverged one shows, and both cost a few numbers per checkpoint. When a run
stops on a non-finite loss, `divergence_report` lists the kept checkpoints
with these numbers and names the newest healthy one (or says none is);
`resume_warning` flags a resumed run whose checkpoint fails them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import optax
import orbax.checkpoint as ocp

LOSS_FACTOR = 2.0
NORM_FACTOR = 10.0
DIVERGED_SUFFIX = ".diverged"


@jax.jit
def _global_norm(params: Any) -> jax.Array:
  return optax.global_norm(params)


def param_norm(params: Any) -> float:
  """The global L2 norm of a parameter tree (on device; every process calls it)."""
  return float(_global_norm(params))


@dataclasses.dataclass(frozen=True)
class Baseline:
  """What a checkpoint's numbers are compared with."""
  chance_loss: float  # ln(classes): the loss of a uniform guess.
  initial_norm: float  # Of the parameters the run started from.

  @classmethod
  def of(cls, num_classes: int, initial_params: Any) -> "Baseline":
    return cls(chance_loss=math.log(max(2, num_classes)),
               initial_norm=param_norm(initial_params))

  def problem(self, health: dict[str, float] | None) -> str | None:
    """Why `health` looks diverged; None when healthy or not recorded."""
    if not health:
      return None
    loss, norm = health.get("train_loss"), health.get("param_norm")
    problems = []
    if loss is not None and not loss <= LOSS_FACTOR * self.chance_loss:
      problems.append(f"training loss {loss:.4g} > {LOSS_FACTOR:g} × "
                      f"ln(classes) = {LOSS_FACTOR * self.chance_loss:.3g}")
    if norm is not None and not norm <= NORM_FACTOR * self.initial_norm:
      problems.append(f"parameter norm {norm:.4g} = "
                      f"{norm / self.initial_norm:.3g} × the initial "
                      f"{self.initial_norm:.4g}")
    return " and ".join(problems) or None


def record(losses: Sequence[float], params: Any) -> dict[str, float]:
  """The health entry of a checkpoint's meta, from the steps since the last one."""
  loss = float(sum(losses) / len(losses)) if losses else None
  return {"train_loss": loss, "steps": len(losses),
          "param_norm": param_norm(params)}


def saved_health(manager: ocp.CheckpointManager, step: int
                 ) -> dict[str, float] | None:
  """The health a checkpoint recorded (None: none, or unreadable)."""
  try:
    meta = manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]
  except Exception:  # pylint: disable=broad-exception-caught
    return None  # Damaged: restoring says so where it matters.
  return meta.get("health") if isinstance(meta, dict) else None


def _describe(step: int, health: dict[str, float] | None,
              problem: str | None) -> str:
  if not health:
    return f"step {step}: no health record (saved by older code)"
  loss = health.get("train_loss")
  numbers = (f"loss {'n/a' if loss is None else format(loss, '.4g')}, "
             f"parameter norm {health['param_norm']:.4g}")
  return f"step {step}: {numbers}, " + (f"diverged ({problem})" if problem
                                         else "healthy")


def divergence_report(manager: ocp.CheckpointManager,
                      baseline: Baseline) -> str:
  """What the kept checkpoints hold, the newest healthy one, and how to use it."""
  steps = sorted(manager.all_steps())
  if not steps:
    return (f"No checkpoint was saved in {manager.directory}; start again with "
            "the lower rate.")
  states = [(step, saved_health(manager, step)) for step in steps]
  lines, healthy, diverged = [], None, []
  for step, health in states:
    problem = baseline.problem(health)
    lines.append(_describe(step, health, problem))
    if problem:
      diverged.append(step)
    elif health:
      healthy = step
  text = "Checkpoints kept in " + f"{manager.directory}: " + "; ".join(lines) + "."
  newer = [step for step in steps if healthy is None or step > healthy]
  if healthy is None:
    return text + (" None is healthy: start again in a new --workdir with the "
                   "lower rate." if diverged else "")
  if not newer:
    return text + f" The newest, step {healthy}, is healthy: rerun resumes from it."
  moves = " && ".join(f"mv {manager.directory / str(step)} "
                      f"{manager.directory / str(step)}{DIVERGED_SUFFIX}"
                      for step in newer)
  return (text + f" The newest healthy one is step {healthy}, "
          f"{steps[-1] - healthy} steps back; to resume from it, set the newer "
          f"ones aside first: {moves}.")


def resume_warning(manager: ocp.CheckpointManager, step: int,
                   baseline: Baseline) -> str | None:
  """A warning when the checkpoint a run resumes from looks diverged."""
  problem = baseline.problem(saved_health(manager, step))
  if problem is None:
    return None
  return (f"WARNING: checkpoint step {step}, which this run resumes from, looks "
          f"diverged ({problem}): training on from it may stay broken. "
          + divergence_report(manager, baseline))
