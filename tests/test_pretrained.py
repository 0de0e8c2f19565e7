"""Tests of lambda_networks.pretrained: timm's lambda ResNets, converted.

The fixtures (tests/fixtures/timm, made by `scripts/make_timm_fixtures.py`
with torch and timm) are reduced-width timm models of the three block
layouts with random weights and batch-norm statistics, and timm's logits;
our converted models must give the same logits. The full-size check runs
where torch and timm are importable (not in the project's requirements).
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy
from safetensors import safe_open

from conftest import jit_apply
from lambda_networks import pretrained
from lambda_networks.errors import UserError
from lambda_networks.models import count_parameters

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "timm"
NAMES = tuple(pretrained.TIMM_MODELS)
TOLERANCE = 1e-4
# The fixtures' 64 px images give c5 2×2 maps under 9×9 tables: that warns.
pytestmark = pytest.mark.filterwarnings("ignore:lambda layers of stage")


def _fixture(name: str) -> tuple[pathlib.Path, dict, np.ndarray, np.ndarray]:
  """Weight file, our overrides, timm's float32 and float64 logits."""
  path = FIXTURES / f"{name}.logits.safetensors"
  with safe_open(str(path), framework="numpy") as logits_file:
    overrides = json.loads(logits_file.metadata()["overrides"])
    logits = [logits_file.get_tensor(k) for k in ("logits", "logits_float64")]
  return FIXTURES / f"{name}.safetensors", overrides, *logits


def _images(directory: pathlib.Path = FIXTURES) -> np.ndarray:
  return safetensors_numpy.load_file(str(directory / "images.safetensors"))["images"]


@pytest.mark.parametrize("name", NAMES)
def test_converted_reduced_models_give_timms_logits(name):
  path, overrides, expected, exact = _fixture(name)
  model, preprocessing = pretrained.load_timm(name, path, **overrides)
  assert preprocessing == pretrained.TIMM_MODELS[name].preprocessing
  logits = jax.jit(lambda x: model(x))(_images())
  np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)
  np.testing.assert_allclose(logits, exact, rtol=0, atol=TOLERANCE)


def test_preprocessing_is_timms():
  config = pretrained.TIMM_MODELS["lambda_resnet50ts"].preprocessing
  assert (config.input_size, config.crop_pct, config.interpolation) == (
      (256, 256), 0.95, "bicubic")
  assert pretrained.TIMM_MODELS["lambda_resnet26rpt_256"].preprocessing.fixed_input_size


@pytest.mark.parametrize("file_of, loaded_as, tensor", [
    # 26t's c5 block 0 is a lambda block; 50ts's is a conv block.
    ("lambda_resnet50ts", "lambda_resnet26t", "stages.3.0.self_attn.qkv.weight"),
    # rpt has relative tables where 26t has a lambda convolution.
    ("lambda_resnet26t", "lambda_resnet26rpt_256", "stages.2.1.self_attn.pos_emb"),
    # 26t has two blocks in c2, 50ts three: the third is left over.
    ("lambda_resnet26t", "lambda_resnet50ts", "stages.0.2.conv1_1x1.conv.weight"),
])
def test_file_of_another_model_is_refused_naming_the_tensor(file_of, loaded_as,
                                                            tensor):
  path, overrides, *_ = _fixture(file_of)
  with pytest.raises(UserError, match=tensor.replace(".", r"\.")):
    pretrained.load_timm(loaded_as, path, **overrides)


def test_other_width_is_refused_naming_the_tensor_and_shapes():
  path, overrides, *_ = _fixture("lambda_resnet26t")
  overrides = dict(overrides, stem_width=16)
  with pytest.raises(UserError, match=r"'stem\.conv1\.conv\.weight' has shape"):
    pretrained.load_timm("lambda_resnet26t", path, **overrides)


def test_unknown_model_and_missing_file_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="lambda_resnet26t"):
    pretrained.load_timm("resnet50", FIXTURES / "lambda_resnet26t.safetensors")
  with pytest.raises(UserError, match="no weight file"):
    pretrained.load_timm("lambda_resnet26t", tmp_path / "model.safetensors")


