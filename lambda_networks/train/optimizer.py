"""Optimiser, learning-rate schedule and weight EMA, all from optax.

`config.optimizer` picks SGD with (Nesterov) momentum, AdamW or LAMB. The
learning rate is base_learning_rate · global_batch_size / 256, reached by a
linear warm-up and then decayed along a cosine to zero. Weight decay applies
to kernels only: parameters with one dimension (batch-norm scales and biases,
biases) are left alone. With SGD it is coupled (an L2 term added to the
gradient before momentum, as in the ResNet recipes); with AdamW and LAMB it is
decoupled (lr · weight_decay · w added to the Adam step, as in PyTorch and
timm). Gradients can be clipped first: unit-wise by adaptive gradient
clipping (`agc_clip`, NFNets; not the classifier) and then by their global
norm (`grad_clip_norm`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from absl import logging
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adamw", "lamb")
# The models' final linear classifier (a top-level module named so in every
# model of the registry); adaptive gradient clipping leaves it alone.
CLASSIFIER = "head"
# Parameter norms below this count as this for adaptive gradient clipping
# (NFNets' and optax's default), so zero-initialised weights still move.
AGC_EPS = 1e-3


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """base_learning_rate scaled linearly with the global batch (per 256)."""
  return config.base_learning_rate * config.global_batch_size / 256


def learning_rate_schedule(config: ml_collections.ConfigDict,
                           steps_per_epoch: int,
                           total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 (`warmup_length`), then cosine decay to 0."""
  warmup_steps = warmup_length(config, steps_per_epoch, total_steps)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_learning_rate(config),
      warmup_steps=warmup_steps, decay_steps=max(total_steps, warmup_steps + 1),
      end_value=0.0)


# A warm-up may take at most this share of the run (see `warmup_length`).
MAX_WARMUP_FRACTION = 0.2


def warmup_length(config: ml_collections.ConfigDict, steps_per_epoch: int,
                  total_steps: int) -> int:
  """Warm-up steps: warmup_steps if > 0, else warmup_epochs; shortened to a
  fifth of the run if longer.

  Image recipes give the warm-up in epochs (5 for ImageNet), language models
  usually in steps; a short run of such a recipe would otherwise end at its
  peak learning rate. Shortening (with a warning) keeps the cosine decay
  that the recipe relies on.
  """
  limit = int(MAX_WARMUP_FRACTION * total_steps)
  if config.warmup_steps > 0:
    field, asked = f"warmup_steps={config.warmup_steps}", config.warmup_steps
    largest = f"warmup_steps to at most {limit}"
  else:
    field = f"warmup_epochs={config.warmup_epochs}"
    asked = int(round(config.warmup_epochs * steps_per_epoch))
    largest = f"warmup_epochs to at most {limit / max(steps_per_epoch, 1):.3g}"
  if asked > limit:
    logging.warning(
        "config.%s is %d of the run's %d steps; shortened to %d steps (a "
        "fifth of the run) so the learning rate still decays. Set %s to "
        "silence this.", field, asked, total_steps, limit, largest)
    return limit
  return asked


def decay_mask(params: Any) -> Any:
  """True for parameters that get weight decay: kernels (ndim > 1)."""
  return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def agc_mask(params: Any) -> Any:
  """True for parameters that adaptive gradient clipping clips: all but the
  final classifier, which NFNets and timm (`exclude_head`) leave unclipped."""
  return {name: jax.tree.map(lambda _: name != CLASSIFIER, subtree)
          for name, subtree in params.items()}


def gradient_clipping(config: ml_collections.ConfigDict
                      ) -> list[optax.GradientTransformation]:
  """AGC (if agc_clip > 0), then global-norm clipping (if grad_clip_norm > 0).

  Both act on the loss's gradients, before weight decay joins them.
  """
  clipping = []
  if config.agc_clip > 0:
    clipping.append(optax.masked(
        optax.adaptive_grad_clip(config.agc_clip, eps=AGC_EPS), agc_mask))
  if config.grad_clip_norm > 0:
    clipping.append(optax.clip_by_global_norm(config.grad_clip_norm))
  return clipping


def create_optimizer(config: ml_collections.ConfigDict,
                     schedule: optax.Schedule) -> optax.GradientTransformation:
  """Gradient clipping, then config.optimizer with masked weight decay.

  sgd: momentum (Nesterov optional) with coupled decay. adamw: optax.adamw.
  lamb: Adam, decoupled decay and the layer-wise trust ratio, which (as in
  timm's Lamb and the reference TensorFlow LAMB) skips the parameters kept
  out of weight decay; optax.lamb would scale those too.
  """
  if config.optimizer == "sgd":
    update = [optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
              optax.sgd(schedule, momentum=config.momentum,
                        nesterov=config.nesterov)]
  elif config.optimizer == "adamw":
    update = [optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2,
                          eps=config.adam_eps, weight_decay=config.weight_decay,
                          mask=decay_mask)]
  elif config.optimizer == "lamb":
    update = [optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2,
                                  eps=config.adam_eps),
              optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
              optax.masked(optax.scale_by_trust_ratio(), decay_mask),
              optax.scale_by_learning_rate(schedule)]
  else:
    raise ValueError(f"config.optimizer={config.optimizer!r} must be one of "
                     f"{OPTIMIZERS}.")
  return optax.chain(*gradient_clipping(config), *update)


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """EMA decay with a warm-up, min(decay, (1 + step) / (10 + step)).

  Early in training the average follows the weights closely, as TensorFlow's
  ExponentialMovingAverage(num_updates=step) does.
  """
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def update_ema(ema_params: Any, params: Any, step: jax.Array,
               decay: float) -> Any:
  """One EMA update of a pytree: the weights, or the batch-norm statistics."""
  return optax.incremental_update(params, ema_params,
                                  step_size=1.0 - ema_decay_at(step, decay))
