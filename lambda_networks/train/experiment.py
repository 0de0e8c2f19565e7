"""Everything a run builds from its prepared config before the first step.

Shared by training and evaluation so both see the same mesh, data, model,
optimiser and jitted steps. The config, mesh and data source come from
`resolved_config.prepare`; `build` adds the rest.
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
from lambda_networks.train import distributed
from lambda_networks.train import optimizer
from lambda_networks.train import resolved_config
from lambda_networks.train import steps
from lambda_networks.train import tasks
from lambda_networks.train.state import ModelParts, TrainState, create_train_state


@dataclasses.dataclass
class Experiment:
  config: ml_collections.FrozenConfigDict  # The resolved config, frozen.
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


@errors.raise_as_user_errors(ValueError, FileNotFoundError)
def build(prepared: resolved_config.Prepared) -> Experiment:
  """Builds the schedule, optimiser, state and jitted steps of a prepared run.

  `prepared` (from `resolved_config.prepare`) holds the checked config, the
  mesh and the opened data source; nothing here changes the config. Its
  ValueErrors (a model that cannot take these options) are UserErrors.
  """
  config, mesh, source = prepared.config, prepared.mesh, prepared.source
  steps_per_epoch, num_steps = prepared.steps_per_epoch, prepared.total_steps
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
