"""Tests of lambda_networks.train.init_from: fine-tuning's first state.

The sources are the reduced timm fixtures (tests/fixtures/timm), whose
converted models `pretrained.load_timm` gives (tested against timm's logits
in test_pretrained.py); the end-to-end run (import, fine-tune, score,
resume) is in test_train.py.
"""

import json
import pathlib
import shutil

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors import numpy as safetensors_numpy
from safetensors import safe_open

from configs import default
from lambda_networks import pretrained
from lambda_networks.data import DatasetInfo
from lambda_networks.errors import UserError
from lambda_networks.train import checkpointing
from lambda_networks.train import init_from
from lambda_networks.train import state as state_lib
from conftest import early_run, run

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "timm"
# The fixtures' 64 px images give c5 2×2 maps under 9×9 tables: that warns.
pytestmark = pytest.mark.filterwarnings("ignore:lambda layers of stage")


def _overrides(name: str) -> dict:
  with safe_open(str(FIXTURES / f"{name}.logits.safetensors"), "numpy") as f:
    return json.loads(f.metadata()["overrides"])


def _finetune(name: str, *, num_classes: int = 10, image_size: int = 64,
              source: pathlib.Path | None = None, **changes):
  """(model, report lines, state) of `name` initialised from its fixture."""
  config = default.get_config()
  config.model = name
  config.model_overrides = dict(_overrides(name), image_size=image_size,
                                **changes)
  config.num_classes = num_classes
  config.dtype = "float32"
  config.ema_decay = 0.5
  config.init_from = str(source or FIXTURES / f"{name}.safetensors")
  info = DatasetInfo(name="test", num_classes=num_classes,
                     image_shape=(image_size, image_size, 3),
                     num_train_examples=1, num_eval_examples=1)
  parts, fresh = state_lib.create_train_state(config, info, optax.sgd(0.1))
  lines = []
  state = init_from.load_into(config, info, fresh, report=lines.append)
  model = nnx.merge(parts.graphdef, state.params, state.batch_stats, parts.rest)
  model.eval()
  return model, lines, state, fresh


def _images() -> np.ndarray:
  return safetensors_numpy.load_file(str(FIXTURES / "images.safetensors"))["images"]


def _timm_model(name: str):
  return pretrained.load_timm(name, FIXTURES / f"{name}.safetensors",
                              **_overrides(name)).model


def _params(model) -> dict:
  return init_from._flat(nnx.to_pure_dict(nnx.state(model, nnx.Param)))  # pylint: disable=protected-access


def test_same_model_and_size_is_load_timms_model_exactly():
  """Resizing to the same size is the identity: rpt at its own 64 px."""
  name = "lambda_resnet26rpt_256"
  model, lines, state, _ = _finetune(name)
  expected = _params(_timm_model(name))
  got = _params(model)
  assert got.keys() == expected.keys()
  for key, value in expected.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)
  np.testing.assert_array_equal(jax.jit(lambda x: model(x))(_images()),
                                jax.jit(lambda x: _timm_model(name)(x))(_images()))
  assert len(lines) == 1 and "resized" not in lines[0]
  # The EMA starts from the loaded weights.
  for key, value in init_from._flat(state.ema_params).items():  # pylint: disable=protected-access
    np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_head_is_reinitialised_on_a_new_class_count_and_the_rest_loaded():
  name = "lambda_resnet26t"
  model, lines, state, fresh = _finetune(name, num_classes=3)
  assert any("classifier is re-initialised" in line and "10 classes, this run 3"
             in line for line in lines)
  expected = _params(_timm_model(name))
  got = _params(model)
  fresh_params = init_from._flat(fresh.params)  # pylint: disable=protected-access
  for key in init_from.HEAD_PATHS:
    np.testing.assert_array_equal(got[key], fresh_params[key])
    assert got[key].shape[-1] == 3
  for key, value in expected.items():
    if key not in init_from.HEAD_PATHS:
      np.testing.assert_array_equal(got[key], value, err_msg=key)
  timm_stats = init_from._flat(nnx.to_pure_dict(nnx.state(  # pylint: disable=protected-access
      _timm_model(name), nnx.BatchStat)))
  for key, value in init_from._flat(state.batch_stats).items():  # pylint: disable=protected-access
    np.testing.assert_array_equal(value, timm_stats[key], err_msg=key)


