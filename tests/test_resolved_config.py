"""Tests of lambda_networks.train.resolved_config: one path to the run's config."""

import pytest

import tiny_config
from lambda_networks.errors import UserError
from lambda_networks.train import config_checks
from lambda_networks.train import resolved_config
from lambda_networks.train import run_config


def test_prepare_checks_once_resolves_and_freezes(monkeypatch):
  calls = []
  check = config_checks.check
  monkeypatch.setattr(config_checks, "check",
                      lambda *args, **kwargs: calls.append(args) or check(
                          *args, **kwargs))
  config = tiny_config.get_config()
  config.eval_every_epochs, config.eval_every_steps = 1.0, 0
  config.init_from = ""
  prepared = resolved_config.prepare(config)
  assert len(calls) == 1
  # 200 examples in batches of 16: 12 steps an epoch; only steps recorded.
  assert prepared.steps_per_epoch == 12 and prepared.total_steps == 8
  assert (prepared.config.eval_every_steps,
          prepared.config.eval_every_epochs) == (12, 0.0)
  assert config.eval_every_epochs == 1.0  # The user's config is untouched.
  with pytest.raises(AttributeError, match="immutable"):
    prepared.config.eval_every_steps = 3  # pytype: disable=not-writable
  # A resolved config passes the checks again as it is (eval.py reads it).
  resolved_config.prepare(prepared.config.as_configdict())
  assert len(calls) == 2


def test_prepare_refuses_what_the_data_or_devices_cannot_take():
  config = tiny_config.get_config()
  config.global_batch_size = 400  # The split has 200 examples.
  with pytest.raises(UserError, match="larger than the training split"):
    resolved_config.prepare(config)
  config = tiny_config.get_config()
  config.mesh_shape = (3,)
  with pytest.raises(UserError, match="needs 3 devices"):
    resolved_config.prepare(config)


def test_init_from_is_recorded_as_an_absolute_path(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = tiny_config.get_config()
  config.init_from = "runs/base"
  prepared = resolved_config.prepare(config)
  assert prepared.config.init_from == str(tmp_path / "runs" / "base")


@pytest.mark.slow
def test_config_json_is_the_prepared_config(finished_run):
  prepared = resolved_config.prepare(tiny_config.get_config())
  saved = (finished_run / run_config.CONFIG_FILE).read_text()
  assert saved == run_config.to_json(prepared.config)
