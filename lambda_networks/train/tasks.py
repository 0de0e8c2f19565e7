"""What the trainer asks of a task: its loss, its metrics and its config checks.

The trainer, the steps and the evaluation are task-agnostic; `for_config`
picks the task `config.task` names:

- "classification" (images): {"image", "label"} batches; softmax
  cross-entropy with label smoothing; eval top-1, top-5 and loss. Mixed
  train batches (mixup / CutMix, `train/mixing.py`) also carry
  `partner_label` and `label_weight`: soft targets; eval is never mixed.
- "language_model" (bytes): {"inputs", "targets"} int32 [B, T] batches
  (`data/text_source.py`); next-byte cross-entropy averaged over every
  position; train and eval report loss (nats per byte), `bits_per_byte`
  (loss / ln 2) and next-byte accuracy.

Eval sums are additive over batches and hosts (`evaluation.evaluate` adds
them); `eval_metrics` turns the totals into the reported numbers.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lambda_networks import models
from lambda_networks.errors import UserError

TASKS = ("classification", "language_model")
Metrics = dict[str, jax.Array]


def smoothed_one_hot(labels: jax.Array, num_classes: int,
                     label_smoothing: float = 0.0) -> jax.Array:
  """One-hot float32 targets, smoothed: 1 - s + s/K on the label, s/K
  elsewhere (s = label_smoothing, K = num_classes)."""
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return targets


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy with optional label smoothing."""
  targets = smoothed_one_hot(labels, logits.shape[-1], label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def mixed_targets(batch: dict, num_classes: int, label_smoothing: float = 0.0
                  ) -> jax.Array:
  """Soft targets of a mixed batch (`mixing.mix_batch`): λ·smooth(onehot(y))
  + (1 − λ)·smooth(onehot(y_partner)), as timm's `mixup_target`."""
  weight = batch["label_weight"][:, None]
  own = smoothed_one_hot(batch["label"], num_classes, label_smoothing)
  other = smoothed_one_hot(batch["partner_label"], num_classes, label_smoothing)
  return weight * own + (1.0 - weight) * other


class Classification:
  """Images to classes (the default task)."""

  scalar_keys = ("top1", "top5", "loss")  # Eval metrics written as scalars.

  def __init__(self, label_smoothing: float = 0.0):
    self.label_smoothing = label_smoothing

  def train_loss(self, model, batch: dict) -> tuple[jax.Array, Metrics]:
    """Mean cross-entropy and accuracy; against soft targets when the batch
    was mixed (`partner_label` present), its accuracy then against the label
    with the larger weight (λ ≥ 0.5: the example's own)."""
    logits = model(batch["image"])
    labels = batch["label"]
    if "partner_label" in batch:
      targets = mixed_targets(batch, logits.shape[-1], self.label_smoothing)
      loss = optax.softmax_cross_entropy(logits.astype(jnp.float32),
                                         targets).mean()
      labels = jnp.where(batch["label_weight"] >= 0.5, labels,
                         batch["partner_label"])
    else:
      loss = cross_entropy(logits, labels, self.label_smoothing).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, {"accuracy": accuracy}

  def eval_sums(self, model, batch: dict) -> Metrics:
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
        "loss_sum": jnp.sum(cross_entropy(logits, labels) * mask),
        "count": jnp.sum(real, dtype=jnp.int32),
    }

  def eval_metrics(self, totals: dict[str, float]) -> dict[str, float]:
    count = max(totals["count"], 1)
    return {"top1": totals["correct_top1"] / count,
            "top5": totals["correct_top5"] / count,
            "loss": totals["loss_sum"] / count}

  def summary(self, result: dict[str, Any]) -> str:
    return (f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  "
            f"loss {result['loss']:.4f}")


class LanguageModelling:
  """Next-byte prediction over packed sequences."""

  scalar_keys = ("loss", "bits_per_byte", "accuracy")

  def train_loss(self, model, batch: dict) -> tuple[jax.Array, Metrics]:
    logits = model(batch["inputs"])
    loss = cross_entropy(logits, batch["targets"]).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["targets"])
    return loss, {"accuracy": accuracy, "bits_per_byte": loss / math.log(2)}

  def eval_sums(self, model, batch: dict) -> Metrics:
    logits = model(batch["inputs"]).astype(jnp.float32)
    targets, mask = batch["targets"], batch["mask"]
    real = mask > 0
    per_token = cross_entropy(logits, targets)  # [B, T]
    correct = (jnp.argmax(logits, -1) == targets) & real[:, None]
    return {
        "loss_sum": jnp.sum(per_token * mask[:, None]),
        "correct": jnp.sum(correct, dtype=jnp.int32),
        "tokens": jnp.sum(real, dtype=jnp.int32) * targets.shape[1],
        "count": jnp.sum(real, dtype=jnp.int32),
    }

  def eval_metrics(self, totals: dict[str, float]) -> dict[str, float]:
    tokens = max(totals["tokens"], 1)
    loss = totals["loss_sum"] / tokens
    return {"loss": loss, "bits_per_byte": loss / math.log(2),
            "accuracy": totals["correct"] / tokens, "bytes": totals["tokens"]}

  def summary(self, result: dict[str, Any]) -> str:
    return (f"loss {result['loss']:.4f}  bits/byte {result['bits_per_byte']:.4f}  "
            f"accuracy {result['accuracy']:.4f}")


def for_config(config: ml_collections.ConfigDict):
  """The task `config.task` names."""
  if config.get("task", "classification") == "language_model":
    return LanguageModelling()
  return Classification(config.label_smoothing)


def check_config(config: ml_collections.ConfigDict, given: Iterable[str] = ()
                 ) -> None:
  """Refuses a task that the model or the dataset cannot serve, in one line."""
  # pylint: disable=g-import-not-at-top
  from lambda_networks.data import text_source
  from lambda_networks.models import lm
  task = config.get("task", "classification")
  if task not in TASKS:
    raise UserError(f"config.task={task!r} must be one of {TASKS}.")
  is_lm = isinstance(models.get_spec(config.model).config, lm.LanguageModelConfig)
  if is_lm != (task == "language_model"):
    fix = ("use configs/lambda_lm.py (or --config.task=language_model)" if is_lm
           else "pick a lambda_lm_* or transformer_lm_* model")
    raise UserError(f"config.model={config.model!r} is "
                    f"{'a language model' if is_lm else 'an image model'} but "
                    f"config.task={task!r}; {fix}.")
  if task != "language_model":
    return
  if config.label_smoothing:
    raise UserError("config.label_smoothing must be 0 for language models "
                    "(bits per byte would not be comparable).")
  given = set(given)
  if config.dataset != text_source.TEXT_FILES and "text_files" in given:
    raise UserError(f"config.text_files is read only with config.dataset="
                    f"{text_source.TEXT_FILES!r}, not {config.dataset!r}.")
  synthetic = {"synthetic_train_examples", "synthetic_eval_examples"} & given
  if config.dataset != text_source.RECALL_TASK and synthetic:
    raise UserError(f"{', '.join(sorted(synthetic))} only size the built-in "
                    f"{text_source.RECALL_TASK!r} task; config.dataset="
                    f"{config.dataset!r} ignores them: drop them.")
