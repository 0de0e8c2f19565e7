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
from lambda_networks.train.state import ModelParts, TrainState

Metrics = dict[str, jax.Array]


def _model(parts: ModelParts, params, batch_stats, train: bool) -> nnx.Module:
  model = nnx.merge(parts.graphdef, params, batch_stats, parts.rest)
  model.train() if train else model.eval()
  return model


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  label_smoothing: float) -> jax.Array:
  """Per-example softmax cross-entropy with optional label smoothing."""
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def make_train_step(parts: ModelParts, tx: optax.GradientTransformation,
                    schedule: optax.Schedule,
                    config: ml_collections.ConfigDict
                    ) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """Returns train_step(state, batch) -> (new state, metrics)."""
  base_key = jax.random.key(config.seed + 2)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    def loss_fn(params):
      model = _model(parts, params, state.batch_stats, train=True)
      nnx.reseed(model, dropout=jax.random.fold_in(base_key, state.step))
      logits = model(batch["image"])
      loss = cross_entropy(logits, batch["label"], config.label_smoothing).mean()
      new_batch_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
      return loss, (logits, new_batch_stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(
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
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    metrics = {
        "loss": loss,
        "accuracy": accuracy,
        "learning_rate": schedule(state.step),
        "grad_norm": optax.global_norm(grads),
        "finite": jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads)),
    }
    return new_state, metrics

  return train_step


def make_eval_step(parts: ModelParts) -> Callable[..., Metrics]:
  """Returns eval_step(params, batch_stats, batch) -> summed metrics.

  Padding examples (mask 0) count nowhere; sums are int32 where they count.
  """

  def eval_step(params: Any, batch_stats: Any, batch: dict) -> Metrics:
    model = _model(parts, params, batch_stats, train=False)
    logits = model(batch["image"]).astype(jnp.float32)
    labels, mask = batch["label"], batch["mask"]
    top_k = min(5, logits.shape[-1])
    _, top_indices = jax.lax.top_k(logits, top_k)
    in_top5 = jnp.any(top_indices == labels[:, None], axis=-1)
    top1 = jnp.argmax(logits, -1) == labels
    real = mask > 0
    return {
        "correct_top1": jnp.sum(top1 & real, dtype=jnp.int32),
        "correct_top5": jnp.sum(in_top5 & real, dtype=jnp.int32),
        "loss_sum": jnp.sum(cross_entropy(logits, labels, 0.0) * mask),
        "count": jnp.sum(real, dtype=jnp.int32),
    }

  return eval_step
