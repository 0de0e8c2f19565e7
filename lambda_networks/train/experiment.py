"""Everything a run builds from its config before the first step.

Shared by training and evaluation so both see the same mesh, data, model,
optimiser and jitted steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from lambda_networks import data
from lambda_networks import errors
from lambda_networks.train import checkpointing
from lambda_networks.train import config_checks
from lambda_networks.train import distributed
from lambda_networks.train import optimizer
from lambda_networks.train import steps
from lambda_networks.train import tasks
from lambda_networks.train.state import ModelParts, TrainState, create_train_state


@dataclasses.dataclass
class Experiment:
  config: ml_collections.ConfigDict
  mesh: Mesh
  source: data.Source
  steps_per_epoch: int
  total_steps: int
  schedule: optax.Schedule
  parts: ModelParts
  state: TrainState  # Initial state, replicated over the mesh.
  record: dict[str, Any]  # What checkpoints must match (see checkpointing).
  train_step: Callable[..., Any]
  eval_step: Callable[..., Any]
  task: Any = None  # tasks.for_config(config): loss, metrics, their summary.


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return max(1, int(round(config.num_epochs * steps_per_epoch)))


def resolve_epoch_intervals(config: ml_collections.ConfigDict,
                            steps_per_epoch: int) -> None:
  """Sets the step intervals that the config gives in epochs, in place.

  eval_every_epochs > 0 sets eval_every_steps; keep_checkpoint_every_epochs
  > 0 sets keep_checkpoint_period, rounded to a multiple of
  checkpoint_every_steps (only saved steps can be kept).
  """
  if config.eval_every_epochs > 0:
    config.eval_every_steps = max(1, round(config.eval_every_epochs
                                           * steps_per_epoch))
  if config.keep_checkpoint_every_epochs > 0:
    every = max(1, config.checkpoint_every_steps)
    saves = round(config.keep_checkpoint_every_epochs * steps_per_epoch / every)
    config.keep_checkpoint_period = every * max(1, saves)


@errors.raise_as_user_errors(ValueError, FileNotFoundError)
def build(config: ml_collections.ConfigDict) -> Experiment:
  """Checks the config and builds the mesh, data, model, state and steps.

  Its ValueErrors and FileNotFoundErrors come from what the config names (a
  dataset that is not prepared, a model that cannot take these options, a
  batch the devices cannot split) and are raised as UserErrors.
  """
  config_checks.check(config)
  mesh = distributed.create_mesh(tuple(config.mesh_shape))
  distributed.check_batch_size(config.global_batch_size, mesh, "global_batch_size")
  config_checks.check_against_mesh(config, mesh.devices.size)
  if config.eval_batch_size:
    distributed.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  shard = data.HostShard(jax.process_index(), jax.process_count())
  source = data.create_source(config, shard)
  config_checks.check_against_data(config, source.info, shard.process_count)
  steps_per_epoch = max(1, source.info.num_train_examples // config.global_batch_size)
  num_steps = total_steps(config, steps_per_epoch)
  resolve_epoch_intervals(config, steps_per_epoch)
  schedule = optimizer.learning_rate_schedule(config, steps_per_epoch, num_steps)
  tx = optimizer.create_optimizer(config, schedule)
  replicated = distributed.replicated(mesh)
  parts, state = create_train_state(config, source.info, tx, sharding=replicated)
  record = checkpointing.model_record(parts, state)

  batch = distributed.batch_sharding(mesh)
  state_sharding = jax.tree.map(lambda _: replicated, state)
  train_step = jax.jit(
      steps.make_train_step(parts, tx, schedule, config,
                            data_shards=mesh.devices.size),
      in_shardings=(state_sharding, batch), out_shardings=(state_sharding, replicated),
      donate_argnums=(0,))
  task = tasks.for_config(config)
  eval_step = jax.jit(steps.make_eval_step(parts, task), out_shardings=replicated)
  return Experiment(config=config, mesh=mesh, source=source,
                    steps_per_epoch=steps_per_epoch, total_steps=num_steps,
                    schedule=schedule, parts=parts, state=state, record=record,
                    train_step=train_step, eval_step=eval_step, task=task)
