"""Early, clear errors for config values that would fail later or silently.

Everything here runs before any compile or write: `check` is called by the
trainer and by eval.py; `train.py` also passes the names of the fields given
on its command line, so that an override the chosen dataset would ignore is
refused rather than dropped. `check_against_data` runs in the build, once the
data source knows its image size and split sizes, still before the workdir
is written.
"""

from __future__ import annotations

import math
from typing import Iterable

import ml_collections

from lambda_networks import data
from lambda_networks import models
from lambda_networks.models import common as model_common
from lambda_networks.data import synthetic
from lambda_networks.train import tasks
from lambda_networks.errors import UserError, raise_as_user_errors
from lambda_networks.train.optimizer import OPTIMIZERS

_DTYPES = ("float32", "bfloat16")
# float16 is refused rather than trained without loss scaling (see
# `check_precision`): the trainer has none, and bfloat16 needs none.
_UNSAFE_DTYPES = ("float16",)
# The fields that only one kind of optimiser reads.
_SGD_ONLY = ("momentum", "nesterov")
_ADAM_ONLY = ("adam_b1", "adam_b2", "adam_eps")
# lambda_networks.data.randaugment.VARIANTS, named here so that the checks
# load without TensorFlow (tests/test_randaugment.py keeps the two equal).
RANDAUGMENT_VARIANTS = ("reference", "timm")
REMAT_POLICIES = model_common.REMAT_POLICIES


# (field, lowest, highest, lowest allowed?, highest allowed?, what it means)
# for numeric fields; None: no bound. Written so that NaN fails every range.
_RANGES = (
    ("num_classes", 0, None, True, True, "0 takes it from the dataset"),
    ("image_size", 0, None, True, True, "pixels; 0: the dataset's own size"),
    ("randaugment_layers", 0, None, True, True, "operations per image"),
    ("randaugment_magnitude", 0.0, None, True, True, "0 turns RandAugment off"),
    ("shuffle_buffer", 0, None, True, True, "examples; 0 or 1: no shuffle"),
    ("shuffle_chunk", 1, None, True, True,
     "consecutive examples read together"),
    ("prefetch_batches", 1, None, True, True, "host batches prepared ahead"),
    ("synthetic_train_examples", 1, None, True, True, "examples"),
    ("synthetic_eval_examples", 1, None, True, True, "examples"),
    ("eval_batch_size", 0, None, True, True, "0 uses global_batch_size"),
    ("num_epochs", 0.0, None, True, True, "used when num_train_steps is 0"),
    ("num_train_steps", 0, None, True, True, "0 trains for num_epochs"),
    ("warmup_epochs", 0.0, None, True, True, "epochs of linear warm-up"),
    ("warmup_steps", 0, None, True, True,
     "steps of linear warm-up; 0 uses warmup_epochs"),
    ("base_learning_rate", 0.0, None, False, True,
     "learning rate per 256 examples"),
    ("momentum", 0.0, 1.0, True, False, "SGD momentum"),
    ("adam_b1", 0.0, 1.0, True, False, "decay of Adam's first moment"),
    ("adam_b2", 0.0, 1.0, True, False, "decay of Adam's second moment"),
    ("adam_eps", 0.0, None, False, True, "Adam's denominator epsilon"),
    ("weight_decay", 0.0, None, True, True, "decay factor on kernels"),
    ("agc_clip", 0.0, None, True, True,
     "adaptive gradient clipping ratio; 0 turns it off"),
    ("grad_clip_norm", 0.0, None, True, True,
     "largest global gradient norm; 0 turns clipping off"),
    ("mixup_alpha", 0.0, None, True, True,
     "mixup's Beta(α, α); 0 turns mixup off"),
    ("cutmix_alpha", 0.0, None, True, True,
     "CutMix's Beta(α, α); 0 turns CutMix off"),
    ("mixup_switch_prob", 0.0, 1.0, True, True,
     "chance of CutMix instead of mixup when both are on"),
    ("mixup_prob", 0.0, 1.0, True, True, "chance a batch is mixed at all"),
    ("seed", 0, None, True, True, "random seed"),
    ("eval_every_steps", 0, None, True, True, "0 evaluates at the end only"),
    ("checkpoint_every_steps", 1, None, True, True,
     "steps between checkpoints"),
    ("keep_checkpoint_period", 0, None, True, True, "0 keeps no extra steps"),
    ("eval_every_epochs", 0.0, None, True, True, "0 uses eval_every_steps"),
    ("keep_checkpoint_every_epochs", 0.0, None, True, True,
     "0 uses keep_checkpoint_period"),
    ("profile_start_step", 0, None, True, True, "first traced step"),
    ("profile_num_steps", 0, None, True, True, "0 traces nothing"),
    ("gradient_accumulation_steps", 1, None, True, True,
     "micro-batches per optimiser step"),
    ("batch_norm_group_size", 0, None, True, True,
     "examples per batch-norm group; 0: the whole batch"),
    ("lock_renew_seconds", 0.0, None, False, True,
     "seconds between renewals of the workdir's lock"),
    ("lock_stale_seconds", 0.0, None, False, True,
     "seconds without renewal after which another trainer takes the lock"),
)
_OPTIONAL_RATES = ("dropout_rate", "stochastic_depth_rate")

