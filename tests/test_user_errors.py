"""Bad input gives one clear line and exit status 2; the API names the argument.

The command-line table runs in-process through the functions train.py uses
(cli.parse_flags, config_checks.check with the overridden field names,
workdir.resolve, all under cli.report_user_errors), so it stays fast; the
entry points themselves are run as subprocesses in test_train_safety.py.
"""

import os
import signal

import jax.numpy as jnp
import pytest
from absl import flags
from flax import nnx
from ml_collections import config_flags

from lambda_networks import layers
from lambda_networks import ops
from lambda_networks.errors import UserError
from lambda_networks.train import cli
from lambda_networks.train import config_checks
from lambda_networks.train import trainer
from lambda_networks.train import workdir as workdir_lib

CONFIG = "--config=tests/tiny_config.py"


def validate_command_line(argv: list[str]) -> None:
  """What train.py checks before building anything, on a fresh set of flags."""
  argv = ["train.py", *argv]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)

  @cli.report_user_errors
  def main(unused_argv):
    cli.parse_flags(argv, flag_values)
    config_checks.check(flag_values.config, given=cli.config_overrides(argv))
    workdir_lib.resolve(flag_values.workdir)

  main(argv)


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
    (["--config.ema_decay=1.0"], "ema_decay must be in [0, 1)"),
    (["--config.global_batch_size=0"], "global_batch_size must be positive"),
    (["--config.dropout_rate=1.5"], "dropout_rate=1.5 must be in [0, 1)"),
    (["--config.mesh_shape=(0,)"], "mesh_shape=(0,) must hold positive ints"),
    (["--config.normalization_stddev=(0.0,1.0,1.0)"],
     "normalization_stddev=(0.0, 1.0, 1.0) must be positive"),
    (["--config.dtype=float8"], "dtype='float8' must be one of"),
    (["--config.model=lambda_resnet51"], "unknown model 'lambda_resnet51'"),
    (["--config.eval_split="], "config.eval_split is empty"),
    # Fields the chosen dataset ignores.
    (["--config.image_size=64"], "ignores image_size=64; drop it or use a TFDS dataset"),
    (["--config.min_crop_area=0.5"], "ignores min_crop_area"),
    (["--config.randaugment_magnitude=9"], "ignores randaugment_magnitude=9.0"),
    (["--config.dataset=mnist", "--config.synthetic_train_examples=10"],
     "synthetic_train_examples only size the built-in dataset"),
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

  monkeypatch.setattr(trainer.os, "_exit", fake_exit)
  stop = trainer._StopSignal(  # pylint: disable=protected-access
      (signal.SIGINT, signal.SIGTERM))
  try:
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.received == signal.SIGINT and not exits
    with pytest.raises(Exited):
      os.kill(os.getpid(), signal.SIGINT)
    assert exits == [128 + signal.SIGINT]
  finally:
    stop.restore()
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  err = capfd.readouterr().err
  assert "SIGINT: saving a checkpoint after this step" in err
  assert "SIGINT again: exiting now without saving" in err
