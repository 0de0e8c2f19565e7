"""Optimiser, learning-rate schedule and weight EMA, all from optax.

SGD with (Nesterov) momentum; the learning rate is base_learning_rate ·
global_batch_size / 256, reached by a linear warm-up and then decayed along a
cosine to zero. Weight decay (coupled, as in the ResNet recipes) applies to
kernels only: parameters with one dimension (batch-norm scales and biases,
biases) are left alone.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from absl import logging
import ml_collections
import optax


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """base_learning_rate scaled linearly with the global batch (per 256)."""
  return config.base_learning_rate * config.global_batch_size / 256


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int,
                           total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 for warmup_epochs, then cosine decay to 0."""
  warmup_steps = warmup_length(config, steps_per_epoch, total_steps)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_learning_rate(config),
      warmup_steps=warmup_steps, decay_steps=max(total_steps, warmup_steps + 1),
      end_value=0.0)


# A warm-up may take at most this share of the run (see `warmup_length`).
MAX_WARMUP_FRACTION = 0.2


def warmup_length(config: ml_collections.ConfigDict, steps_per_epoch: int,
                  total_steps: int) -> int:
  """Warm-up steps: warmup_epochs, shortened to a fifth of the run if longer.

  Recipes give the warm-up in epochs (5 for ImageNet); a short run of such a
  recipe would otherwise end at its peak learning rate. Shortening (with a
  warning) keeps the cosine decay that the recipe relies on.
  """
  asked = int(round(config.warmup_epochs * steps_per_epoch))
  limit = int(MAX_WARMUP_FRACTION * total_steps)
  if asked > limit:
    logging.warning(
        "config.warmup_epochs=%s is %d of the run's %d steps; shortened to "
        "%d steps (a fifth of the run) so the learning rate still decays. "
        "Set warmup_epochs to at most %.3g to silence this.",
        config.warmup_epochs, asked, total_steps, limit,
        limit / max(steps_per_epoch, 1))
    return limit
  return asked


def decay_mask(params: Any) -> Any:
  """True for parameters that get weight decay: kernels (ndim > 1)."""
  return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def create_optimizer(config: ml_collections.ConfigDict,
                     schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD + momentum (Nesterov optional) with masked, coupled weight decay."""
  if config.optimizer != "sgd":
    raise ValueError(
        f"config.optimizer={config.optimizer!r} is not supported; use 'sgd' "
        "(the paper's recipes).")
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
      optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov),
  )


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """EMA decay with a warm-up, min(decay, (1 + step) / (10 + step)).

  Early in training the average follows the weights closely, as TensorFlow's
  ExponentialMovingAverage(num_updates=step) does.
  """
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def update_ema(ema_params: Any, params: Any, step: jax.Array,
               decay: float) -> Any:
  """One EMA update of the weights."""
  return optax.incremental_update(params, ema_params,
                                  step_size=1.0 - ema_decay_at(step, decay))
