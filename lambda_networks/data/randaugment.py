"""RandAugment (Cubuk et al., 2020) with stateless, per-example randomness.

Two variants (`config.randaugment_variant`):
- "reference" (the default): the TensorFlow TPU reference that ResNet-RS
  trains with, operation by operation (`randaugment_reference.py`): 16
  operations, enhancement factors M/10·1.8 + 0.1, Cutout, Invert.
- "timm": this repository's first RandAugment, close to timm's "increasing"
  variant (`randaugment_timm.py`), kept so that older runs resume unchanged.
docs/training.md tables each operation's magnitude mapping in both.

Keras 3 ships a RandAugment layer, but it draws from a stateful seed generator
and evaluates every operation for every image, so a resumed tf.data pipeline
would not reproduce its draws. This version takes an explicit seed per image
(the same image and seed give the same result, whatever ran before) and runs
only the chosen operation of each layer (`tf.switch_case`). `magnitude` is on
the reference's 0–10 scale (values above 10 extrapolate; ResNet-RS uses
10–15). Images are float32 in [0, 255], [H, W, C] with C = 1 or 3.
"""

from __future__ import annotations

import tensorflow as tf

from lambda_networks.data import randaugment_reference
from lambda_networks.data import randaugment_timm

MAX_LEVEL = 10.0
VARIANTS = ("reference", "timm")


def reference_draws(seed: tf.Tensor, num_layers: int
                    ) -> list[tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
  """(operation index, sign ±1, operation seed) of each layer.

  The reference's draws, stateless: one of the 16 operations uniformly, a
  sign that is −1 or +1 with probability 1/2 each, and a seed for Cutout's
  position.
  """
  draws = []
  for layer_seed in tf.unstack(
      tf.random.experimental.stateless_split(seed, num_layers)):
    choice_seed, sign_seed, operation_seed = tf.unstack(
        tf.random.experimental.stateless_split(layer_seed, 3))
    choice = tf.random.stateless_uniform(
        [], choice_seed, 0, len(randaugment_reference.OPERATIONS), tf.int32)
    sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
    draws.append((choice, sign, operation_seed))
  return draws


def _reference(image: tf.Tensor, seed: tf.Tensor, num_layers: int,
               magnitude: float) -> tf.Tensor:
  image = tf.round(image)  # Whole grey levels, as the reference's uint8.
  operations = list(randaugment_reference.OPERATIONS.values())
  for choice, sign, operation_seed in reference_draws(seed, num_layers):
    branches = [
        (lambda op=op: op(image, magnitude, sign, operation_seed))
        for op in operations
    ]
    image = tf.switch_case(choice, branches)
    image.set_shape([None, None, image.shape[-1]])
  return image


def _timm(image: tf.Tensor, seed: tf.Tensor, num_layers: int,
          magnitude: float) -> tf.Tensor:
  level = magnitude / MAX_LEVEL
  seeds = tf.random.experimental.stateless_split(seed, num_layers)
  for layer in range(num_layers):
    choice_seed, sign_seed = tf.unstack(
        tf.random.experimental.stateless_split(seeds[layer], 2))
    choice = tf.random.stateless_uniform(
        [], choice_seed, 0, len(randaugment_timm.OPERATIONS), dtype=tf.int32)
    sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
    branches = [
        (lambda op=op, signed=signed: op(image, level * sign if signed else
                                         tf.constant(level, tf.float32)))
        for op, signed in randaugment_timm.OPERATIONS
    ]
    image = tf.switch_case(choice, branches)
    image.set_shape([None, None, image.shape[-1]])
  return image


def randaugment(image: tf.Tensor, seed: tf.Tensor, *, num_layers: int,
                magnitude: float, variant: str = "reference") -> tf.Tensor:
  """Applies `num_layers` random operations of strength `magnitude` (0–10).

  Args:
    image: float32 [H, W, C] in [0, 255].
    seed: int64 [2], this image's stateless seed.
    num_layers: operations applied one after the other.
    magnitude: the shared strength M.
    variant: one of VARIANTS.

  Returns:
    float32 [H, W, C] in [0, 255] ("reference": whole grey levels).
  """
  if variant == "reference":
    return _reference(image, seed, num_layers, float(magnitude))
  if variant == "timm":
    return _timm(image, seed, num_layers, magnitude)
  raise ValueError(f"RandAugment variant {variant!r} is not one of {VARIANTS}.")
