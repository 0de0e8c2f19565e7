"""Bad input gives one clear line and exit status 2; the API names the argument.

The command-line table runs in-process through the functions train.py uses
(conftest.validate_command_line: cli.parse_flags, config_checks.check with
the overridden field names, workdir.resolve, all under
cli.report_user_errors), so it stays fast; the
entry points themselves are run as subprocesses in test_train_safety.py.
"""

import os
import signal

import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from flax import nnx

import tiny_config
from conftest import CONFIG, validate_command_line
from lambda_networks import data
from lambda_networks import layers
from lambda_networks import models
from lambda_networks import ops
from lambda_networks.errors import UserError
from lambda_networks.train import cli
from lambda_networks.train import config_checks
from lambda_networks.train import periodic
from lambda_networks.train import trainer

BAD_COMMAND_LINES = [
    # Flags and config fields.
    (["--config.num_train_steps=abc"], "--config.num_train_steps=abc: invalid literal"),
    (["--config.not_a_field=1"], "unknown config field 'not_a_field'"),
    (["--config.learning_rate=0.1"],
     "unknown config field 'learning_rate' (overrides given: "
     "--config.learning_rate). Did you mean \"base_learning_rate\""),
    (["--config=tests/no_such_config.py"], "No such file or directory"),
    # Numeric ranges.
    (["--config.num_train_steps=-5"], "num_train_steps=-5 is out of range: it must be ≥ 0"),
    (["--config.num_epochs=-1"], "num_epochs=-1.0 is out of range"),
    (["--config.base_learning_rate=-0.1"],
     "base_learning_rate=-0.1 is out of range: it must be > 0"),
    (["--config.base_learning_rate=nan"], "base_learning_rate=nan is out of range"),
    (["--config.warmup_epochs=-1"], "warmup_epochs=-1.0 is out of range"),
    (["--config.warmup_steps=-1"], "warmup_steps=-1 is out of range: it must be ≥ 0"),
    (["--config.checkpoint_every_steps=0"],
     "checkpoint_every_steps=0 is out of range: it must be ≥ 1"),
    (["--config.checkpoint_every_steps=-3"], "checkpoint_every_steps=-3 is out of range"),
    (["--config.momentum=1.0"], "momentum=1.0 is out of range: it must be in [0.0, 1.0)"),
    (["--config.weight_decay=-1e-4"], "weight_decay=-0.0001 is out of range"),
    (["--config.seed=-1"], "seed=-1 is out of range"),
    (["--config.prefetch_batches=0"], "prefetch_batches=0 is out of range"),
    (["--config.dataset=imagenet2012", "--config.shuffle_chunk=0"],
     "shuffle_chunk=0 is out of range: it must be ≥ 1"),
    (["--config.eval_every_steps=-1"], "eval_every_steps=-1 is out of range"),
    (["--config.keep_checkpoints=0"], "keep_checkpoints must be at least 1"),
    (["--config.lock_renew_seconds=0"], "lock_renew_seconds=0.0 is out of range"),
    (["--config.lock_stale_seconds=30"],
     "lock_stale_seconds=30.0 must be longer than config.lock_renew_seconds=60.0"),
    (["--config.ema_decay=1.0"], "ema_decay must be in [0, 1)"),
    (["--config.global_batch_size=0"], "global_batch_size must be positive"),
    (["--config.dropout_rate=1.5"], "dropout_rate=1.5 must be in [0, 1)"),
    (["--config.mesh_shape=(0,)"], "mesh_shape=(0,) must hold positive ints"),
    (["--config.normalization_stddev=(0.0,1.0,1.0)"],
     "normalization_stddev=(0.0, 1.0, 1.0) must be positive"),
    (["--config.dtype=float8"], "dtype='float8' must be one of"),
    (["--config.model=lambda_resnet51"], "unknown model 'lambda_resnet51'"),
    # The field at fault is named, not a clash with the quickstart's layout.
    (["--config.model=lambda_resnet50", "--config.model_overrides.receptive_field=4"],
     "receptive_field=4 must be odd and positive so the r×r window of relative "
     "positions is centred on the query; use 3 or 5"),
    (["--config.model=lambda_resnet50"],
     "mixer_blocks needs one entry per stage (2 from stage_depths=(1, 1)), got "
     "(0, 0, 1, None); give one per stage, or None"),
    # Precisions that would train unsafely.
    (["--config.param_dtype=float16"], "config.param_dtype='float16'"),
    (["--config.dtype=float16"], "config.dtype='float16'"),
    (["--config.eval_split="], "config.eval_split is empty"),
    (["--config.randaugment_variant=rand-m9"],
     "randaugment_variant='rand-m9' must be one of ('reference', 'timm')"),
    # Optimisers and clipping.
    (["--config.optimizer=adam"],
     "optimizer='adam' must be one of ('sgd', 'adamw', 'lamb')"),
    (["--config.grad_clip_norm=-1"], "grad_clip_norm=-1.0 is out of range"),
    (["--config.agc_clip=-0.01"], "agc_clip=-0.01 is out of range"),
    (["--config.optimizer=adamw", "--config.adam_b2=1.0"],
     "adam_b2=1.0 is out of range: it must be in [0.0, 1.0)"),
    (["--config.optimizer=lamb", "--config.adam_eps=0"],
     "adam_eps=0.0 is out of range: it must be > 0"),
    # Fields the chosen optimiser ignores.
    (["--config.adam_b1=0.95"], "config.optimizer='sgd' ignores adam_b1"),
    (["--config.optimizer=lamb", "--config.momentum=0.9", "--config.nesterov"],
     "config.optimizer='lamb' ignores momentum, nesterov; drop them"),
    # Fitting the batch to the hardware.
    (["--config.remat=all"], "config.remat='all' must be one of ('none', 'block')"),
    (["--config.gradient_accumulation_steps=0"],
     "gradient_accumulation_steps=0 is out of range: it must be ≥ 1"),
    (["--config.batch_norm_group_size=-8"],
     "batch_norm_group_size=-8 is out of range: it must be ≥ 0"),
    # Fields the chosen dataset ignores.
    (["--config.image_size=64"], "ignores image_size=64; drop it or use a TFDS dataset"),
    (["--config.min_crop_area=0.5"], "ignores min_crop_area"),
    (["--config.randaugment_magnitude=9"], "ignores randaugment_magnitude=9.0"),
    (["--config.randaugment_variant=timm"], "ignores randaugment_variant"),
    (["--config.dataset=mnist", "--config.synthetic_train_examples=10"],
     "synthetic_train_examples only size the built-in dataset"),
    # Mixup and CutMix.
    (["--config.mixup_alpha=-0.2"], "mixup_alpha=-0.2 is out of range"),
    (["--config.cutmix_alpha=-1"], "cutmix_alpha=-1.0 is out of range"),
    (["--config.mixup_alpha=nan"], "mixup_alpha=nan is out of range"),
    (["--config.mixup_alpha=0.2", "--config.cutmix_alpha=1",
      "--config.mixup_switch_prob=1.5"],
     "mixup_switch_prob=1.5 is out of range: it must be in [0.0, 1.0]"),
    (["--config.cutmix_alpha=1", "--config.mixup_prob=-0.1"],
     "mixup_prob=-0.1 is out of range: it must be in [0.0, 1.0]"),
    (["--config.mixup_prob=0.5"],
     "config.mixup_prob (mixup_alpha and cutmix_alpha are 0) would be ignored"),
    (["--config.mixup_alpha=0.2", "--config.mixup_switch_prob=0.3"],
     "config.mixup_switch_prob (read only when mixup_alpha and cutmix_alpha "
     "are both > 0) would be ignored"),
]


