"""Tests of --config.model_overrides.<field>: typed by the model, any config."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import validate_command_line
from configs import quickstart
from configs import resnet50_90ep
from lambda_networks.data import DatasetInfo
from lambda_networks.train import model_flags
from lambda_networks.train import state

REPO = pathlib.Path(__file__).resolve().parents[1]
# Parses flags exactly as train.py does and prints the model's overrides.
_PARSE = """
import json, sys
import train
from lambda_networks.train import cli, state
from lambda_networks.data import DatasetInfo
cli.parse_flags(sys.argv)
info = DatasetInfo("d", 10, (32, 32, 3), 100, 10)
print(json.dumps(state.model_overrides(train.FLAGS.config, info), default=str))
"""


def _parse(*args):
  """The model's overrides after train.py's own flags parse `args`."""
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
             TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run(
      [sys.executable, "-c", _PARSE, "--workdir=/tmp/unused", *args],
      cwd=REPO, env=env, text=True, capture_output=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_command_line_sets_any_model_field_with_its_type(capsys):
  """Through train.py's flags (a subprocess); the misspelt field's refusal
  (exit status 2, named, the valid fields listed) in process."""
  overrides = _parse("--config=configs/resnet50_90ep.py:resnet50_lambda",
                     "--config.model_overrides.width_multiplier=0.25",
                     "--config.model_overrides.receptive_field=global",
                     "--config.model_overrides.stage_depths=(1,1,1,1)")
  assert overrides["width_multiplier"] == 0.25  # Not listed by the file.
  assert overrides["receptive_field"] == "global"  # The file lists an int.
  assert overrides["stage_depths"] == [1, 1, 1, 1]
  with pytest.raises(SystemExit) as exit_info:
    validate_command_line(["--config=configs/quickstart.py", "--workdir=unused",
                           "--config.model_overrides.widht_multiplier=0.5"])
  assert exit_info.value.code == 2
  message = capsys.readouterr().err
  assert "has no field 'widht_multiplier'" in message
  assert "width_multiplier" in message.split("Valid fields:")[1]


@pytest.mark.parametrize("text,expected", [
    ("7", 7),
    ("none", None),  # Content lambdas only.
])
def test_overrides_reach_the_model_as_train_py_builds_it(text, expected):
  """What train.py passes to get_model (state.model_overrides), in process."""
  config = quickstart.get_config()
  assert config.model_overrides.receptive_field == "global"  # The file's.
  model_flags.apply(config, [("receptive_field", text)])
  info = DatasetInfo("d", 10, (32, 32, 3), 100, 10)
  overrides = state.model_overrides(config, info)
  assert overrides["receptive_field"] == expected
  assert overrides["image_size"] == 32 and overrides["in_channels"] == 3


@pytest.mark.parametrize("field,text,expected", [
    ("receptive_field", "7", 7),
    ("receptive_field", "global", "global"),
    ("receptive_field", "None", model_flags.NONE),
    ("width_multiplier", "1", 1.0),
    ("stage_mixers", "CCLL", "CCLL"),
    ("mixer_blocks", "(0, None, 1, None)", (0, None, 1, None)),
    ("zero_init_last_bn", "false", False),
    ("dtype", "bfloat16", "bfloat16"),
])
def test_values_take_the_type_of_the_model_field(field, text, expected):
  config = resnet50_90ep.get_config("resnet50_lambda")
  model_flags.apply(config, [(field, text)])
  value = config.model_overrides[field]
  assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("pair,message", [
    (("receptive_field", "8"), "receptive_field=8 must be odd and positive"),
    (("width_multiplier", "wide"), "is not a float"),
    (("stem_width", "none"), "cannot be None"),
    (("depth_multiplier", "2"), "has no field 'depth_multiplier'"),
])
def test_bad_model_overrides_are_refused_clearly(pair, message):
  with pytest.raises(model_flags.ModelFlagError, match=message):
    model_flags.apply(quickstart.get_config(), [pair])


def test_extract_takes_both_flag_forms():
  rest, pairs = model_flags.extract([
      "train.py", "--config=x.py", "--config.model_overrides.heads", "2",
      "--config.model_overrides.query_depth=8", "--workdir=/tmp"])
  assert rest == ["train.py", "--config=x.py", "--workdir=/tmp"]
  assert pairs == [("heads", "2"), ("query_depth", "8")]