# What the built-in dataset ignores: fields with a value that means "unused"
# (refused when they hold anything else), and fields refused only when given
# on the command line (their defaults are ordinary values).
_SYNTHETIC_NEUTRAL = (("image_size", synthetic.IMAGE_SIZE), ("data_dir", ""),
                      ("dataset_version", ""), ("randaugment_magnitude", 0.0))
_SYNTHETIC_IGNORES = ("min_crop_area", "eval_crop_fraction", "randaugment_layers",
                      "randaugment_variant",
                      "normalization_mean", "normalization_stddev",
                      "shuffle_buffer", "shuffle_chunk", "image_key", "label_key",
                      "train_crop", "crop_padding")
_TFDS_IGNORES = ("synthetic_train_examples", "synthetic_eval_examples")


def _range_text(low, high, low_ok: bool, high_ok: bool) -> str:
  if high is None:
    return f"{'≥' if low_ok else '>'} {low}"
  return f"in {'[' if low_ok else '('}{low}, {high}{']' if high_ok else ')'}"


def check_ranges(config: ml_collections.ConfigDict) -> None:
  """Raises UserError for a numeric field outside its meaningful range."""
  for field, low, high, low_ok, high_ok, meaning in _RANGES:
    value = config[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise UserError(f"config.{field}={value!r} must be a number ({meaning}).")
    fine = (value >= low if low_ok else value > low) and (
        high is None or (value <= high if high_ok else value < high))
    if not fine:
      raise UserError(
          f"config.{field}={value!r} is out of range: it must be "
          f"{_range_text(low, high, low_ok, high_ok)} ({meaning}).")
  for field in _OPTIONAL_RATES:
    value = config[field]
    if value is not None and not 0.0 <= value < 1.0:
      raise UserError(f"config.{field}={value!r} must be in [0, 1), or unset "
                      "to keep the model's default.")
  stddev = tuple(config.normalization_stddev)
  if not all(math.isfinite(s) and s > 0 for s in stddev):
    raise UserError(f"config.normalization_stddev={stddev} must be positive "
                    "(images are divided by it).")
  if len(tuple(config.normalization_mean)) != len(stddev):
    raise UserError(
        f"config.normalization_mean ({len(tuple(config.normalization_mean))} "
        f"values) and normalization_stddev ({len(stddev)}) must have one "
        "value per channel each.")
  shape = tuple(config.mesh_shape)
  if not all(isinstance(size, int) and not isinstance(size, bool) and
             (size >= 1 or size == -1) for size in shape):
    raise UserError(f"config.mesh_shape={shape} must hold positive ints "
                    "(or -1 for every device), e.g. (-1,).")


def check_precision(config: ml_collections.ConfigDict) -> None:
  """Refuses dtypes that are unknown or would train unsafely (float16).

  float16 has 5 exponent bits: without loss scaling, gradients below ~6e-8
  flush to zero and activations above 65504 overflow, and float16 parameters
  also drop updates smaller than 1/1024 of a weight. bfloat16 has float32's
  range, so it needs no loss scaling; the trainer has none.
  """
  overrides = config.model_overrides.to_dict()
  for field, allowed in (("dtype", ("auto", *_DTYPES)), ("param_dtype", _DTYPES)):
    value = config[field]
    overridden = overrides.get(field)
    if overridden is not None and str(overridden) in _UNSAFE_DTYPES:
      raise UserError(
          f"config.model_overrides.{field}={overridden!r} would train "
          f"unsafely (no loss scaling); drop it and set config.{field} "
          "('bfloat16' or 'float32').")
    if value in _UNSAFE_DTYPES and field == "param_dtype":
      raise UserError(
          f"config.param_dtype={value!r} would train unsafely: float16 "
          "parameters lose every update smaller than 1/1024 of a weight and "
          "overflow above 65504. Keep param_dtype='float32' (computation can "
          "still be 'bfloat16' through config.dtype).")
    if value in _UNSAFE_DTYPES:
      raise UserError(
          f"config.dtype={value!r} would train without loss scaling, which "
          "this trainer does not do: small gradients underflow to zero and "
          "large activations overflow. Use 'bfloat16' (float32's range, as "
          "fast on TPUs and recent GPUs) or 'float32'.")
    if value not in allowed:
      raise UserError(f"config.{field}={value!r} must be one of {allowed}.")


def check_dataset_fields(config: ml_collections.ConfigDict,
                         given: Iterable[str] = ()) -> None:
  """Refuses fields that the chosen dataset would silently ignore.

  Args:
    config: the run's config.
    given: names of the fields set on the command line (e.g. "image_size").
  """
  given = set(given)
  if config.get("task", "classification") == "language_model":
    return  # Text datasets: tasks.check_config.
  if config.dataset == data.SYNTHETIC_DATASET:
    ignored = [f"{field}={config[field]!r}" for field, neutral
               in _SYNTHETIC_NEUTRAL if config[field] != neutral]
    ignored += [field for field in _SYNTHETIC_IGNORES if field in given]
    if ignored:
      raise UserError(
          f"config.dataset={config.dataset!r} (the built-in task, "
          f"{synthetic.IMAGE_SIZE}×{synthetic.IMAGE_SIZE} images made in "
          f"process, no augmentation) ignores {', '.join(ignored)}; drop "
          f"{'it' if len(ignored) == 1 else 'them'} or use a TFDS dataset.")
  else:
    ignored = [field for field in _TFDS_IGNORES if field in given]
    if ignored:
      raise UserError(
          f"{', '.join(ignored)} only size the built-in dataset "
          f"{data.SYNTHETIC_DATASET!r}; config.dataset={config.dataset!r} "
          "ignores them: drop them.")


@raise_as_user_errors(ValueError)
def check(config: ml_collections.ConfigDict, given: Iterable[str] = ()) -> None:
  """Raises UserError (a ValueError) naming the field and the fix.

  Args:
    config: the run's config.
    given: names of the fields set on the command line, if known.
  """
  if config.model not in models.available_models():
    models.get_spec(config.model)  # Raises with the list and close matches.
  for field in ("global_batch_size", "log_every_steps"):
    if config[field] < 1:
      raise ValueError(f"config.{field} must be positive, got {config[field]}.")
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise ValueError("Set config.num_epochs > 0 or config.num_train_steps > 0.")
  if not 0.0 <= config.ema_decay < 1.0:
    raise ValueError(f"config.ema_decay must be in [0, 1) (0 turns the EMA "
                     f"off), got {config.ema_decay}.")
  if not 0.0 <= config.label_smoothing < 1.0:
    raise ValueError(f"config.label_smoothing must be in [0, 1), got "
                     f"{config.label_smoothing}.")
  check_precision(config)
  for epochs, steps in (("eval_every_epochs", "eval_every_steps"),
                        ("keep_checkpoint_every_epochs", "keep_checkpoint_period")):
    if config[epochs] > 0 and config[steps] > 0:
      raise ValueError(f"config.{epochs} and config.{steps} give the same "
                       "interval; set one of them (the other to 0).")
  if config.keep_checkpoints < 1:
    raise ValueError("config.keep_checkpoints must be at least 1, got "
                     f"{config.keep_checkpoints}.")
  if not 0.0 < config.min_crop_area <= 1.0:
    raise ValueError(f"config.min_crop_area must be in (0, 1], got {config.min_crop_area}.")
  if not 0.0 < config.eval_crop_fraction <= 1.0:
    raise ValueError("config.eval_crop_fraction must be in (0, 1], got "
                     f"{config.eval_crop_fraction}.")
  for field in ("dataset", "train_split", "eval_split"):
    if not str(config[field]).strip():
      raise UserError(f"config.{field} is empty; name one (see configs/default.py).")
  if config.train_crop not in ("inception", "pad"):
    raise ValueError(f"config.train_crop must be 'inception' or 'pad', got "
                     f"{config.train_crop!r}.")
  if config.randaugment_variant not in RANDAUGMENT_VARIANTS:
    raise ValueError(
        f"config.randaugment_variant={config.randaugment_variant!r} must be "
        f"one of {RANDAUGMENT_VARIANTS} (see docs/training.md, RandAugment).")
  if config.remat not in REMAT_POLICIES:
    raise ValueError(
        f"config.remat={config.remat!r} must be one of {REMAT_POLICIES} "
        "('block' recomputes each residual block in the backward pass).")
  for field in ("gradient_accumulation_steps", "batch_norm_group_size"):
    if isinstance(config[field], bool) or not isinstance(config[field], int):
      raise ValueError(f"config.{field}={config[field]!r} must be an int.")
  if config.crop_padding < 0:
    raise ValueError(f"config.crop_padding must be >= 0, got {config.crop_padding}.")
  check_ranges(config)
  if config.lock_stale_seconds <= config.lock_renew_seconds:
    raise ValueError(
        f"config.lock_stale_seconds={config.lock_stale_seconds} must be longer "
        f"than config.lock_renew_seconds={config.lock_renew_seconds}, or a live "
        "trainer's lock would be taken over between renewals; a few renewal "
        "periods (e.g. 300 and 60) ride out a slow file system.")
  check_dataset_fields(config, given)
  check_optimizer_fields(config, given)
  check_mixing_fields(config, given)
  tasks.check_config(config, given)
  check_model_overrides(config)


def check_optimizer_fields(config: ml_collections.ConfigDict,
                           given: Iterable[str] = ()) -> None:
  """Refuses an unknown optimiser, and command-line fields it would ignore.

  Args:
    config: the run's config.
    given: names of the fields set on the command line.
  """
  if config.optimizer not in OPTIMIZERS:
    raise UserError(f"config.optimizer={config.optimizer!r} must be one of "
                    f"{OPTIMIZERS} (see docs/training.md, Optimisers).")
  unused = _ADAM_ONLY if config.optimizer == "sgd" else _SGD_ONLY
  ignored = [field for field in unused if field in set(given)]
  if ignored:
    raise UserError(
        f"config.optimizer={config.optimizer!r} ignores "
        f"{', '.join(ignored)}; drop {'it' if len(ignored) == 1 else 'them'}"
        f" or choose an optimiser that reads "
        f"{'it' if len(ignored) == 1 else 'them'}.")


def check_mixing_fields(config: ml_collections.ConfigDict,
                        given: Iterable[str] = ()) -> None:
  """Refuses label mixing the task cannot take, and command-line mixing
  fields that the alphas leave unread (the ranges: `check_ranges`).

  Args:
    config: the run's config.
    given: names of the fields set on the command line.
  """
  on = [f"{field}={config[field]!r}" for field in ("mixup_alpha", "cutmix_alpha")
        if config[field] > 0]
  if on and config.get("task", "classification") != "classification":
    raise UserError(
        f"Mixup/CutMix (config.{', config.'.join(on)}) mixes images and "
        f"their labels, which config.task={config.task!r} does not have; "
        "set the alphas to 0.")
  unread = []
  if "mixup_prob" in set(given) and not on:
    unread.append("mixup_prob (mixup_alpha and cutmix_alpha are 0)")
  if "mixup_switch_prob" in set(given) and len(on) < 2:
    unread.append("mixup_switch_prob (read only when mixup_alpha and "
                  "cutmix_alpha are both > 0)")
  if unread:
    raise UserError(f"config.{' and config.'.join(unread)} would be ignored; "
                    "drop it or turn the mixing on.")


def check_against_data(config: ml_collections.ConfigDict,
                       info: data.DatasetInfo, process_count: int) -> None:
  """Refuses a config the dataset cannot feed: called once the data source
  knows its image size and split sizes, before anything is built or written.

  Args:
    config: the run's config.
    info: the dataset's facts (image shape after preprocessing, split sizes).
    process_count: hosts sharing each global batch (each reads 1/N of a split).
  """
  data_hw = tuple(info.image_shape[:2])
  size = config.model_overrides.to_dict().get("image_size")
  if size is not None:
    model_hw = (size, size) if isinstance(size, int) else tuple(size)
    if model_hw != data_hw:
      if config.dataset == data.SYNTHETIC_DATASET:
        fix = ("Drop it: the built-in task's images are always "
               f"{synthetic.IMAGE_SIZE}×{synthetic.IMAGE_SIZE}")
      else:
        fix = (f"Drop it and set --config.image_size={model_hw[0]} instead, "
               "which resizes the images and sizes the model to match")
      raise UserError(
          f"config.model_overrides.image_size={size!r} does not match the "
          f"{data_hw[0]}×{data_hw[1]} images that config.dataset="
          f"{config.dataset!r} feeds the model (config.image_size="
          f"{config.image_size}); a model built for other sizes would fail or "
          f"waste its position tables. {fix}.")
  examples = info.num_train_examples
  per_host = examples // process_count
  if per_host * process_count < config.global_batch_size:
    hosts = (f", {per_host} per host for {process_count} hosts"
             if process_count > 1 else "")
    raise UserError(
        f"config.global_batch_size={config.global_batch_size} is larger than "
        f"the training split config.train_split={config.train_split!r} of "
        f"{config.dataset!r} ({examples} examples{hosts}): not one batch "
        f"fits. Lower global_batch_size to at most "
        f"{per_host * process_count}, or train on a larger split.")


def check_against_mesh(config: ml_collections.ConfigDict, devices: int) -> None:
  """Refuses accumulation, batch-norm groups and label mixing the per-device
  batch cannot take.

  Each device holds global_batch_size / devices examples; accumulation cuts
  that into gradient_accumulation_steps micro-batches, and batch-norm groups
  must fit a device's micro-batch (a group straddling devices or
  micro-batches would need statistics from examples that are not there).
  Mixup and CutMix pair examples within a device's micro-batch: one example
  alone would be its own partner.
  """
  per_device = config.global_batch_size // devices
  over = f"over {devices} device{'s' if devices > 1 else ''}"
  steps = config.gradient_accumulation_steps
  if per_device % steps:
    raise UserError(
        f"config.gradient_accumulation_steps={steps} does not divide the "
        f"per-device batch of {per_device} (global_batch_size="
        f"{config.global_batch_size} {over}); use a divisor "
        f"of {per_device}.")
  micro = per_device // steps
  mixing = [f"config.{field}={config[field]!r}" for field
            in ("mixup_alpha", "cutmix_alpha") if config.get(field, 0.0) > 0]
  if mixing and micro < 2:
    raise UserError(
        f"Mixup/CutMix ({', '.join(mixing)}) pairs each example with another "
        f"of its device's {'micro-' if steps > 1 else ''}batch, which holds 1 "
        f"example (global_batch_size={config.global_batch_size} {over}"
        f"{f', gradient_accumulation_steps={steps}' if steps > 1 else ''}): "
        "nothing would be mixed. Use a larger batch or fewer devices.")
  overrides = config.model_overrides.to_dict()
  group = overrides.get("batch_norm_group_size") or config.batch_norm_group_size
  if group and micro % group:
    where = (f"micro-batch of {micro} ({per_device} per device / "
             f"gradient_accumulation_steps={steps})" if steps > 1
             else f"batch of {per_device}")
    raise UserError(
        f"config.batch_norm_group_size={group} does not divide the per-device "
        f"{where}, for global_batch_size={config.global_batch_size} {over}; "
        f"use a divisor of {micro} (0: the whole batch).")


def check_model_overrides(config: ml_collections.ConfigDict) -> None:
  """The model's own checks of config.model_overrides, before anything is built.

  (model_flags runs them for command-line overrides; this covers the ones a
  config file sets, and a --config.model whose layout clashes with them.)
  """
  given = {field: None if value == "none" else value  # "none": set None.
           for field, value in config.model_overrides.to_dict().items()
           if value is not None}
  try:
    models.get_config(config.model, **given)
  except (TypeError, ValueError) as error:
    raise UserError(f"config.model={config.model!r} with config.model_overrides "
                    f"{given}: {error}") from error
