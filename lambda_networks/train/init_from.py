"""Fine-tuning: a new run's first state from trained weights (`config.init_from`).

`config.init_from` names either a workdir (a run of ours, or one written by
`scripts.import_timm`; its newest checkpoint, with the weights its eval
scores: the EMA weights and statistics when it has them and
`eval_use_ema`) or a timm checkpoint
file (`.safetensors`, or `.pth` with torch; `config.model` names the timm
model, e.g. lambda_resnet26t). Its parameters and batch statistics replace
the freshly initialised ones, array by array, before step 0, and only in a
run whose own workdir has no checkpoint yet: a fine-tuning run that stopped
resumes from its own checkpoint, exactly, and never reads `init_from` again.
The optimiser state stays the fresh one (zero momenta) and the EMA, if any,
starts from the loaded weights and statistics.

What may differ from the source, and what happens:
- the classifier (`head`) on another class count: re-initialised (one line
  says so);
- position tables sized for another image size (lambda layers'
  `receptive_field='global'` tables, e.g. lambda_resnet26rpt_256's, and the
  attention baselines' relative tables): resized by bicubic interpolation
  over their offset axes. Interpolation rather than cropping, because it
  handles a larger image as well as a smaller one with one rule and keeps
  the table spanning the whole image, as a fine-tuning on the same kind of
  images at another resolution sees them (what timm and big_vision do with
  position tables); the table's centre (offset 0) stays at the centre, and
  the same size is the identity.
Anything else that differs (a missing or left-over array, another shape) is
a UserError naming the array; it is raised before the workdir is made.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from lambda_networks import layers
from lambda_networks.data import DatasetInfo
from lambda_networks.errors import UserError
from lambda_networks.models import ResNet
from lambda_networks.train import checkpointing
from lambda_networks.train import experiment as experiment_lib
from lambda_networks.train import run_config
from lambda_networks.train import state as state_lib
from lambda_networks.train.state import TrainState

# The classifier's parameters (`common.classifier_head`), by path.
HEAD_PATHS = ("head/kernel", "head/bias")
RESIZE_METHOD = "bicubic"


def apply(exp: experiment_lib.Experiment, workdir: str, report: Callable[[str], None] = print) -> None:
  """Loads config.init_from into `exp.state` unless `workdir` has a checkpoint.

  (`resolved_config.prepare` made `config.init_from` an absolute path, which
  config.json records.)
  """
  config = exp.config
  if not config.init_from:
    return
  if has_checkpoint(workdir):
    return  # Resumes from its own checkpoint (the trainer restores it).
  exp.state = load_into(config, exp.source.info, exp.state, report)


def has_checkpoint(workdir: str) -> bool:
  """Whether `workdir` has a (complete) checkpoint step directory."""
  directory = pathlib.Path(str(checkpointing.checkpoint_dir(workdir)))
  return directory.is_dir() and any(
      path.name.isdigit() for path in directory.iterdir())


def load_into(config: ml_collections.ConfigDict, info: DatasetInfo,
              state: TrainState, report: Callable[[str], None] = print
              ) -> TrainState:
  """`state` with config.init_from's arrays in place of its initial ones."""
  source = config.init_from
  model = nnx.eval_shape(lambda: state_lib.build_model(config, info, 0))
  tables = _position_tables(model)
  if os.path.isdir(source):
    arrays, what = _workdir_arrays(source)
  elif os.path.isfile(source):
    arrays, what = _timm_arrays(config, model, source)
  else:
    raise UserError(f"config.init_from={source!r} is neither a workdir nor a "
                    "weight file; give a training run's --workdir, one "
                    "written by scripts.import_timm, or timm's "
                    "model.safetensors.")
  notes: list[str] = []
  params = _fill(state.params, arrays["params"], "parameter", source, tables,
                 notes)
  batch_stats = _fill(state.batch_stats, arrays["batch_stats"],
                      "batch statistic", source, tables, notes)
  report(f"Initialised {config.model} from {source} ({what}): "
         f"{len(_flat(params))} parameter and {len(_flat(batch_stats))} "
         "batch-statistic arrays.")
  for note in notes:
    report(note)
  if not state.ema_params:
    return state.replace(params=params, batch_stats=batch_stats)
  return state.replace(params=params, batch_stats=batch_stats,
                       ema_params=jax.tree.map(jnp.copy, params),
                       ema_batch_stats=jax.tree.map(jnp.copy, batch_stats))


