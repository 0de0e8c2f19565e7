"""Tests of lambda_networks.train.run_config: the workdir's config.json."""

import json

import pytest

from configs import default
from configs import quickstart
from configs import small_images
from lambda_networks import models
from lambda_networks.train import config_checks
from lambda_networks.train import run_config


def test_config_round_trips_through_the_workdir(tmp_path):
  config = small_images.get_config("mnist")
  config.normalization_mean, config.normalization_stddev = (33.3,), (78.6,)
  assert run_config.record(config, str(tmp_path), start_step=0) == []
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["model_overrides"]["receptive_field"] == "global"
  loaded = run_config.load(str(tmp_path))
  assert loaded.model_overrides.stage_depths == (1, 1, 1, 1)  # Tuples again.
  assert loaded.normalization_mean == (33.3,)
  assert run_config.differences(config, loaded) == []
  assert run_config.load(str(tmp_path / "nothing_here")) is None


def test_resumed_run_reports_changes_that_change_the_result(tmp_path):
  config = quickstart.get_config()
  run_config.record(config, str(tmp_path), start_step=0)
  config.log_every_steps = 7  # Bookkeeping: not reported.
  config.label_smoothing = 0.1
  config.model_overrides.receptive_field = "none"
  changes = run_config.record(config, str(tmp_path), start_step=300)
  assert changes == ["label_smoothing: 0.0 -> 0.1",
                     "model_overrides.receptive_field: 'global' -> 'none'"]
  assert (tmp_path / "config_before_step300.json").exists()
  assert run_config.load(str(tmp_path)).label_smoothing == 0.1
  assert run_config.record(config, str(tmp_path), start_step=600) == []


def test_metrics_say_which_model_and_data_made_them():
  config = quickstart.get_config()
  config.model_overrides.stage_mixers = "CC"
  described = run_config.describe(config)
  assert described["model"] == "resnet26"
  assert described["model_overrides"]["stage_mixers"] == "CC"
  assert described["model_overrides"]["stage_widths"] == [16, 32]
  assert described["dataset"] == "synthetic_far_marks"
  assert described["split"] == "test" and described["image_size"] == 32
  assert described["dtype"] == "float32"
  json.dumps(described)  # Serialisable as is.


def test_synthetic_task_resolves_without_a_dataset():
  config = quickstart.get_config()
  config.eval_split, config.image_size = "auto", 0
  run_config.resolve(config)
  assert config.eval_split == "test" and config.image_size == 32


def test_small_image_recipe_passes_the_up_front_checks():
  """Its image_size=0, eval_split='auto' and empty statistics mean "from the data"."""
  config = small_images.get_config("fashion_mnist")
  config_checks.check(config)
  model_config = models.get_config(config.model, **config.model_overrides)
  assert model_config.stem == "small"
  assert [m.count("lambda") for m in model_config.block_mixers()] == [0, 0, 1, 1]
  config.image_size = -1
  with pytest.raises(ValueError, match="image_size"):
    config_checks.check(config)


def test_a_config_saved_by_older_code_gets_the_new_fields(tmp_path):
  """eval.py --workdir on a run saved before a field existed still works."""
  config = quickstart.get_config()
  run_config.record(config, str(tmp_path), start_step=0)
  saved = json.loads((tmp_path / "config.json").read_text())
  del saved["eval_every_epochs"]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert "eval_every_epochs" not in run_config.load(str(tmp_path))
  loaded = run_config.load(str(tmp_path), defaults=default.get_config())
  assert loaded.eval_every_epochs == default.get_config().eval_every_epochs
  assert loaded.model == config.model  # Saved values win over defaults.
  assert loaded.model_overrides.stage_mixers == config.model_overrides.stage_mixers


def test_resume_with_an_unreadable_saved_config_keeps_it_and_says_so(tmp_path):
  (tmp_path / run_config.CONFIG_FILE).write_text("{not json")
  changes = run_config.record(quickstart.get_config(), str(tmp_path), 300)
  assert len(changes) == 1 and "config.json could not be read" in changes[0]
  assert (tmp_path / "config_before_step300.json").read_text() == "{not json"
  assert run_config.load(str(tmp_path)).model == quickstart.get_config().model


def test_a_config_saved_with_both_interval_fields_reads_as_steps(tmp_path):
  """Older code recorded eval_every_epochs beside the steps it resolved to."""
  config = quickstart.get_config()
  config.eval_every_epochs, config.eval_every_steps = 2.0, 250
  (tmp_path / run_config.CONFIG_FILE).write_text(run_config.to_json(config))
  loaded = run_config.load(str(tmp_path))
  assert (loaded.eval_every_epochs, loaded.eval_every_steps) == (0.0, 250)
  config_checks.check(loaded)  # One interval: accepted.
