"""The one path from the user's config to the config a run reads.

`prepare(config, given)` checks the user's values once, resolves every value
the config leaves to the data, the devices or the dataset's size, checks the
result against the data and the mesh, and returns it frozen (a
`FrozenConfigDict`: nothing later can change it) with the mesh and the data
source it was resolved against, so the source is opened once. train.py,
eval.py and the benchmark scripts go through it; `experiment.build` builds
from what it returns, and config.json records exactly its config. Nothing is
written before it returns; a refusal is a UserError.

Which field is resolved where:
- eval_split "auto", image_size 0, empty normalization_mean/stddev: from the
  dataset (`run_config.resolve`).
- init_from: made an absolute path.
- model_overrides.lambda_method "measure": a method per stage, timed on the
  devices (`lambda_measure`), or read from a resumed run's config.json.
- mesh_shape (-1,): every device, in `distributed.create_mesh` (the config
  keeps -1).
- eval_every_epochs, keep_checkpoint_every_epochs: to eval_every_steps and
  keep_checkpoint_period (`resolve_epoch_intervals`); the epoch field is
  then 0, so a resumed run and eval.py read steps only.
- num_train_steps 0 (train for num_epochs): the step count is
  `Prepared.total_steps`; the config keeps both fields as given.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable

import ml_collections
from jax.sharding import Mesh

from lambda_networks import data
from lambda_networks import errors
from lambda_networks.train import config_checks


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A run's resolved, checked, frozen config and what it was resolved with."""
  config: ml_collections.FrozenConfigDict
  mesh: Mesh
  source: data.Source  # Opened once, for the resolved config.
  steps_per_epoch: int
  total_steps: int


@errors.raise_as_user_errors(ValueError, FileNotFoundError)
def prepare(config: ml_collections.ConfigDict,
            given: Iterable[str] = (),
            workdir: str | None = None) -> Prepared:
  """The user's config, checked, resolved, checked against data and mesh.

  Args:
    config: the user's config (not modified: a resolved copy is returned).
    given: names of the fields set on the command line, so that an override
      the run would ignore is refused rather than dropped.
    workdir: the run's directory, where a resumed run finds the lambda
      methods it measured before (`lambda_measure`).

  Returns:
    The frozen config with the mesh, the opened source and the step counts.
    Its ValueErrors and FileNotFoundErrors come from what the config names (a
    dataset that is not prepared, a batch the devices cannot split) and are
    raised as UserErrors.
  """
  # pylint: disable=g-import-not-at-top
  # Imported here: train.py checks the config before JAX's devices are used.
  import jax
  from lambda_networks.train import distributed
  from lambda_networks.train import lambda_measure
  from lambda_networks.train import run_config
  # pylint: enable=g-import-not-at-top
  config = config.copy_and_resolve_references()  # The user's stays as given.
  config_checks.check(config, given)
  run_config.resolve(config)  # "auto" values from the dataset.
  if config.init_from:
    config.init_from = os.path.abspath(os.path.expanduser(config.init_from))

  mesh = distributed.create_mesh(tuple(config.mesh_shape))
  distributed.check_batch_size(config.global_batch_size, mesh,
                               "global_batch_size")
  config_checks.check_against_mesh(config, mesh.devices.size)
  if config.eval_batch_size:
    distributed.check_batch_size(config.eval_batch_size, mesh,
                                 "eval_batch_size")

  shard = data.HostShard(jax.process_index(), jax.process_count())
  source = data.create_source(config, shard)
  config_checks.check_against_data(config, source.info, shard.process_count)
  steps_per_epoch = max(
      1, source.info.num_train_examples // config.global_batch_size)
  resolve_epoch_intervals(config, steps_per_epoch)

  # Model values that need the devices: lambda_method="measure" becomes a
  # method per stage, timed here or, on a resumed run, read from the
  # workdir's config.json.
  lambda_measure.resolve(config, workdir)

  return Prepared(config=ml_collections.FrozenConfigDict(config), mesh=mesh,
                  source=source, steps_per_epoch=steps_per_epoch,
                  total_steps=total_steps(config, steps_per_epoch))


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """num_train_steps, or num_epochs of steps_per_epoch when it is 0."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  return max(1, int(round(config.num_epochs * steps_per_epoch)))


def resolve_epoch_intervals(config: ml_collections.ConfigDict,
                            steps_per_epoch: int) -> None:
  """Sets the step intervals that the config gives in epochs, in place.

  eval_every_epochs > 0 sets eval_every_steps; keep_checkpoint_every_epochs
  > 0 sets keep_checkpoint_period, rounded to a multiple of
  checkpoint_every_steps (only saved steps can be kept). Each epoch field is
  then 0: the resolved config gives every interval once, in steps.
  """
  if config.eval_every_epochs > 0:
    config.eval_every_steps = max(1, round(config.eval_every_epochs
                                           * steps_per_epoch))
    config.eval_every_epochs = 0.0
  if config.keep_checkpoint_every_epochs > 0:
    every = max(1, config.checkpoint_every_steps)
    saves = round(config.keep_checkpoint_every_epochs * steps_per_epoch / every)
    config.keep_checkpoint_period = every * max(1, saves)
    config.keep_checkpoint_every_epochs = 0.0
