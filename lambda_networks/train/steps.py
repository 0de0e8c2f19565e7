"""Pure train and eval steps over split model state (jit them with shardings).

Losses and accuracies are means over the *global* batch: with the batch
sharded over the mesh, XLA inserts the cross-device reductions, and batch-norm
statistics are computed over the global batch too.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from lambda_networks.train import optimizer
from lambda_networks.train import tasks
from lambda_networks.train.state import ModelParts, TrainState

Metrics = dict[str, jax.Array]


def _model(parts: ModelParts, params, batch_stats, train: bool) -> nnx.Module:
  model = nnx.merge(parts.graphdef, params, batch_stats, parts.rest)
  model.train() if train else model.eval()
  return model


cross_entropy = tasks.cross_entropy  # Kept here for existing callers.


def make_train_step(parts: ModelParts, tx: optax.GradientTransformation,
                    schedule: optax.Schedule,
                    config: ml_collections.ConfigDict
                    ) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """Returns train_step(state, batch) -> (new state, metrics)."""
  base_key = jax.random.key(config.seed + 2)
  task = tasks.for_config(config)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    def loss_fn(params):
      model = _model(parts, params, state.batch_stats, train=True)
      nnx.reseed(model, dropout=jax.random.fold_in(base_key, state.step))
      loss, task_metrics = task.train_loss(model, batch)
      new_batch_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
      return loss, (task_metrics, new_batch_stats)

    (loss, (task_metrics, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params, ema_batch_stats = state.ema_params, state.ema_batch_stats
    if config.ema_decay > 0:  # Weights and statistics, averaged alike.
      ema_params, ema_batch_stats = optimizer.update_ema(
          (ema_params, ema_batch_stats), (params, batch_stats), state.step,
          config.ema_decay)
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state,
                              ema_params=ema_params,
                              ema_batch_stats=ema_batch_stats)
    metrics = {
        "loss": loss,
        **task_metrics,  # "accuracy", and the task's own (bits_per_byte).
        "learning_rate": schedule(state.step),
        "grad_norm": optax.global_norm(grads),
        "finite": jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads)),
    }
    return new_state, metrics

  return train_step


def make_eval_step(parts: ModelParts, task: Any = None) -> Callable[..., Metrics]:
  """Returns eval_step(params, batch_stats, batch) -> summed metrics.

  The task (default: classification) says what to sum; padding examples
  (mask 0) count nowhere; sums are int32 where they count.
  """
  task = task or tasks.Classification()

  def eval_step(params: Any, batch_stats: Any, batch: dict) -> Metrics:
    return task.eval_sums(_model(parts, params, batch_stats, train=False), batch)

  return eval_step