def _flat(tree: Any) -> dict[str, Any]:
  """'path/to/array' -> leaf, the names of `state.param_shapes`."""
  return {"/".join(str(getattr(key, "key", key)) for key in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _workdir_arrays(workdir: str) -> tuple[dict[str, dict], str]:
  """The newest checkpoint's weights (EMA when its eval uses them)."""
  try:
    saved = checkpointing.load_arrays(workdir)
  except FileNotFoundError as error:
    raise UserError(f"config.init_from={workdir!r} has no checkpoint; train "
                    "it first, or give another workdir.") from error
  source_config = run_config.load(workdir)
  use_ema = source_config is None or source_config.get("eval_use_ema", True)
  weights = "raw"
  params, batch_stats = saved["params"], saved["batch_stats"]
  if use_ema and saved.get("ema_params"):
    # The EMA statistics go with the EMA weights (older checkpoints: none).
    params, weights = saved["ema_params"], "EMA"
    batch_stats = saved.get("ema_batch_stats") or batch_stats
  model = source_config.get("model", "?") if source_config else "?"
  return ({"params": _flat(params), "batch_stats": _flat(batch_stats)},
          f"{model}, step {int(saved['step'])}, {weights} weights")


def _timm_arrays(config: ml_collections.ConfigDict, model: nnx.Module,
                 path: str) -> tuple[dict[str, dict], str]:
  """timm's tensors in our layout, by our array names (shapes unchecked).

  `model` is the run's model, abstract (nnx.eval_shape).
  """
  # pylint: disable-next=import-outside-toplevel
  from lambda_networks.pretrained import timm_files, timm_resnet
  if not isinstance(model, ResNet):
    raise UserError(f"config.init_from={path!r} is a timm file, which fills "
                    f"only timm's lambda ResNets; config.model={config.model!r}"
                    " is not a ResNet.")
  tensors = timm_files.read_tensors(path)
  converted, used = {}, set()
  for our_path, (key, convert) in timm_resnet.tensor_sources(model).items():
    name = "/".join(str(part) for part in our_path)
    if key not in tensors:
      raise UserError(f"config.init_from={path!r} has no tensor {key!r} (for "
                      f"our {name}): not a timm {config.model} checkpoint.")
    converted[name] = np.asarray(convert(tensors[key]))
    used.add(key)
  unused = [key for key in tensors if key not in used
            and not key.endswith(timm_resnet.IGNORED_SUFFIXES)]
  if unused:
    raise UserError(f"config.init_from={path!r} has tensor {unused[0]!r} that "
                    f"{config.model} does not have (and {len(unused) - 1} "
                    "more): a checkpoint of another model?")
  kinds = {"params": nnx.Param, "batch_stats": nnx.BatchStat}
  arrays = {kind: {name: converted[name] for name in
                   _flat(nnx.to_pure_dict(nnx.state(model, variable)))}
            for kind, variable in kinds.items()}
  return arrays, f"timm {config.model}"


def _position_tables(model: nnx.Module) -> dict[str, int]:
  """Array name -> number of leading offset axes, for image-sized tables."""
  tables = {}
  for path, module in nnx.iter_graph(model):
    prefix = "/".join(str(part) for part in path)
    if isinstance(module, layers.LambdaLayer) and module.global_size:
      tables[f"{prefix}/embeddings"] = len(module.global_size)
    elif getattr(module, "max_size", None) is not None:
      for name in ("row_embeddings", "col_embeddings", "height_embeddings",
                   "width_embeddings"):
        if getattr(module, name, None) is not None:
          tables[f"{prefix}/{name}"] = 1
  return tables


def resize_table(table: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """A relative position table interpolated to `shape` (same trailing axes).

  Bicubic over the offset axes (each 2·size − 1 wide, odd); half-pixel
  centres map the centre (offset 0) onto the centre. The same shape returns
  the table itself.
  """
  if tuple(table.shape) == tuple(shape):
    return table
  resized = jax.image.resize(np.asarray(table, np.float32), shape,
                             method=RESIZE_METHOD)
  return np.asarray(resized).astype(table.dtype)


def _fill(target: Any, source: dict[str, np.ndarray], kind: str, where: str,
          tables: dict[str, int], notes: list[str]) -> Any:
  """`target`'s tree with every leaf taken (or resized) from `source`."""
  wanted = _flat(target)
  left_over = sorted(set(source) - set(wanted))
  if left_over:
    raise UserError(
        f"config.init_from={where!r} has the {kind} {left_over[0]} (and "
        f"{len(left_over) - 1} more) that this model has not: a checkpoint of "
        "another model or config? Give init_from a run of this model.")
  resized = []

  def take(path, leaf):
    name = "/".join(str(getattr(key, "key", key)) for key in path)
    if name not in source:
      raise UserError(f"config.init_from={where!r} has no {kind} {name} "
                      f"{list(leaf.shape)}: a checkpoint of another model or "
                      "config? Give init_from a run of this model.")
    value, shape = source[name], tuple(leaf.shape)
    if value.shape != shape:
      if name in HEAD_PATHS and value.shape[:-1] == shape[:-1]:
        if name == HEAD_PATHS[0]:
          notes.append(
              f"The classifier is re-initialised: {where} has "
              f"{value.shape[-1]} classes, this run {shape[-1]}.")
        return leaf
      offsets = tables.get(name)
      if offsets is None or value.shape[offsets:] != shape[offsets:]:
        raise UserError(
            f"config.init_from={where!r}: {kind} {name} has shape "
            f"{list(value.shape)}, this model's is {list(shape)}; only the "
            "classifier (class count) and image-sized position tables may "
            "differ. Match the model's config (model_overrides) to the "
            "source's.")
      resized.append(f"{name} {list(value.shape)} -> {list(shape)}")
      value = resize_table(value, shape)
    value = np.asarray(value, leaf.dtype)
    return jax.make_array_from_callback(shape, leaf.sharding,
                                        lambda index: value[index])

  filled = jax.tree_util.tree_map_with_path(take, target)
  if resized:
    notes.append(f"Position tables resized ({RESIZE_METHOD}) for this image "
                 f"size: {'; '.join(resized)}.")
  return filled
