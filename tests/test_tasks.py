"""Tests of the tasks the trainer delegates to: losses, sums, config checks."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default, lambda_lm
from lambda_networks.errors import UserError
from lambda_networks.train import tasks


def fake_lm(tokens):
  """Logits that put 3 nats more on byte (token + 1) % 256."""
  return 3.0 * jnp.eye(256)[(tokens + 1) % 256]


def test_lm_eval_sums_count_real_sequences_only():
  task = tasks.LanguageModelling()
  inputs = jnp.array([[1, 2, 3], [7, 7, 7]])
  batch = {"inputs": inputs, "targets": jnp.array([[2, 3, 9], [0, 0, 0]]),
           "mask": jnp.array([1.0, 0.0])}
  sums = {key: float(value) for key, value in task.eval_sums(fake_lm, batch).items()}
  assert sums["count"] == 1 and sums["tokens"] == 3 and sums["correct"] == 2
  right = -math.log(math.exp(3) / (math.exp(3) + 255))
  wrong = -math.log(1 / (math.exp(3) + 255))
  assert sums["loss_sum"] == pytest.approx(2 * right + wrong, rel=1e-5)
  metrics = task.eval_metrics(sums)
  assert metrics["bits_per_byte"] == pytest.approx(metrics["loss"] / math.log(2))
  assert metrics["accuracy"] == pytest.approx(2 / 3)
  loss, train_metrics = task.train_loss(fake_lm, batch)
  np.testing.assert_allclose(train_metrics["bits_per_byte"], loss / math.log(2))


@pytest.mark.parametrize("fields,message", [
    (dict(task="lm"), "must be one of"),
    (dict(model="resnet26"), "an image model"),
    (dict(label_smoothing=0.1), "label_smoothing"),
])
def test_lm_config_mistakes_are_user_errors(fields, message):
  config = lambda_lm.get_config()
  config.update(fields)
  with pytest.raises(UserError, match=message):
    tasks.check_config(config)


def test_an_lm_with_the_image_task_is_refused():
  config = default.get_config()
  config.model = "lambda_lm_tiny"
  with pytest.raises(UserError, match="is a language model"):
    tasks.check_config(config)


def test_fields_the_text_dataset_ignores_are_refused():
  config = lambda_lm.get_config("text_files")
  with pytest.raises(UserError, match="synthetic_train_examples"):
    tasks.check_config(config, given={"synthetic_train_examples"})
  config = lambda_lm.get_config("text_recall")
  with pytest.raises(UserError, match="text_files"):
    tasks.check_config(config, given={"text_files"})
