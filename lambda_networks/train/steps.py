"""Pure train and eval steps over split model state (jit them with shardings).

Losses and accuracies are means over the *global* batch: with the batch
sharded over the mesh, XLA inserts the cross-device reductions, and batch-norm
statistics are computed over the global batch too (or over groups of
`batch_norm_group_size` examples, see `group_batch_norm`). With gradient
accumulation the batch runs as micro-batches in a `lax.scan`; the metrics
still cover the whole batch. Mixup and CutMix (`mixing.py`) mix each
(micro-)batch on the device before the loss.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from lambda_networks.train import mixing
from lambda_networks.train import optimizer
from lambda_networks.train import tasks
from lambda_networks.train.state import ModelParts, TrainState

Metrics = dict[str, jax.Array]


def _model(parts: ModelParts, params, batch_stats, train: bool) -> nnx.Module:
  model = nnx.merge(parts.graphdef, params, batch_stats, parts.rest)
  model.train() if train else model.eval()
  return model


cross_entropy = tasks.cross_entropy  # Kept here for existing callers.


def micro_batches(batch: dict, count: int, data_shards: int = 1) -> dict:
  """Splits a global batch [B, ...] into [count, B / count, ...] micro-batches.

  Each of the `data_shards` devices' blocks of B / data_shards examples is
  cut into `count` consecutive chunks, and micro-batch i gathers chunk i of
  every device: every device keeps its share of every micro-batch (no data
  moves between devices), and runs of consecutive examples within a chunk
  stay together, so batch-norm groups that divide the per-device
  micro-batch are the same examples as in the unsplit batch.
  """

  def split(array: jax.Array) -> jax.Array:
    per_chunk = array.shape[0] // (data_shards * count)
    chunks = array.reshape((data_shards, count, per_chunk) + array.shape[1:])
    return jnp.swapaxes(chunks, 0, 1).reshape(
        (count, data_shards * per_chunk) + array.shape[1:])

  return jax.tree.map(split, batch)


def make_train_step(parts: ModelParts, tx: optax.GradientTransformation,
                    schedule: optax.Schedule,
                    config: ml_collections.ConfigDict, data_shards: int = 1
                    ) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """Returns train_step(state, batch) -> (new state, metrics).

  The task (`tasks.for_config`) gives the loss and its metrics. With
  config.gradient_accumulation_steps = n > 1 the batch is split into n
  micro-batches (`micro_batches`; `data_shards` is the mesh's data-axis
  size) that a `lax.scan` runs one after another: gradients, loss and the
  task's metrics are summed and divided by n once, and the batch-norm running
  statistics are the mean of what each micro-batch makes of the step's
  incoming ones, so one optimiser step makes one statistics update, as a
  `batch_norm_group_size` of the micro-batch size does in one pass. Each
  micro-batch draws its own dropout masks (key folded with its index).

  With mixup or CutMix on (`mixing.from_config`), each micro-batch is mixed
  on the device before the loss, within each of the `data_shards` devices'
  shards, from a key of (config.seed, step, micro-batch).
  """
  base_key = jax.random.key(config.seed + 2)
  task = tasks.for_config(config)
  accumulation = config.get("gradient_accumulation_steps", 1)
  label_mixing = mixing.from_config(config)

  def loss_fn(params, batch_stats, batch, dropout_key):
    model = _model(parts, params, batch_stats, train=True)
    nnx.reseed(model, dropout=dropout_key)
    loss, task_metrics = task.train_loss(model, batch)
    new_batch_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    return loss, (task_metrics, new_batch_stats)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def accumulated(state: TrainState, batch: dict, step_key: jax.Array):
    """(loss, task metrics, batch_stats, grads), each the mean over micro-batches."""
    micro = micro_batches(batch, accumulation, data_shards)

    def one(index, micro_batch):
      micro_batch = mixing.mix_batch(label_mixing, micro_batch, state.step,
                                     index, data_shards)
      (loss, (task_metrics, stats)), grads = grad_fn(
          state.params, state.batch_stats, micro_batch,
          jax.random.fold_in(step_key, index))
      return loss, task_metrics, stats, grads

    def body(totals, index_and_batch):
      return jax.tree.map(jnp.add, totals, one(*index_and_batch)), None

    shapes = jax.eval_shape(one, 0, jax.tree.map(lambda x: x[0], micro))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    totals, _ = jax.lax.scan(body, zeros, (jnp.arange(accumulation), micro))
    return jax.tree.map(lambda total: total / accumulation, totals)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    step_key = jax.random.fold_in(base_key, state.step)
    if accumulation == 1:
      batch = mixing.mix_batch(label_mixing, batch, state.step,
                               shards=data_shards)
      (loss, (task_metrics, batch_stats)), grads = grad_fn(
          state.params, state.batch_stats, batch, step_key)
    else:
      loss, task_metrics, batch_stats, grads = accumulated(state, batch,
                                                           step_key)
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
    grad_norm = optax.global_norm(grads)
    metrics = {
        "loss": loss,
        **task_metrics,  # "accuracy", and the task's own (bits_per_byte).
        "learning_rate": schedule(state.step),
        "grad_norm": grad_norm,
        "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm),
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
