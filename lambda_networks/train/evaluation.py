"""Scoring a model on a whole split: every example exactly once."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
from jax.sharding import Mesh

from lambda_networks import data
from lambda_networks.train import device_prefetch
from lambda_networks.train import tasks


def evaluate(eval_step: Callable[..., Any], params: Any, batch_stats: Any,
             source: data.Source, mesh: Mesh, task: Any = None) -> dict[str, float]:
  """The task's metrics over the eval split, padding masked out.

  eval_step returns sums (the task's `eval_sums`, with "count" examples);
  the task (default: classification, top-1, top-5 and loss) turns their
  totals into metrics.
  """
  task = task or tasks.Classification()
  totals: dict[str, Any] = {}
  start = time.time()
  batches = device_prefetch.to_devices(data.prefetch(source.eval_batches()),
                                       mesh)
  for batch in batches:
    sums = jax.device_get(eval_step(params, batch_stats, batch))
    for key, value in sums.items():
      totals[key] = totals.get(key, 0) + value.item()
  count = totals.get("count", 0)
  expected = source.info.num_eval_examples
  if count != expected:
    raise RuntimeError(
        f"Evaluation counted {count} examples but the split has {expected}; "
        "the eval input pipeline is broken.")
  return {
      **task.eval_metrics(totals),
      "examples": count,
      "seconds": time.time() - start,
  }


def eval_weights(state: Any, use_ema: bool) -> tuple[Any, Any, str]:
  """(params, batch_stats, 'ema' or 'raw'): what to score.

  The EMA weights, when there are some and they are asked for, come with the
  EMA of the batch-norm statistics (as the TPU ResNet and EfficientNet code
  evaluates them), not with statistics gathered under the raw weights.
  """
  if use_ema and state.ema_params:
    return state.ema_params, state.ema_batch_stats, "ema"
  return state.params, state.batch_stats, "raw"
