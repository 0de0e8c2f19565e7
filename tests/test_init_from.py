"""Tests of lambda_networks.train.init_from: fine-tuning's first state.

The sources are the reduced timm fixtures (tests/fixtures/timm), whose
converted models `pretrained.load_timm` gives (tested against timm's logits
in test_pretrained.py); the end-to-end run (import, fine-tune, score,
resume) is in test_train.py.
"""

import functools
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
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


def _config(name: str, num_classes: int, image_size: int):
  """(config, dataset info) for `name` (the fixture's reduced widths)."""
  config = default.get_config()
  config.model = name
  config.model_overrides = dict(_overrides(name), image_size=image_size)
  config.num_classes = num_classes
  config.dtype = "float32"
  config.ema_decay = 0.5
  info = DatasetInfo(name="test", num_classes=num_classes,
                     image_shape=(image_size, image_size, 3),
                     num_train_examples=1, num_eval_examples=1)
  return config, info


@functools.lru_cache(maxsize=None)
def _fresh_state(name: str, num_classes: int, image_size: int
                 ) -> state_lib.TrainState:
  """A state with the trainer's tree and shapes and random values.

  Filled on the host rather than compiled (`create_train_state` would
  compile the model's initialisers: most of these tests' time).
  """
  config, info = _config(name, num_classes, image_size)
  model = nnx.eval_shape(lambda: state_lib.build_model(config, info, 0))
  rng = np.random.default_rng(0)

  def fill(kind):
    return jax.tree.map(
        lambda x: jax.device_put(rng.normal(size=x.shape).astype(x.dtype)),
        nnx.to_pure_dict(nnx.state(model, kind)))

  params, batch_stats = fill(nnx.Param), fill(nnx.BatchStat)
  return state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      opt_state=(), ema_params=jax.tree.map(jnp.copy, params),
      ema_batch_stats=jax.tree.map(jnp.copy, batch_stats))


def _setup(name: str, num_classes: int, image_size: int):
  """(config, info, fresh state)."""
  return (*_config(name, num_classes, image_size),
          _fresh_state(name, num_classes, image_size))


def _finetune(name: str, *, num_classes: int = 10, image_size: int = 64,
              source: pathlib.Path | None = None):
  """(params, batch stats, report lines, state, fresh state) of `name`,
  flat, initialised from `source` (default: its timm fixture)."""
  config, info, fresh = _setup(name, num_classes, image_size)
  config.init_from = str(source or FIXTURES / f"{name}.safetensors")
  lines = []
  state = init_from.load_into(config, info, fresh, report=lines.append)
  return (init_from._flat(state.params), init_from._flat(state.batch_stats),  # pylint: disable=protected-access
          lines, state, fresh)


@functools.lru_cache(maxsize=None)
def _timm_model(name: str):
  """load_timm's model of the fixture (tested against timm's logits)."""
  return pretrained.load_timm(name, FIXTURES / f"{name}.safetensors",
                              **_overrides(name)).model


def _params(model) -> dict:
  return init_from._flat(nnx.to_pure_dict(nnx.state(model, nnx.Param)))  # pylint: disable=protected-access


def _stats(model) -> dict:
  return init_from._flat(nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))  # pylint: disable=protected-access


def test_same_model_and_size_is_load_timms_model_exactly():
  """Resizing to the same size is the identity: rpt at its own 64 px."""
  name = "lambda_resnet26rpt_256"
  params, stats, lines, state, _ = _finetune(name)
  timm = _timm_model(name)
  for ours, theirs in ((params, _params(timm)), (stats, _stats(timm))):
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
      np.testing.assert_array_equal(ours[key], value, err_msg=key)
  assert len(lines) == 1 and "resized" not in lines[0]
  # The EMA starts from the loaded weights and statistics.
  for ema, loaded in ((state.ema_params, _params(timm)),
                      (state.ema_batch_stats, _stats(timm))):
    flat = init_from._flat(ema)  # pylint: disable=protected-access
    assert flat.keys() == loaded.keys()
    for key, value in flat.items():
      np.testing.assert_array_equal(value, loaded[key], err_msg=key)


