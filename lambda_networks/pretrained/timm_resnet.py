"""timm's lambda ResNets (ByobNet) → our `ResNet`, tensor by tensor.

The mapping is explicit, beside the model it fills: for every array of our
model, the timm tensor it comes from and how it changes layout:
  convs      OIHW → HWIO;
  linears    [out, in] → [in, out] (the classifier);
  lambda     timm's fused 1×1 `qkv` conv splits [q | k | v] along its outputs
             into our query/key/value projections (heads stay in order:
             channel h·K + k), `norm_q` / `norm_v` are our query/value batch
             norms, `conv_lambda` (Conv3d [K, 1, r, r, 1] plus bias [K]) is our
             r×r×K×1 position table and position bias, `pos_emb` (rpt,
             [2H−1, 2W−1, K]) our global table; both index offsets m − n as
             ours do;
  batch norm weight, bias, running_mean, running_var → scale, bias, mean, var.
A file that does not fit (another model, another width) is refused with the
first tensor that is missing, misshapen or left over. The model's random
streams (dropout, stochastic depth: `dropout_rate`, `stochastic_depth_rate`)
are not weights and not in timm's file: each gets a key of its own from
seed 0.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lambda_networks import layers
from lambda_networks.errors import UserError
from lambda_networks.models import ResNet, get_config, get_model
from lambda_networks.pretrained import timm_files
from lambda_networks.pretrained.timm_models import TIMM_MODELS, Preprocessing

# Our path (tuple of attribute names and indices) → (timm name, conversion).
Source = tuple[str, Callable[[np.ndarray], np.ndarray]]
# timm counts batch-norm updates; nothing of ours needs the count.
IGNORED_SUFFIXES = (".num_batches_tracked",)


class Pretrained(NamedTuple):
  """A converted model (eval mode) and how to preprocess its input."""

  model: ResNet
  preprocessing: Preprocessing


def load_timm(name: str, path: str | os.PathLike, **overrides: Any) -> Pretrained:
  """Our `name` model holding the weights of timm's checkpoint at `path`.

  Args:
    name: one of `TIMM_MODELS` (timm's and our registry name).
    path: timm's `model.safetensors` (or a `.pth` when torch is installed).
    **overrides: config fields for the registry model (e.g. dtype, or
      dropout_rate and stochastic_depth_rate for fine-tuning); the file's
      shapes must still fit.

  Returns:
    (model in eval mode, timm's preprocessing). The class count is the
    file's (its classifier's rows).
  """
  if name not in TIMM_MODELS:
    raise UserError(f"no timm weights are known for {name!r}; use one of "
                    f"{', '.join(TIMM_MODELS)}.")
  tensors = timm_files.read_tensors(path)
  model = timm_to_model(name, tensors, source=str(path), **overrides)
  return Pretrained(model, TIMM_MODELS[name].preprocessing)


def timm_to_model(name: str, tensors: dict[str, np.ndarray], *,
                  source: str = "the file", **overrides: Any) -> ResNet:
  """Builds `name` (registry) abstractly and fills it from timm's tensors."""
  head = tensors.get("head.fc.weight")
  if head is None or head.ndim != 2:
    raise UserError(f"{source} has no classifier 'head.fc.weight' [classes, "
                    f"features]: not a timm {name} checkpoint.")
  config = get_config(name, **overrides)
  abstract = nnx.eval_shape(lambda: get_model(
      name, num_classes=int(head.shape[0]), rngs=nnx.Rngs(0), **overrides))
  sources = tensor_sources(abstract)
  graphdef, state = nnx.split(abstract)
  variables = dict(nnx.to_flat_state(state))
  streams = {path: variables.pop(path) for path in list(variables)
             if isinstance(variables[path], nnx.RngState)}
  missing = set(variables) - set(sources)
  if missing:
    raise AssertionError(f"no timm source for our {_dotted(min(missing))}")
  used, values = set(), []
  for path, (key, convert) in sources.items():  # In timm's module order.
    variable = variables[path]
    if key not in tensors:
      raise UserError(
          f"{source} has no tensor {key!r} (for our {_dotted(path)}): not a "
          f"timm {name} checkpoint of this config ({_describe(config)}).")
    value = convert(tensors[key])
    if value.shape != variable.shape:
      raise UserError(
          f"{source}: tensor {key!r} has shape {tensors[key].shape}, which "
          f"gives {value.shape} where our {_dotted(path)} needs "
          f"{variable.shape}: not a timm {name} checkpoint of this config "
          f"({_describe(config)}).")
    used.add(key)
    values.append((path, variable.replace(jnp.asarray(value, variable.dtype))))
  unused = [key for key in tensors
            if key not in used and not key.endswith(IGNORED_SUFFIXES)]
  if unused:
    raise UserError(
        f"{source} has tensor {unused[0]!r} (and {len(unused) - 1} more "
        f"unused) that timm's {name} does not have: a checkpoint of another "
        "model?")
  model = nnx.merge(graphdef, nnx.from_flat_state(values + _new_streams(streams)))
  model.eval()
  return model


def _new_streams(streams: dict[tuple, nnx.Variable]) -> list[tuple]:
  """Random streams from seed 0, each its own key (folded in by its place),
  counts at 0: a model fine-tuned in train mode draws independent masks."""
  values = []
  for index, (path, variable) in enumerate(streams.items()):
    if isinstance(variable, nnx.RngKey):
      value = jax.random.fold_in(jax.random.key(0), index)
    else:
      value = jnp.zeros(variable.shape, variable.dtype)
    values.append((path, variable.replace(value)))
  return values


def tensor_sources(model: ResNet) -> dict[tuple, Source]:
  """Our array paths → (timm tensor name, conversion), for a ResNet."""
  sources = {}
  stem = model.stem
  if getattr(stem, "pool_conv", True) is not None:
    raise UserError("timm's lambda ResNets have a conv stem with a max pool; "
                    "this model's stem differs (stem='small' or "
                    "replace_stem_max_pool=True).")
  for i in range(len(stem.convs)):
    sources |= _conv(("stem", "convs", i), f"stem.conv{i + 1}.conv")
    sources |= _norm(("stem", "norms", i), f"stem.conv{i + 1}.bn")
  for s, stage in enumerate(model.stages):
    for b, block in enumerate(stage):
      ours, theirs = ("stages", s, b), f"stages.{s}.{b}"
      sources |= _conv(ours + ("conv1",), f"{theirs}.conv1_1x1.conv")
      sources |= _norm(ours + ("bn1",), f"{theirs}.conv1_1x1.bn")
      if block.mixer_name == "conv":
        sources |= _conv(ours + ("mixer",), f"{theirs}.conv2_kxk.conv")
        sources |= _norm(ours + ("bn2",), f"{theirs}.conv2_kxk.bn")
      elif block.mixer_name == "lambda":
        sources |= _lambda(ours + ("mixer",), f"{theirs}.self_attn", block.mixer)
        sources |= _norm(ours + ("bn2",), f"{theirs}.post_attn")
      else:
        raise UserError(f"timm's lambda ResNets have no {block.mixer_name!r} "
                        "blocks.")
      sources |= _conv(ours + ("conv3",), f"{theirs}.conv3_1x1.conv")
      sources |= _norm(ours + ("bn3",), f"{theirs}.conv3_1x1.bn")
      if block.shortcut_conv is not None:
        sources |= _conv(ours + ("shortcut_conv",), f"{theirs}.shortcut.conv")
        sources |= _norm(ours + ("shortcut_bn",), f"{theirs}.shortcut.bn")
  sources[("head", "kernel")] = ("head.fc.weight", lambda w: w.T)
  sources[("head", "bias")] = ("head.fc.bias", _same)
  return sources


def _same(value: np.ndarray) -> np.ndarray:
  return value


def _conv(ours: tuple, theirs: str) -> dict[tuple, Source]:
  """OIHW → HWIO."""
  return {ours + ("kernel",): (f"{theirs}.weight",
                               lambda w: w.transpose(2, 3, 1, 0))}


def _norm(ours: tuple, theirs: str) -> dict[tuple, Source]:
  names = (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
           ("var", "running_var"))
  return {ours + (our,): (f"{theirs}.{their}", _same) for our, their in names}


def _lambda(ours: tuple, theirs: str, layer: layers.LambdaLayer
            ) -> dict[tuple, Source]:
  """timm's LambdaLayer: fused qkv, norm_q / norm_v, conv_lambda or pos_emb."""
  if layer.intra_depth != 1:
    raise UserError("timm's lambda layer has intra_depth 1; this model has "
                    f"{layer.intra_depth}.")
  query = layer.heads * layer.query_depth
  split = (0, query, query + layer.query_depth,
           query + layer.query_depth + layer.value_depth)

  def projection(part: int) -> Callable[[np.ndarray], np.ndarray]:
    # [out, in, 1, 1] → the part's rows → [in, out].
    return lambda w: w[split[part]:split[part + 1], :, 0, 0].T

  sources = {
      ours + (f"{kind}_proj", "kernel"): (f"{theirs}.qkv.weight", projection(i))
      for i, kind in enumerate(("query", "key", "value"))}
  sources |= _norm(ours + ("query_norm",), f"{theirs}.norm_q")
  sources |= _norm(ours + ("value_norm",), f"{theirs}.norm_v")
  if layer.global_size is not None:
    # [2H − 1, 2W − 1, K] → [.., K, U = 1].
    sources[ours + ("embeddings",)] = (f"{theirs}.pos_emb", lambda e: e[..., None])
  elif layer.embeddings is not None:
    # Conv3d [K, 1, r, r, 1] → [r, r, K, 1].
    sources[ours + ("embeddings",)] = (
        f"{theirs}.conv_lambda.weight", lambda w: w[:, 0].transpose(1, 2, 0, 3))
  if layer.position_bias is not None:
    sources[ours + ("position_bias",)] = (f"{theirs}.conv_lambda.bias", _same)
  return sources


def _dotted(path: tuple) -> str:
  return ".".join(str(part) for part in path)


def _describe(config) -> str:
  return (f"stage_depths={config.stage_depths}, stage_widths="
          f"{config.stage_widths}, stem_width={config.stem_width}")