def test_position_tables_are_interpolated_for_a_new_image_size():
  """rpt's fixed-size tables, 64 px → 96 px: resized, centre kept, runs."""
  name = "lambda_resnet26rpt_256"
  model, lines, _, _ = _finetune(name, image_size=96)
  original = _params(_timm_model(name))
  resized = _params(model)
  tables = [key for key in original if key.endswith("mixer/embeddings")]
  assert tables
  for key in tables:
    old, new = original[key], resized[key]
    assert new.shape[2:] == old.shape[2:] and new.shape[0] > old.shape[0]
    # Upsampling keeps the value at offset 0 (the centre) exactly.
    np.testing.assert_allclose(new[new.shape[0] // 2, new.shape[1] // 2],
                               old[old.shape[0] // 2, old.shape[1] // 2],
                               rtol=1e-6, atol=1e-7)
    assert any(key in line for line in lines)
  for key in set(original) - set(tables):
    np.testing.assert_array_equal(resized[key], original[key], err_msg=key)
  images = jax.image.resize(_images(), (len(_images()), 96, 96, 3), "bilinear")
  logits = jax.jit(lambda x: model(x))(images)
  assert logits.shape == (len(images), 10) and np.isfinite(logits).all()


def test_resize_table_is_identity_at_the_same_shape_and_keeps_linear_tables():
  table = np.random.default_rng(0).normal(size=(7, 7, 4, 1)).astype(np.float32)
  assert init_from.resize_table(table, table.shape) is table
  offsets = np.arange(-3, 4, dtype=np.float32)
  ramp = np.broadcast_to(offsets[:, None, None, None], (7, 7, 4, 1))
  wider = init_from.resize_table(ramp, (13, 13, 4, 1))
  assert abs(wider[6, 6, 0, 0]) < 1e-6  # The centre is offset 0.
  assert np.all(np.diff(wider[:, 6, 0, 0]) > 0)  # Still increasing.


def test_another_shape_is_refused_naming_the_parameter():
  # A wider stem: c2's first 1×1 conv is the first array (in name order) whose
  # shape differs.
  with pytest.raises(UserError, match=r"parameter stages/0/0/conv1/kernel has "
                     r"shape \[1, 1, 8, 8\], this model's is \[1, 1, 16, 8\]"):
    _finetune("lambda_resnet26t", stem_width=16)


def test_a_file_of_another_model_is_refused_naming_the_tensor():
  # rpt has relative tables where 26t has a lambda convolution.
  with pytest.raises(UserError, match=r"no tensor 'stages\.2\.1\.self_attn\."
                     r"conv_lambda\.weight' \(for our stages/2/1/mixer/embeddings\)"):
    _finetune("lambda_resnet26t",
              source=FIXTURES / "lambda_resnet26rpt_256.safetensors")


def test_missing_source_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="neither a workdir nor a weight file"):
    _finetune("lambda_resnet26t", source=tmp_path / "nothing.safetensors")
  with pytest.raises(UserError, match="has no checkpoint"):
    _finetune("lambda_resnet26t", source=tmp_path)


def test_an_imported_workdir_gives_the_same_start_as_timms_file(tmp_path):
  """init_from a workdir of scripts.import_timm: its step-0 arrays."""
  from scripts import import_timm  # pylint: disable=import-outside-toplevel
  name = "lambda_resnet26t"
  workdir = tmp_path / "imported"
  import_timm.import_timm(name, FIXTURES / f"{name}.safetensors", workdir,
                          dataset="synthetic_far_marks", overrides=_overrides(name))
  model, lines, _, _ = _finetune(name, source=workdir)
  assert f"({name}, step 0, raw weights)" in lines[0]
  expected = _params(_timm_model(name))
  for key, value in _params(model).items():
    np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_a_mismatch_stops_the_run_before_its_workdir_is_made(tmp_path):
  """train_and_evaluate: the UserError comes before anything is written."""
  import tiny_config  # pylint: disable=import-outside-toplevel
  from lambda_networks.train import trainer  # pylint: disable=import-outside-toplevel
  name = "lambda_resnet26t"
  config = tiny_config.get_config()  # The built-in task, 32 px.
  config.model = name
  overrides = dict(_overrides(name), stem_width=16)
  del overrides["image_size"]
  config.model_overrides = overrides
  config.init_from = str(FIXTURES / f"{name}.safetensors")
  workdir = tmp_path / "run"
  with pytest.raises(UserError, match="stages/0/0/conv1/kernel has shape"):
    trainer.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


@early_run
def finetune_runs(tmp_path_factory):
  """configs/finetune.py end to end on mock ImageNet (1000 classes, 64 px):
  train.py fine-tunes the reduced timm 26t (10 classes) for 2 steps, eval.py
  scores the workdir, then the weight file is deleted and a rerun with 3
  steps resumes from the run's own checkpoint."""
  tmp_path = tmp_path_factory.mktemp("finetune")
  data_dir, workdir = tmp_path / "tfds", tmp_path / "run"
  weights = tmp_path / "lambda_resnet26t.safetensors"
  shutil.copy(FIXTURES / weights.name, weights)
  mock = ["tests/tfds_mock.py", str(data_dir), "16", "10"]
  overrides = _overrides("lambda_resnet26t")
  flags = ["--config=configs/finetune.py:imagenet2012,lambda_resnet26t",
           f"--workdir={workdir}", f"--config.data_dir={data_dir}",
           f"--config.init_from={weights}", "--config.image_size=64",
           "--config.global_batch_size=8", "--config.num_train_steps=2",
           "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
           "--config.model_overrides.stage_widths="
           f"({','.join(map(str, overrides['stage_widths']))})",
           f"--config.model_overrides.stem_width={overrides['stem_width']}"]
  _, first = run([*mock, "train.py", *flags], devices=1)
  checkpoint = checkpointing.load_arrays(str(workdir))
  _, evaluated = run([*mock, "eval.py", f"--workdir={workdir}"], devices=1)
  scores = json.loads((workdir / "eval_validation_step2.json").read_text())
  final = json.loads((workdir / "final_metrics.json").read_text())
  weights.unlink()  # A resumed run never reads init_from again.
  _, resumed = run([*mock, "train.py", *flags, "--config.num_train_steps=3"],
                   devices=1)
  return dict(workdir=workdir, weights=weights, first=first,
              checkpoint=checkpoint, evaluated=evaluated, scores=scores,
              final=final, resumed=resumed)


@pytest.mark.slow
def test_finetune_imports_trains_scores_and_resumes(finetune_runs):
  first, workdir = finetune_runs["first"], finetune_runs["workdir"]
  assert f"Initialised lambda_resnet26t from {finetune_runs['weights']}" in first
  assert ("The classifier is re-initialised: " in first
          and "has 10 classes, this run 1000." in first)
  assert "step 2/2" in first
  config = json.loads((workdir / "config.json").read_text())
  assert config["init_from"] == str(finetune_runs["weights"])
  assert config["eval_crop_fraction"] == 0.94
  # Two small steps from timm's weights: still close to them, not equal.
  start = _params(_timm_model("lambda_resnet26t"))
  trained = init_from._flat(finetune_runs["checkpoint"]["params"])  # pylint: disable=protected-access
  assert int(finetune_runs["checkpoint"]["step"]) == 2
  moved = 0
  for key, value in start.items():
    if key not in init_from.HEAD_PATHS:
      np.testing.assert_allclose(trained[key], value, atol=0.05, err_msg=key)
      moved += not np.array_equal(trained[key], value)
  assert moved > len(start) // 2
  # eval.py scores the workdir as training's final evaluation did.
  final, scores = finetune_runs["final"], finetune_runs["scores"]
  assert scores["examples"] == final["examples"] == 10
  assert scores["step"] == final["step"] == 2
  for key in ("top1", "top5", "loss"):
    assert scores[key] == final[key], key
  resumed = finetune_runs["resumed"]
  assert "Resumed from step 2" in resumed and "step 3/3" in resumed
  assert "Initialised" not in resumed
  assert "differs from the run's" not in finetune_runs["evaluated"]