# The 26t tests share one 3-class state: the fixture has 10 classes.
def test_head_is_reinitialised_on_a_new_class_count_and_the_rest_loaded():
  name = "lambda_resnet26t"
  got, stats, lines, _, fresh = _finetune(name, num_classes=3)
  assert any("classifier is re-initialised" in line and "10 classes, this run 3"
             in line for line in lines)
  timm = _timm_model(name)
  fresh_params = init_from._flat(fresh.params)  # pylint: disable=protected-access
  for key in init_from.HEAD_PATHS:
    np.testing.assert_array_equal(got[key], fresh_params[key])
    assert got[key].shape[-1] == 3
  for key, value in _params(timm).items():
    if key not in init_from.HEAD_PATHS:
      np.testing.assert_array_equal(got[key], value, err_msg=key)
  for key, value in _stats(timm).items():
    np.testing.assert_array_equal(stats[key], value, err_msg=key)


def test_position_tables_are_interpolated_for_a_new_image_size():
  """rpt's fixed-size tables, 64 px → 96 px: resized, centre kept."""
  name = "lambda_resnet26rpt_256"
  resized, _, lines, _, _ = _finetune(name, image_size=96)
  original = _params(_timm_model(name))
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


def test_resize_table_is_identity_at_the_same_shape_and_keeps_linear_tables():
  table = np.random.default_rng(0).normal(size=(7, 7, 4, 1)).astype(np.float32)
  assert init_from.resize_table(table, table.shape) is table
  offsets = np.arange(-3, 4, dtype=np.float32)
  ramp = np.broadcast_to(offsets[:, None, None, None], (7, 7, 4, 1))
  wider = init_from.resize_table(ramp, (13, 13, 4, 1))
  assert abs(wider[6, 6, 0, 0]) < 1e-6  # The centre is offset 0.
  assert np.all(np.diff(wider[:, 6, 0, 0]) > 0)  # Still increasing.


def test_another_shape_is_refused_naming_the_parameter(tmp_path):
  """A file whose c2 block-0 1×1 conv is wider than this model's."""
  tensors = safetensors_numpy.load_file(
      str(FIXTURES / "lambda_resnet26t.safetensors"))
  key = "stages.0.0.conv1_1x1.conv.weight"
  tensors[key] = np.concatenate([tensors[key]] * 2, axis=1)  # 16 inputs.
  path = tmp_path / "wider.safetensors"
  safetensors_numpy.save_file(tensors, str(path))
  with pytest.raises(UserError, match=r"parameter stages/0/0/conv1/kernel has "
                     r"shape \[1, 1, 16, 8\], this model's is \[1, 1, 8, 8\]"):
    _finetune("lambda_resnet26t", num_classes=3, source=path)


def test_a_file_of_another_model_is_refused_naming_the_tensor():
  # rpt has relative tables where 26t has a lambda convolution.
  with pytest.raises(UserError, match=r"no tensor 'stages\.2\.1\.self_attn\."
                     r"conv_lambda\.weight' \(for our stages/2/1/mixer/embeddings\)"):
    _finetune("lambda_resnet26t", num_classes=3,
              source=FIXTURES / "lambda_resnet26rpt_256.safetensors")


def test_missing_source_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="neither a workdir nor a weight file"):
    _finetune("lambda_resnet26t", num_classes=3,
              source=tmp_path / "nothing.safetensors")
  with pytest.raises(UserError, match="has no checkpoint"):
    _finetune("lambda_resnet26t", num_classes=3, source=tmp_path)


def test_a_workdir_source_gives_its_checkpoints_weights(tmp_path):
  """init_from a workdir (as scripts.import_timm and training write them)."""
  name = "lambda_resnet26t"
  config, info, fresh = _setup(name, 3, 64)
  config.init_from = str(FIXTURES / f"{name}.safetensors")
  saved = init_from.load_into(config, info, fresh, report=lambda _: None)
  saved = saved.replace(ema_params={})  # Its eval then scores the raw weights.
  manager = checkpointing.create_manager(str(tmp_path), config)
  checkpointing.save(manager, saved, {"model": name}, force=True)
  manager.wait_until_finished()
  manager.close()
  params, _, lines, _, _ = _finetune(name, num_classes=3, source=tmp_path)
  assert "step 0, raw weights" in lines[0] and len(lines) == 1
  for key, value in _params(_timm_model(name)).items():
    if key not in init_from.HEAD_PATHS:
      np.testing.assert_array_equal(params[key], value, err_msg=key)
  for key in init_from.HEAD_PATHS:  # 3 classes in both: the saved head.
    np.testing.assert_array_equal(params[key],
                                  init_from._flat(saved.params)[key])  # pylint: disable=protected-access


