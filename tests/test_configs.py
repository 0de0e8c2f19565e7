"""Every experiment config loads, passes the checks and lists only changes."""

import ast
import importlib
import pathlib

import pytest

from configs import default
from lambda_networks.errors import UserError
from lambda_networks.train import config_checks
from lambda_networks.train import resolved_config

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
CONFIG_NAMES = sorted(path.stem for path in CONFIG_DIR.glob("*.py")
                      if path.stem not in ("default", "__init__"))
# Config arguments to try besides the default one (None).
EXTRA_ARGS = {
    "lambda_resnet": ("152,256", "26,128"),
    "resnet50_90ep": ("resnet50_lambda",),
    "small_images": ("mnist",),
    "finetune": ("cifar10,lambda_resnet26rpt_256", "mnist,lambda_resnet50ts"),
}


def _configs(name: str):
  module = importlib.import_module(f"configs.{name}")
  return [module.get_config() if arg is None else module.get_config(arg)
          for arg in (None, *EXTRA_ARGS.get(name, ()))]


def _fields_assigned(name: str) -> set[str]:
  """Top-level fields the file assigns as `config.FIELD = ...`."""
  tree = ast.parse((CONFIG_DIR / f"{name}.py").read_text())
  return {target.attr for node in ast.walk(tree) if isinstance(node, ast.Assign)
          for target in node.targets
          if isinstance(target, ast.Attribute)
          and isinstance(target.value, ast.Name) and target.value.id == "config"}


def test_there_are_experiment_configs():
  assert {"quickstart", "lambda_resnet", "resnet50_90ep"} <= set(CONFIG_NAMES)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_loads_and_passes_the_checks(name):
  for config in _configs(name):
    config_checks.check(config)
    assert set(config.keys()) == set(default.get_config().keys()), (
        "experiment configs change default.py's fields, they add none")


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_sets_only_fields_that_differ_from_the_default(name):
  base = default.get_config()
  assigned = _fields_assigned(name)
  assert assigned, f"configs/{name}.py assigns no field"
  configs = _configs(name)
  redundant = sorted(
      field for field in assigned - {"model_overrides"}
      if all(config[field] == base[field] for config in configs))
  assert not redundant, (
      f"configs/{name}.py sets {redundant} to default.py's value; drop them")


def test_finetune_uses_the_pretrained_models_preprocessing():
  """Its crop fraction, size and mean/std are timm's (the latter default.py's)."""
  from configs import finetune  # pylint: disable=import-outside-toplevel
  from lambda_networks.pretrained import TIMM_MODELS  # pylint: disable=import-outside-toplevel
  for name, timm in TIMM_MODELS.items():
    config = finetune.get_config(f"cifar10,{name}")
    preprocessing = timm.preprocessing
    assert (config.model, config.image_size, config.eval_crop_fraction) == (
        name, preprocessing.input_size[0], preprocessing.crop_pct)
    for ours, theirs in ((config.normalization_mean, preprocessing.mean),
                         (config.normalization_stddev, preprocessing.std)):
      assert ours == pytest.approx([255 * value for value in theirs])
  with pytest.raises(ValueError, match="must be one of"):
    finetune.get_config("cifar10,resnet50")


def test_epoch_intervals_resolve_to_steps():
  config = default.get_config()
  config.eval_every_epochs = 10.0
  config.keep_checkpoint_every_epochs = 100.0
  config.checkpoint_every_steps = 1000
  resolved_config.resolve_epoch_intervals(config, steps_per_epoch=312)
  assert config.eval_every_steps == 3120
  # 31,200 steps, rounded to a multiple of the checkpoint interval.
  assert config.keep_checkpoint_period == 31_000


def test_step_intervals_are_kept_when_no_epochs_are_given():
  config = default.get_config()
  config.eval_every_steps = 7
  config.keep_checkpoint_period = 30
  resolved_config.resolve_epoch_intervals(config, steps_per_epoch=312)
  assert (config.eval_every_steps, config.keep_checkpoint_period) == (7, 30)


def test_an_interval_in_both_epochs_and_steps_is_refused():
  config = default.get_config()
  config.eval_every_epochs = 1.0
  config.eval_every_steps = 100
  with pytest.raises(UserError, match="eval_every_epochs and config.eval_every_steps"):
    config_checks.check(config)
