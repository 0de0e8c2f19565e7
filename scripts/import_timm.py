"""Imports timm's weights into a workdir that eval.py scores and train.py resumes.

  python -m scripts.import_timm lambda_resnet26t \
      --weights model.safetensors --workdir runs/lambda_resnet26t_timm
  python eval.py --workdir=runs/lambda_resnet26t_timm

The workdir gets a step-0 checkpoint holding the converted parameters and
batch statistics (`lambda_networks.pretrained.load_timm`) and a config.json
with the model and timm's evaluation preprocessing (input size, centre-crop
fraction, bicubic resize, ImageNet mean/std) on `--dataset`
(imagenet2012 by default), in float32. `--model_overrides` (JSON) builds a
non-default config of the model, e.g. the reduced test models of
tests/fixtures/timm. Where `--dataset` can be opened here (the built-in
task, or a prepared TFDS dataset), the config is first checked against it
as eval.py and train.py check it (a model image size the data does not
feed is refused in one line, exit status 2, nothing written).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
from flax import nnx

from configs import default
from lambda_networks import data
from lambda_networks import errors
from lambda_networks import pretrained
from lambda_networks.data import DatasetInfo
from lambda_networks.data import synthetic
from lambda_networks.errors import UserError
from lambda_networks.train import checkpointing
from lambda_networks.train import config_checks
from lambda_networks.train import optimizer
from lambda_networks.train import run_config
from lambda_networks.train import state as state_lib


def import_config(name: str, num_classes: int, dataset: str,
                  overrides: dict) -> "default.ml_collections.ConfigDict":
  """The default config with the model and timm's eval preprocessing."""
  preprocessing = pretrained.TIMM_MODELS[name].preprocessing
  config = default.get_config()
  config.model = name
  config.num_classes = num_classes
  config.dataset = dataset
  config.eval_split = "auto"
  # The in-process task makes its own 32 px images (for tests).
  config.image_size = (synthetic.IMAGE_SIZE if dataset == data.SYNTHETIC_DATASET
                       else preprocessing.input_size[0])
  config.eval_crop_fraction = preprocessing.crop_pct
  config.normalization_mean = tuple(255 * m for m in preprocessing.mean)
  config.normalization_stddev = tuple(255 * s for s in preprocessing.std)
  config.dtype = "float32"  # timm's numbers are float32 ones.
  config.ema_decay = 0.0
  config.warmup_epochs = 0.0  # Step 0 of no schedule: nothing to warm up.
  config.async_checkpointing = False
  for field, value in overrides.items():
    config.model_overrides[field] = tuple(value) if isinstance(value, list) else value
  return config


@errors.raise_as_user_errors(ValueError)
def check_against_data(config: "default.ml_collections.ConfigDict") -> None:
  """eval.py's check of the config against its dataset, where it can be
  opened here; a TFDS dataset not prepared here is left to eval.py. What
  the dataset refuses (a missing split or key) is a UserError, as there."""
  resolved = config.copy_and_resolve_references()
  try:
    run_config.resolve(resolved)  # On a copy: config.json keeps "auto".
    source = data.create_source(resolved, data.HostShard(0, 1))
  except FileNotFoundError:
    print(f"note: {config.dataset!r} is not prepared here; eval.py checks "
          "the config against it where it is.", file=sys.stderr)
    return
  config_checks.check_against_data(resolved, source.info, process_count=1)


def import_timm(name: str, weights: pathlib.Path, workdir: pathlib.Path, *,
                dataset: str = "imagenet2012", overrides: dict | None = None
                ) -> None:
  """Writes workdir/checkpoints/0 and workdir/config.json."""
  if (workdir / "checkpoints").exists():
    raise UserError(f"{workdir} already holds checkpoints; choose a new "
                    "--workdir.")
  tensors = pretrained.read_tensors(weights)
  if "head.fc.weight" not in tensors:
    raise UserError(f"{weights} has no 'head.fc.weight': not a timm model.")
  num_classes = int(tensors["head.fc.weight"].shape[0])
  config = import_config(name, num_classes, dataset, overrides or {})
  check_against_data(config)
  size = config.model_overrides.get("image_size", config.image_size)
  info = DatasetInfo(name=dataset, num_classes=num_classes,
                     image_shape=(size, size, 3), num_train_examples=1,
                     num_eval_examples=1)
  # The optimiser's state has the structure a run of this config restores.
  tx = optimizer.create_optimizer(
      config, optimizer.learning_rate_schedule(config, 1, 1))
  parts, state = state_lib.create_train_state(config, info, tx)
  model = pretrained.timm_to_model(name, tensors, source=str(weights),
                                   **state_lib.model_overrides(config, info))
  params, batch_stats = (nnx.to_pure_dict(nnx.state(model, kind))
                         for kind in (nnx.Param, nnx.BatchStat))
  for new, old in ((params, state.params), (batch_stats, state.batch_stats)):
    assert jax.tree.structure(new) == jax.tree.structure(old)
  state = state.replace(params=params, batch_stats=batch_stats)
  workdir.mkdir(parents=True, exist_ok=True)
  manager = checkpointing.create_manager(str(workdir), config)
  checkpointing.save(manager, state, checkpointing.model_record(parts, state),
                     force=True)
  manager.wait_until_finished()
  manager.close()
  run_config.record(config, str(workdir), 0)
  print(f"Wrote {workdir}: {name} from {weights} ({num_classes} classes); "
        f"score it with: python eval.py --workdir={workdir}")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("name", choices=tuple(pretrained.TIMM_MODELS))
  parser.add_argument("--weights", type=pathlib.Path, required=True,
                      help="timm's model.safetensors (or .pth with torch)")
  parser.add_argument("--workdir", type=pathlib.Path, required=True)
  parser.add_argument("--dataset", default="imagenet2012",
                      help="the TFDS dataset eval.py will score on")
  parser.add_argument("--model_overrides", type=json.loads, default={},
                      help="JSON object of model config fields")
  args = parser.parse_args(argv)
  try:
    import_timm(args.name, args.weights, args.workdir, dataset=args.dataset,
                overrides=args.model_overrides)
  except UserError as error:
    print(f"ERROR: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