def test_a_mismatch_stops_the_run_before_its_workdir_is_made(tmp_path):
  """train_and_evaluate: the UserError comes before anything is written."""
  import tiny_config  # pylint: disable=import-outside-toplevel
  from lambda_networks.train import trainer  # pylint: disable=import-outside-toplevel
  config = tiny_config.get_config()  # The built-in task; a 2-stage model.
  config.init_from = str(FIXTURES / "lambda_resnet26t.safetensors")
  workdir = tmp_path / "run"
  with pytest.raises(UserError, match=r"config\.init_from=.* no tensor "
                     r"'stages\.0\.0\.self_attn\.qkv\.weight'"):
    trainer.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


@early_run
def finetune_runs(tmp_path_factory):
  """configs/finetune.py end to end on mock ImageNet (1000 classes, 64 px):
  train.py fine-tunes the reduced timm 26t (10 classes) for 3 steps and is
  stopped by SIGTERM at step 2, the weight file is deleted and the same
  command resumes from the run's own checkpoint to the end, then eval.py
  scores the workdir. (One step count for both runs: the resumed run reuses
  the first one's compiled step from the compilation cache.)"""
  tmp_path = tmp_path_factory.mktemp("finetune")
  data_dir, workdir = tmp_path / "tfds", tmp_path / "run"
  weights = tmp_path / "lambda_resnet26t.safetensors"
  shutil.copy(FIXTURES / weights.name, weights)
  mock = ["tests/tfds_mock.py", str(data_dir), "16", "10"]
  overrides = _overrides("lambda_resnet26t")
  flags = ["--config=configs/finetune.py:imagenet2012,lambda_resnet26t",
           f"--workdir={workdir}", f"--config.data_dir={data_dir}",
           f"--config.init_from={weights}", "--config.image_size=64",
           "--config.global_batch_size=8", "--config.num_train_steps=3",
           "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
           "--config.model_overrides.stage_widths="
           f"({','.join(map(str, overrides['stage_widths']))})",
           f"--config.model_overrides.stem_width={overrides['stem_width']}"]
  _, first = run(["tests/signal_at_step.py", "2", "SIGTERM", *mock, "train.py",
                  *flags], devices=1)
  checkpoint = checkpointing.load_arrays(str(workdir))
  weights.unlink()  # A resumed run never reads init_from again.
  _, resumed = run([*mock, "train.py", *flags], devices=1)
  _, evaluated = run([*mock, "eval.py", f"--workdir={workdir}"], devices=1)
  scores = json.loads((workdir / "eval_validation_step3.json").read_text())
  final = json.loads((workdir / "final_metrics.json").read_text())
  return dict(workdir=workdir, weights=weights, first=first,
              checkpoint=checkpoint, evaluated=evaluated, scores=scores,
              final=final, resumed=resumed)


@pytest.mark.slow
def test_finetune_imports_trains_scores_and_resumes(finetune_runs):
  first, workdir = finetune_runs["first"], finetune_runs["workdir"]
  assert f"Initialised lambda_resnet26t from {finetune_runs['weights']}" in first
  assert ("The classifier is re-initialised: " in first
          and "has 10 classes, this run 1000." in first)
  assert "step 2/3" in first and "Stopped by SIGTERM at step 2" in first
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
  assert scores["step"] == final["step"] == 3
  for key in ("top1", "top5", "loss"):
    assert scores[key] == final[key], key
  resumed = finetune_runs["resumed"]
  assert "Resumed from step 2" in resumed and "step 3/3" in resumed
  assert "Initialised" not in resumed
  assert "differs from the run's" not in finetune_runs["evaluated"]
