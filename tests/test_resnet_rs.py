"""The LambdaResNet family's ResNet-RS recipe: per-size regularisation, config.

Expected values are those of the official ResNet-RS configs
(tensorflow/tpu models/official/resnet/resnet_rs/configs/*.yaml), written out
here by hand; LambdaResNet-50 at 128 has no ResNet-RS config and follows the
rule (as 50@160).
"""

import pytest

from configs import lambda_resnet
from lambda_networks import paper
from lambda_networks.models import get_config
from lambda_networks.models import registry
from lambda_networks.models import resnet_rs
from lambda_networks.models.resnet import spread_evenly

# (depth, size) -> (dropout, stochastic depth, RandAugment magnitude).
EXPECTED = {
    (50, 128): (0.25, 0.0, 10),
    (50, 160): (0.25, 0.0, 10),
    (101, 160): (0.25, 0.0, 10),
    (101, 192): (0.25, 0.0, 15),
    (152, 192): (0.25, 0.0, 15),
    (152, 224): (0.25, 0.0, 15),
    (152, 256): (0.25, 0.0, 15),
    (200, 256): (0.25, 0.1, 15),
    (270, 256): (0.25, 0.1, 15),
    (350, 256): (0.25, 0.1, 15),
    (350, 320): (0.4, 0.1, 15),
    (420, 320): (0.4, 0.1, 15),
}


def _paper_rows():
  """(depth, size) of every LambdaResNet row of the paper's file."""
  return sorted((int(r["model"].removeprefix("lambda_resnet")),
                 int(r["image_size"]))
                for r in paper.rows() if r["table"] == "speed_accuracy")


def test_every_paper_row_has_an_expected_recipe():
  assert set(_paper_rows()) <= set(EXPECTED)
  assert len(_paper_rows()) == 11


@pytest.mark.parametrize("depth, size", _paper_rows())
def test_training_config_regularisation_per_paper_row(depth, size):
  config = lambda_resnet.get_config(f"{depth},{size}")
  dropout, drop_path, magnitude = EXPECTED[depth, size]
  assert config.model == f"lambda_resnet{depth}"
  assert config.image_size == size
  assert config.dropout_rate == dropout
  assert config.stochastic_depth_rate == drop_path
  assert config.randaugment_magnitude == magnitude
  assert config.nesterov and config.momentum == 0.9
  assert (config.weight_decay, config.ema_decay, config.num_epochs) == (
      4e-5, 0.9999, 350.0)


def test_rule_reproduces_every_official_config():
  for (depth, size), values in resnet_rs.OFFICIAL_CONFIGS.items():
    official = resnet_rs.recipe(depth, size)
    assert official.source == f"resnetrs{depth}_i{size}.yaml"
    ruled = resnet_rs.rule(depth, size)
    assert (ruled.dropout_rate, ruled.stochastic_depth_rate,
            ruled.randaugment_magnitude) == (official.dropout_rate,
                                             official.stochastic_depth_rate,
                                             official.randaugment_magnitude)
    assert (official.dropout_rate, official.stochastic_depth_rate,
            official.randaugment_magnitude) == EXPECTED[depth, size]


def test_model_defaults_are_the_recipe_at_the_largest_resnet_rs_size():
  for depth, size in ((50, 160), (101, 192), (152, 256), (350, 320)):
    config = get_config(f"lambda_resnet{depth}")
    assert config.image_size == size
    assert (config.dropout_rate, config.stochastic_depth_rate) == (
        EXPECTED[depth, size][:2])
  small = get_config("lambda_resnet26")
  assert (small.dropout_rate, small.stochastic_depth_rate, small.image_size) == (
      0.0, 0.0, 224)


def test_config_accepts_every_registry_depth():
  for depth in registry.RESNET_DEPTHS:
    assert lambda_resnet.get_config(f"{depth},160").model == f"lambda_resnet{depth}"
  with pytest.raises(ValueError, match="depth must be one of"):
    lambda_resnet.get_config("34,160")
  with pytest.raises(ValueError, match="DEPTH,IMAGE_SIZE"):
    lambda_resnet.get_config("152")


def test_c4_lambda_placement_table():
  """Counts quoted from the paper (1/3/6/6/6/6/8; 26 is ours), spread evenly."""
  quoted = {26: 1, 50: 1, 101: 3, 152: 6, 200: 6, 270: 6, 350: 6, 420: 8}
  table = registry.LAMBDA_C4_BLOCK_INDICES
  assert {depth: len(indices) for depth, indices in table.items()} == quoted
  for depth, indices in table.items():
    c4_blocks = registry.RESNET_DEPTHS[depth][2]
    assert set(indices) == spread_evenly(c4_blocks, len(indices))
    assert indices[-1] == c4_blocks - 1  # The last c4 block is a lambda block.
