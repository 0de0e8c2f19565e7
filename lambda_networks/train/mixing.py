"""Mixup and CutMix: label mixing inside the jitted train step.

The semantics are those of timm's `Mixup` in batch mode
(pytorch-image-models, `timm/data/mixup.py`: `_params_per_batch`,
`rand_bbox`, `cutmix_bbox_and_lam`, `mixup_target`); the code is ours:

- With probability `mixup_prob` a (micro-)batch is mixed at all; when both
  `mixup_alpha` and `cutmix_alpha` are > 0, it uses CutMix with probability
  `mixup_switch_prob`, else mixup. One λ ~ Beta(α, α) per batch, α of the
  chosen kind.
- Each example's partner is the batch reversed (timm's `x.flip(0)`), here
  *within each device's shard*: timm under DDP mixes each GPU's local batch,
  and reversing the whole sharded batch would move images between devices.
  With gradient accumulation it is each shard of each micro-batch, and each
  micro-batch draws its own mix.
- mixup: image = λ·x + (1 − λ)·x_partner.
- CutMix: a box of side ⌊H·√(1 − λ)⌋ × ⌊W·√(1 − λ)⌋ around a uniform
  centre, each half-side ⌊side / 2⌋, clipped to the image, takes the
  partner's pixels; λ is then corrected to the share of the image left
  outside the box (timm's `correct_lam=True`), so that the labels weigh
  exactly what the pixels show.
- targets = λ·smooth(onehot(y)) + (1 − λ)·smooth(onehot(y_partner)), label
  smoothing applied to both one-hots as timm does (the task computes them
  from `partner_label` and `label_weight`, `tasks.Classification`).

The key of step s, micro-batch i is `fold_in(fold_in(key(seed + 3), s), i)`:
a resumed run draws exactly the mixes an uninterrupted one would have drawn.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

# Keys already taken: parameters `seed`, init dropout `seed + 1`, the train
# step's dropout `seed + 2` (state.py, steps.py).
_SEED_OFFSET = 3


@dataclasses.dataclass(frozen=True)
class Mixing:
  """What the config asks of label mixing (see configs/default.py)."""
  mixup_alpha: float
  cutmix_alpha: float
  switch_prob: float  # Chance of CutMix when both are on.
  prob: float  # Chance a batch is mixed at all.
  seed: int


def from_config(config: ml_collections.ConfigDict) -> Mixing | None:
  """The config's mixing, or None when both alphas are 0 (or no images)."""
  if config.get("task", "classification") != "classification":
    return None
  mixup = config.get("mixup_alpha", 0.0)
  cutmix = config.get("cutmix_alpha", 0.0)
  if not (mixup > 0 or cutmix > 0):
    return None
  return Mixing(mixup_alpha=float(mixup), cutmix_alpha=float(cutmix),
                switch_prob=float(config.mixup_switch_prob),
                prob=float(config.mixup_prob), seed=int(config.seed))


class Mix(NamedTuple):
  """One batch's draw."""
  ratio: jax.Array  # λ, float32: the weight of each example's own label.
  use_cutmix: jax.Array  # bool.
  box: jax.Array  # int32 [top, bottom, left, right); empty unless CutMix.


def key(seed: int, step: jax.Array, micro_batch: jax.Array | int = 0
        ) -> jax.Array:
  """The key of (seed, optimiser step, micro-batch index)."""
  base = jax.random.key(seed + _SEED_OFFSET)
  return jax.random.fold_in(jax.random.fold_in(base, step), micro_batch)


def cutmix_box(ratio: jax.Array, center_y: jax.Array, center_x: jax.Array,
               height: int, width: int) -> jax.Array:
  """timm's `rand_bbox` for λ = ratio: int32 [top, bottom, left, right)."""
  side = jnp.sqrt(1.0 - ratio.astype(jnp.float32))
  half_h = jnp.floor(height * side).astype(jnp.int32) // 2
  half_w = jnp.floor(width * side).astype(jnp.int32) // 2
  return jnp.stack([jnp.clip(center_y - half_h, 0, height),
                    jnp.clip(center_y + half_h, 0, height),
                    jnp.clip(center_x - half_w, 0, width),
                    jnp.clip(center_x + half_w, 0, width)]).astype(jnp.int32)


def outside_share(box: jax.Array, height: int, width: int) -> jax.Array:
  """The corrected λ: the share of the image outside the box."""
  area = (box[1] - box[0]) * (box[3] - box[2])
  return 1.0 - area.astype(jnp.float32) / (height * width)


def draw(mixing: Mixing, rng: jax.Array, height: int, width: int) -> Mix:
  """One batch's λ, kind and box (timm's `_params_per_batch`, then the box)."""
  apply_key, switch_key, mixup_key, cutmix_key, center_key = jax.random.split(
      rng, 5)
  apply = jax.random.uniform(apply_key) < mixing.prob
  if mixing.mixup_alpha > 0 and mixing.cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(switch_key) < mixing.switch_prob
  else:
    use_cutmix = jnp.asarray(mixing.cutmix_alpha > 0)
  beta = lambda rng, alpha: (jax.random.beta(rng, alpha, alpha) if alpha > 0
                             else jnp.float32(1.0))
  ratio = jnp.where(use_cutmix, beta(cutmix_key, mixing.cutmix_alpha),
                    beta(mixup_key, mixing.mixup_alpha))
  ratio = jnp.where(apply, ratio, 1.0)
  use_cutmix = use_cutmix & apply
  center = jax.random.randint(center_key, (2,), 0, jnp.array([height, width]))
  box = jnp.where(use_cutmix, cutmix_box(ratio, center[0], center[1], height,
                                         width), jnp.zeros(4, jnp.int32))
  ratio = jnp.where(use_cutmix, outside_share(box, height, width), ratio)
  return Mix(ratio=ratio.astype(jnp.float32), use_cutmix=use_cutmix, box=box)


def partner(array: jax.Array, shards: int) -> jax.Array:
  """Each example's partner: the batch reversed within each of `shards`
  equal consecutive blocks (the devices' shards), so nothing moves between
  devices."""
  blocks = array.reshape((shards, array.shape[0] // shards) + array.shape[1:])
  return jnp.flip(blocks, axis=1).reshape(array.shape)


def mix_images(images: jax.Array, mix: Mix, shards: int) -> jax.Array:
  """Images [B, H, W, C] mixed with their partners as `mix` says."""
  others = partner(images, shards)
  ratio = mix.ratio.astype(images.dtype)
  blended = ratio * images + (1 - ratio) * others
  rows, cols = jnp.arange(images.shape[1]), jnp.arange(images.shape[2])
  top, bottom, left, right = mix.box
  inside = (((rows >= top) & (rows < bottom))[:, None]
            & ((cols >= left) & (cols < right))[None, :])
  pasted = jnp.where(inside[None, :, :, None], others, images)
  return jnp.where(mix.use_cutmix, pasted, blended)


def mix_batch(mixing: Mixing | None, batch: dict, step: jax.Array,
              micro_batch: jax.Array | int = 0, shards: int = 1) -> dict:
  """The batch the loss sees: images mixed, and `partner_label` and
  `label_weight` (λ per example) beside `label`; unchanged if `mixing` is
  None."""
  if mixing is None:
    return batch
  images = batch["image"]
  mix = draw(mixing, key(mixing.seed, step, micro_batch), images.shape[1],
             images.shape[2])
  return {**batch, "image": mix_images(images, mix, shards),
          "partner_label": partner(batch["label"], shards),
          "label_weight": jnp.full(batch["label"].shape, mix.ratio)}
