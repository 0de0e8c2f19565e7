"""A run that describes itself: its resolved config in the workdir.

`resolve` fills the values a config leaves to the dataset ("auto" eval split,
image size, normalisation statistics computed from the training split), as
one step of `resolved_config.prepare`; `record` writes the prepared config to
`<workdir>/config.json` when training starts and, on a resumed
run, says which fields that change the result differ from the saved ones;
`load` reads it back so `eval.py --workdir=DIR` needs nothing else;
`describe` is what every metrics JSON says about the run that made it.
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections
from etils import epath

from lambda_networks.errors import UserError

CONFIG_FILE = "config.json"
# Fields that change logging, checkpointing or speed but not what is learned
# or how it is scored.
BOOKKEEPING_FIELDS = frozenset({
    "data_dir", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
    "keep_checkpoints", "keep_checkpoint_period", "async_checkpointing",
    "profile_start_step", "profile_num_steps", "prefetch_batches",
    "eval_batch_size", "mesh_shape", "eval_every_epochs",
    "keep_checkpoint_every_epochs", "remat",
})

# Intervals given in epochs and the step fields they resolve to
# (`resolved_config.resolve_epoch_intervals`).
_EPOCH_TWINS = (("eval_every_epochs", "eval_every_steps"),
                ("keep_checkpoint_every_epochs", "keep_checkpoint_period"))


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Fills eval_split='auto', image_size=0 and empty statistics in place.

  Both come from the dataset (see `lambda_networks.data.statistics`); the
  synthetic task needs neither statistics nor a split lookup.
  """
  # pylint: disable=g-import-not-at-top
  from lambda_networks import data
  if config.get("task", "classification") == "language_model":
    return config  # Text: no image size or statistics; splits are named.
  needs_split = config.eval_split == "auto"
  needs_stats = not config.normalization_mean
  needs_size = config.image_size == 0
  if config.dataset == data.SYNTHETIC_DATASET:
    if needs_split:
      config.eval_split = "test"
    if needs_size:
      config.image_size = 32
    return config
  if not (needs_split or needs_stats or needs_size):
    return config
  from lambda_networks.data import statistics
  from lambda_networks.data import tfds_source
  builder = tfds_source.load_builder(config.dataset, config.dataset_version,
                                     config.data_dir)
  if needs_split:
    config.eval_split = statistics.default_eval_split(builder)
  if needs_size:
    config.image_size = statistics.image_size(builder, config.image_key)
  if needs_stats:
    mean, stddev = statistics.channel_statistics(
        builder, config.train_split, config.image_key,
        config.normalization_examples)
    config.normalization_mean = mean
    config.normalization_stddev = stddev
  return config


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str) + "\n"


def load(workdir: str, defaults: ml_collections.ConfigDict | None = None
         ) -> ml_collections.ConfigDict | None:
  """The config a run saved in `workdir`, or None if it saved none.

  With `defaults`, fields the file lacks (a run saved by an older version of
  the code) take their default values, so the config has every field the
  code reads. A file that is not a JSON object (damaged, edited by hand) is a
  UserError naming it.
  """
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    return None
  try:
    saved = json.loads(path.read_text())
  except (UnicodeDecodeError, ValueError) as error:
    raise UserError(
        f"{path} is not valid JSON ({error}); it is the config the run saved. "
        "Repair it (or restore it from a copy), or pass the run's config "
        "with --config=<file> and the same --config.<field> overrides."
    ) from error
  if not isinstance(saved, dict):
    raise UserError(
        f"{path} holds a JSON {type(saved).__name__}, not the config object "
        "the run saved; repair it, or pass the run's config with "
        "--config=<file>.")
  saved = _tuples(saved)
  # Files written before resolution zeroed the epoch field hold both; the
  # steps are the resolved interval.
  for epochs, steps in _EPOCH_TWINS:
    if saved.get(epochs, 0) > 0 and saved.get(steps, 0) > 0:
      saved[epochs] = 0.0
  if defaults is not None:
    saved = {**_tuples(defaults.to_dict()), **saved}
  return ml_collections.ConfigDict(saved)


def differences(old: ml_collections.ConfigDict | dict,
                new: ml_collections.ConfigDict | dict,
                ignore: frozenset[str] = BOOKKEEPING_FIELDS) -> list[str]:
  """'field: old -> new' for every differing field that changes the result."""
  old_flat, new_flat = _flatten(_as_dict(old)), _flatten(_as_dict(new))
  lines = []
  for field in sorted(set(old_flat) | set(new_flat)):
    if field.split(".")[0] in ignore:
      continue
    before, after = old_flat.get(field, "<absent>"), new_flat.get(field, "<absent>")
    if before != after:
      lines.append(f"{field}: {before!r} -> {after!r}")
  return lines


def record(config: ml_collections.ConfigDict, workdir: str,
           start_step: int) -> list[str]:
  """Writes config.json; on a resumed run, returns the result-changing changes.

  A differing earlier config is kept as config_before_step<N>.json, so the
  workdir shows every config that trained it.
  """
  path = epath.Path(workdir) / CONFIG_FILE
  changes = []
  if start_step and path.exists():
    try:
      previous = load(workdir)
    except UserError as error:  # Kept aside as it is; training goes on.
      previous, changes = None, [f"the saved {CONFIG_FILE} could not be read "
                                 f"({str(error).split('; ')[0]})"]
    if previous is not None:
      changes = differences(previous, config)
    if changes:
      path.rename(path.parent / f"config_before_step{start_step}.json")
  path.write_text(to_json(config))
  return changes


def describe(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What a metrics JSON says about the run: model, overrides, data, size."""
  # pylint: disable=g-import-not-at-top
  from lambda_networks.train import state as state_lib
  overrides = {field: value for field, value in
               _as_dict(config.model_overrides).items() if value is not None}
  described = {
      "model": config.model,
      "model_overrides": _jsonable(overrides),
      "dtype": state_lib.computation_dtype(config.dtype),
      "dataset": config.dataset,
      "dataset_version": config.dataset_version,
      "split": config.eval_split,
  }
  if config.get("task", "classification") == "language_model":
    return {**described, "sequence_length": config.sequence_length}
  return {**described, "image_size": config.image_size,
          "eval_crop_fraction": config.eval_crop_fraction}


def _as_dict(config) -> dict[str, Any]:
  return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      flat.update(_flatten(_as_dict(value), f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = _tuples(value)
  return flat


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples configs use, recursively."""
  if isinstance(value, dict):
    return {key: _tuples(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return tuple(_tuples(item) for item in value)
  return value


def _jsonable(value: Any) -> Any:
  return json.loads(json.dumps(value, default=str))