@pytest.mark.parametrize("extra,message", BAD_COMMAND_LINES,
                         ids=[" ".join(extra) for extra, _ in BAD_COMMAND_LINES])
def test_bad_command_line_is_one_line_and_exit_2(extra, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    validate_command_line([CONFIG, f"--workdir={tmp_path / 'run'}", *extra])
  assert exit_info.value.code == 2
  error = capsys.readouterr().err
  assert error.startswith("Error: ") and error.count("\n") == 1, error
  assert "Traceback" not in error and "\\" not in error, error
  assert message in error, error
  assert not (tmp_path / "run").exists()


def test_bad_workdirs_are_refused_before_anything_is_written(tmp_path, capsys):
  a_file = tmp_path / "notes.txt"
  a_file.write_text("keep me")
  for workdir, message in (("", "--workdir is empty"),
                           (str(a_file), "is a file, not a directory"),
                           (str(a_file / "run"), "cannot be created")):
    with pytest.raises(SystemExit) as exit_info:
      validate_command_line([CONFIG, f"--workdir={workdir}"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
  assert a_file.read_text() == "keep me"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_good_command_line_passes(tmp_path):
  validate_command_line([CONFIG, f"--workdir={tmp_path}", "--config.num_train_steps=3"])


def test_user_error_shows_traceback_only_when_verbose(capsys, monkeypatch):
  @cli.report_user_errors
  def main(unused_argv):
    raise UserError("config.x is wrong;\n  set it right.")

  monkeypatch.setattr(flags.FLAGS["verbosity"], "value", -1)
  with pytest.raises(SystemExit):
    main([])
  assert capsys.readouterr().err == "Error: config.x is wrong; set it right.\n"
  monkeypatch.setattr(flags.FLAGS["verbosity"], "value", 1)
  with pytest.raises(SystemExit):
    main([])
  assert "Traceback" in capsys.readouterr().err

  @cli.report_user_errors
  def buggy(unused_argv):
    raise KeyError("a bug")

  with pytest.raises(KeyError):  # Programming errors are not user errors.
    buggy([])


def train_in_process(config, workdir) -> None:
  """What train.py does after its checks, under its error reporting."""

  @cli.report_user_errors
  def main(unused_argv):
    trainer.train_and_evaluate(config, str(workdir))

  main([])


def _assert_refused_before_writing(run, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    run()
  error = capsys.readouterr().err
  assert exit_info.value.code == 2, error
  assert error.startswith("Error: ") and error.count("\n") == 1, error
  assert message in error, error
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("size,message", [
    (16, "config.model_overrides.image_size=16 does not match the 32×32 images "
     "that config.dataset='synthetic_far_marks' feeds the model"),
    ((32, 40), "config.model_overrides.image_size=(32, 40) does not match the "
     "32×32 images that config.dataset='synthetic_far_marks' feeds the model"),
])
def test_model_image_size_other_than_the_datas_is_refused_at_build(
    size, message, tmp_path, capsys):
  config = tiny_config.get_config()
  config.model_overrides.image_size = size
  _assert_refused_before_writing(
      lambda: train_in_process(config, tmp_path / "run"),
      f"{message} (config.image_size=32)", tmp_path, capsys)


def test_tfds_image_size_mismatch_says_to_set_config_image_size(
    mock_imagenet, tmp_path, capsys):
  config = _mock_imagenet_config(mock_imagenet)
  config.model_overrides.image_size = 16
  _assert_refused_before_writing(
      lambda: train_in_process(config, tmp_path / "run"),
      "Drop it and set --config.image_size=16 instead", tmp_path, capsys)


def test_batch_larger_than_the_train_split_is_refused_at_build(
    mock_imagenet, tmp_path, capsys):
  config = _mock_imagenet_config(mock_imagenet)
  config.global_batch_size = 32
  _assert_refused_before_writing(
      lambda: train_in_process(config, tmp_path / "run"),
      "config.global_batch_size=32 is larger than the training split "
      "config.train_split='train' of 'imagenet2012' (30 examples): not one "
      "batch fits. Lower global_batch_size to at most 30", tmp_path, capsys)


@pytest.mark.parametrize("field,value,message", [
    ("gradient_accumulation_steps", 3, "config.gradient_accumulation_steps=3 "
     "does not divide the per-device batch of 16"),
    ("batch_norm_group_size", 6, "config.batch_norm_group_size=6 does not "
     "divide the per-device batch of 16"),
])
def test_batch_splits_the_devices_cannot_take_are_refused_at_build(
    field, value, message, tmp_path, capsys):
  config = tiny_config.get_config()
  config[field] = value
  _assert_refused_before_writing(
      lambda: train_in_process(config, tmp_path / "run"), message, tmp_path,
      capsys)


def _mock_imagenet_config(data_dir):
  config = tiny_config.get_config()
  config.dataset, config.data_dir = "imagenet2012", data_dir
  config.eval_split, config.image_size = "validation", 32
  return config


def test_host_share_of_the_split_counts(mock_imagenet):
  config = _mock_imagenet_config(mock_imagenet)
  info = data.DatasetInfo("imagenet2012", 1000, (32, 32, 3), 30, 37)
  config.global_batch_size = 30  # 15 examples and 15 per batch per host: fits.
  config_checks.check_against_data(config, info, process_count=1)
  config_checks.check_against_data(config, info, process_count=2)
  config.global_batch_size = 28  # 7 examples and 7 per batch per host: fits.
  config_checks.check_against_data(config, info, process_count=4)
  config.global_batch_size = 32  # 8 per host batch, 7 examples per host.
  with pytest.raises(UserError, match="larger than .* 7 per host for 4 hosts.* "
                     "at most 28"):
    config_checks.check_against_data(config, info, process_count=4)


@pytest.mark.parametrize("text,message", [
    ('{"model": "resnet26",', "config.json is not valid JSON (Expecting"),
    ("[1, 2]", "config.json holds a JSON list, not the config object"),
    ("\udcff", "config.json is not valid JSON"),
])
def test_eval_on_a_damaged_config_json_names_the_file(text, message, tmp_path,
                                                      capsys):
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "config.json").write_text(text, errors="surrogateescape")
  before = sorted(tmp_path.rglob("*"))
  with pytest.raises(SystemExit) as exit_info:
    cli.parse_eval_flags(["eval.py", f"--workdir={tmp_path}"])
  error = capsys.readouterr().err
  assert exit_info.value.code == 2
  assert error.startswith(f"Error: {tmp_path / 'config.json'}"), error
  assert message in error and error.count("\n") == 1, error
  assert "--config=<file>" in error
  assert sorted(tmp_path.rglob("*")) == before


# The API: argument checks at the entry points.
def _lambda_layer(**overrides):
  kwargs = dict(in_features=4, out_features=8, heads=2, query_depth=4,
                receptive_field=None, rngs=nnx.Rngs(0))
  kwargs.update(overrides)
  return layers.LambdaLayer(**kwargs)


@pytest.mark.parametrize("build,error,message", [
    (lambda: _lambda_layer(out_features=0), ValueError, "out_features must be at least 1"),
    (lambda: _lambda_layer(heads=0), ValueError, "heads must be at least 1"),
    (lambda: _lambda_layer(query_depth=0), ValueError, "query_depth must be at least 1"),
    (lambda: _lambda_layer(heads=2.0), TypeError, "heads must be an int"),
    (lambda: layers.MultiHeadSelfAttention(4, 0, heads=1, rngs=nnx.Rngs(0)),
     ValueError, "out_features must be at least 1"),
    (lambda: layers.MultiHeadSelfAttention(4, 8, heads=0, rngs=nnx.Rngs(0)),
     ValueError, "heads must be at least 1"),
    (lambda: layers.RelativeSelfAttention(4, 8, heads=-1, input_size=4, rngs=nnx.Rngs(0)),
     ValueError, "heads must be at least 1"),
    (lambda: layers.AxialSelfAttention(0, 8, heads=2, input_size=4, rngs=nnx.Rngs(0)),
     ValueError, "in_features must be at least 1"),
])
def test_layer_constructor_refuses_bad_sizes(build, error, message):
  with pytest.raises(error, match=message):
    build()


def test_layer_call_refuses_empty_batch_and_integer_inputs():
  layer = _lambda_layer()
  with pytest.raises(ValueError, match="inputs have an empty axis"):
    layer(jnp.zeros((0, 3, 3, 4)))
  with pytest.raises(TypeError, match="inputs must be floating point, got int32"):
    layer(jnp.ones((2, 3, 3, 4), jnp.int32))
  attention = layers.MultiHeadSelfAttention(4, 8, heads=2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="inputs have an empty axis"):
    attention(jnp.zeros((0, 3, 3, 4)))
  assert layer(jnp.ones((2, 3, 3, 4))).shape == (2, 3, 3, 8)


def test_python_lists_are_refused_with_the_shape_expected():
  layer = _lambda_layer()
  image = [[[[1.0] * 4] * 3] * 3]
  with pytest.raises(TypeError, match=r"inputs must be an array of shape "
                     r"\[B, H, W, C\], got a list; convert it first"):
    layer(image)
  np.testing.assert_array_equal(layer(jnp.asarray(image)).shape, (1, 3, 3, 8))
  model = models.get_model("resnet26", num_classes=2, rngs=nnx.Rngs(0),
                           stage_depths=(1, 1), stage_widths=(8, 8),
                           stem_width=8, stage_mixers="CC", image_size=8)
  with pytest.raises(TypeError, match=r"images must be an array of shape "
                     r"\[B, H, W, 3\], got a tuple"):
    model(((0.0,),))


@pytest.mark.parametrize("value,error,message", [
    ("23", TypeError, "got the string '23'; pass 23 without quotes"),
    (4, ValueError, "must be odd and positive .* got 4; use 3 or 5"),
    (2.5, TypeError, "receptive_field must be an int"),
])
def test_receptive_field_errors_say_what_is_wrong(value, error, message):
  with pytest.raises(error, match=message):
    _lambda_layer(receptive_field=value)
  with pytest.raises(ValueError, match="receptive_field"):
    models.get_config("lambda_resnet50", receptive_field=value)


def test_lambda_interactions_refuses_integers_and_empty_batches():
  queries, keys, values = (jnp.ones((2, 5, 2, 4), jnp.int32),
                           jnp.ones((2, 5, 4, 1), jnp.int32),
                           jnp.ones((2, 5, 3, 1), jnp.int32))
  with pytest.raises(TypeError, match="queries must be floating point, got int32"):
    ops.lambda_interactions(queries, keys, values)
  floats = [x.astype(jnp.float32) for x in (queries, keys, values)]
  with pytest.raises(TypeError, match="embeddings must be floating point"):
    ops.lambda_interactions(*floats, jnp.ones((3, 4, 1), jnp.int32))
  with pytest.raises(ValueError, match="must not have an empty axis"):
    ops.lambda_interactions(*(x[:0] for x in floats))
  assert ops.lambda_interactions(*floats).dtype == jnp.float32


# Ctrl-C, in-process.
def test_first_signal_asks_to_stop_second_exits_at_once(monkeypatch, capfd):
  exits = []

  class Exited(Exception):
    pass

  def fake_exit(status):
    exits.append(status)
    raise Exited

  monkeypatch.setattr(periodic.os, "_exit", fake_exit)
  # Python's default handler, whatever started the suite (nohup ignores it).
  before = signal.signal(signal.SIGINT, signal.default_int_handler)
  stop = periodic.StopSignal((signal.SIGINT, signal.SIGTERM))
  try:
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.received == signal.SIGINT and not exits
    with pytest.raises(Exited):
      os.kill(os.getpid(), signal.SIGINT)
    assert exits == [128 + signal.SIGINT]
  finally:
    stop.restore()
    restored = signal.signal(signal.SIGINT, before)
  assert restored is signal.default_int_handler
  err = capfd.readouterr().err
  assert "SIGINT: saving a checkpoint after this step" in err
  assert "SIGINT again: exiting now without saving" in err
