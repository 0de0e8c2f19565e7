"""A tiny, fast config for the training tests (not an experiment).

Starts from the quickstart (a two-stage lambda ResNet) and shrinks it; the
tests switch the dataset with --config overrides.
"""

from configs import quickstart


def get_config():
  config = quickstart.get_config()
  config.model_overrides = dict(
      stage_depths=(1, 1), stage_widths=(8, 16), stem_width=8,
      stage_mixers="LL", receptive_field="global", query_depth=4, heads=2)
  config.dropout_rate = 0.2  # So resume tests cover the dropout RNG too.
  config.stochastic_depth_rate = 0.1
  config.synthetic_train_examples = 200
  config.synthetic_eval_examples = 37  # Not a multiple of any batch size used.
  config.global_batch_size = 16
  config.eval_batch_size = 16
  config.num_train_steps = 8
  config.warmup_epochs = 0.0
  config.base_learning_rate = 0.4
  config.ema_decay = 0.9
  config.log_every_steps = 2
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 3
  config.keep_checkpoints = 10
  config.shuffle_buffer = 32
  return config


def get_one_stage_config():
  """The tiny config cut to one convolution stage, for tests of training
  pieces that do not depend on the model (optimisers, mixing): it compiles
  in about half the time."""
  config = get_config()
  config.model_overrides.update(stage_mixers="C", stage_depths=(1,),
                                stage_widths=(8,))
  return config
