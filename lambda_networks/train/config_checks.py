"""Early, clear errors for config values that would fail later or silently."""

from __future__ import annotations

import ml_collections

from lambda_networks import models

_DTYPES = ("float32", "bfloat16", "float16")


def check(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
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
  for field, allowed in (("dtype", ("auto", *_DTYPES)), ("param_dtype", _DTYPES)):
    if config[field] not in allowed:
      raise ValueError(f"config.{field}={config[field]!r} must be one of {allowed}.")
  if config.keep_checkpoints < 1:
    raise ValueError("config.keep_checkpoints must be at least 1, got "
                     f"{config.keep_checkpoints}.")
  if not 0.0 < config.min_crop_area <= 1.0:
    raise ValueError(f"config.min_crop_area must be in (0, 1], got {config.min_crop_area}.")
  if not 0.0 < config.eval_crop_fraction <= 1.0:
    raise ValueError("config.eval_crop_fraction must be in (0, 1], got "
                     f"{config.eval_crop_fraction}.")
  if config.train_crop not in ("inception", "pad"):
    raise ValueError(f"config.train_crop must be 'inception' or 'pad', got "
                     f"{config.train_crop!r}.")
  if config.crop_padding < 0:
    raise ValueError(f"config.crop_padding must be >= 0, got {config.crop_padding}.")
  if len(config.normalization_mean) != len(config.normalization_stddev):
    raise ValueError(
        "config.normalization_mean and normalization_stddev need the same "
        f"length, got {config.normalization_mean} and "
        f"{config.normalization_stddev} (both empty: computed from the data).")