@pytest.fixture(scope="module")
def full_size_fixtures(tmp_path_factory) -> pathlib.Path:
  """Full-size random timm models and logits, written by the fixture script.

  From $TIMM_FULL_FIXTURES (a directory `make_timm_fixtures --full` wrote),
  or made here by $TIMM_PYTHON (a Python with torch and timm) or by this
  Python when it has both; skipped otherwise. The script runs in its own
  process: torch and TensorFlow in one process may not import together.
  """
  if os.environ.get("TIMM_FULL_FIXTURES"):
    return pathlib.Path(os.environ["TIMM_FULL_FIXTURES"])
  python = os.environ.get("TIMM_PYTHON")
  if not python and all(importlib.util.find_spec(m) for m in ("torch", "timm")):
    python = sys.executable
  if not python:
    pytest.skip("needs torch and timm (pip install timm), TIMM_PYTHON or "
                "TIMM_FULL_FIXTURES")
  out = tmp_path_factory.mktemp("timm_full")
  subprocess.run([python, "-m", "scripts.make_timm_fixtures", "--full", str(out)],
                 cwd=REPO, check=True)
  return out


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_size_models_give_timms_logits(full_size_fixtures, name):
  """timm's full models, random weights and batch-norm statistics, 256 px."""
  directory = full_size_fixtures
  tensors = safetensors_numpy.load_file(str(directory / f"{name}.safetensors"))
  with safe_open(str(directory / f"{name}.logits.safetensors"), "numpy") as f:
    expected = f.get_tensor("logits")
  model = pretrained.timm_to_model(name, tensors)
  assert count_parameters(model) == pretrained.TIMM_MODELS[name].params
  logits = jax.jit(lambda x: model(x))(_images(directory))
  np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)


def test_import_timm_writes_a_workdir_holding_the_converted_model(tmp_path):
  """scripts.import_timm: checkpoint arrays are load_timm's; config is timm's."""
  from scripts import import_timm  # pylint: disable=import-outside-toplevel
  from lambda_networks.train import checkpointing, run_config  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  path, overrides, *_ = _fixture("lambda_resnet26t")
  overrides["image_size"] = 32  # The built-in task's images (eval.py checks).
  workdir = tmp_path / "imported"
  import_timm.import_timm("lambda_resnet26t", path, workdir,
                          dataset="synthetic_far_marks", overrides=overrides)
  saved = checkpointing.load_arrays(str(workdir))
  model, _ = pretrained.load_timm("lambda_resnet26t", path, **overrides)
  expected = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert (checkpointing.array_checksums(saved["params"])
          == checkpointing.array_checksums(expected))
  config = run_config.load(str(workdir))
  assert (config.model, config.num_classes, config.eval_crop_fraction) == (
      "lambda_resnet26t", 10, 0.94)
  np.testing.assert_allclose(config.normalization_mean,
                             [0.485 * 255, 0.456 * 255, 0.406 * 255])
  with pytest.raises(UserError, match="already holds checkpoints"):
    import_timm.import_timm("lambda_resnet26t", path, workdir)


def test_import_timm_refuses_an_image_size_the_dataset_does_not_feed(
    tmp_path, capsys):
  """The fixture's 64 px model on the built-in task's 32 px images: one
  line, exit status 2, before anything is written (eval.py would refuse)."""
  from scripts import import_timm  # pylint: disable=import-outside-toplevel
  path, overrides, *_ = _fixture("lambda_resnet26t")
  workdir = tmp_path / "imported"
  status = import_timm.main([
      "lambda_resnet26t", f"--weights={path}", f"--workdir={workdir}",
      "--dataset=synthetic_far_marks", f"--model_overrides={json.dumps(overrides)}"])
  error = capsys.readouterr().err.strip()
  assert status == 2 and "\n" not in error, error
  assert "config.model_overrides.image_size=64 does not match the 32×32" in error
  assert not workdir.exists()


def test_dropout_and_stochastic_depth_load_with_streams_of_their_own():
  """Random streams are not in timm's file: eval mode still gives timm's
  logits; in train mode each stream draws its own masks, new at each call."""
  path, overrides, logits, _ = _fixture("lambda_resnet26t")
  model, _ = pretrained.load_timm("lambda_resnet26t", path, dropout_rate=0.5,
                                  stochastic_depth_rate=0.5, **overrides)
  np.testing.assert_allclose(jit_apply(model, _images()), logits, rtol=0,
                             atol=TOLERANCE)
  model.train()
  branch = np.ones((64, 1, 1, 2), np.float32)
  first, second = (block.drop_path for block in model.stages[3])
  masks = [np.asarray(layer(branch)) for layer in (first, second, first)]
  assert not np.array_equal(masks[0], masks[1])  # Streams of their own.
  assert not np.array_equal(masks[0], masks[2])  # A new mask at each call.
  features = np.ones((64, 8), np.float32)
  assert not np.array_equal(model.dropout(features), model.dropout(features))
