"""The LambdaResNet family on ImageNet (ResNet-RS recipe), by depth and image size.

    python train.py --config=configs/lambda_resnet.py:152,256 --workdir=DIR

Argument "DEPTH,IMAGE_SIZE" (default "50,160"); DEPTH is any depth of the
model registry (26, 50, 101, 152, 200, 270, 350, 420). The family and its
recipe in the paper: docs/paper.md#lambdaresnets. Recipe: the official
ResNet-RS configs (tensorflow/tpu models/official/resnet/resnet_rs/configs,
see lambda_networks/models/resnet_rs.py): 350 epochs, batch 4096, SGD with
Nesterov momentum 0.9, lr 0.1·batch/256 with 5 warm-up epochs then cosine,
weight decay 4e-5 (kernels only), label smoothing 0.1, EMA 0.9999
(evaluated), two RandAugment layers (the TPU reference's operations:
`randaugment_variant="reference"`, the default), bfloat16; per (depth,
size) dropout (0.25; 0.4 at 320 px), stochastic depth (0.1 from depth 200,
per stage) and RandAugment magnitude (10 for 50@160 and 101@160, else 15) from
`resnet_rs.recipe`; batch-norm statistics over groups of 128 examples (the
reference's per-TPU-core batch; BATCH_NORM_GROUP_SIZE); the lambda layers'
execution timed at start-up (lambda_method="measure"). Needs imagenet2012
prepared in TFDS. Expected top-1: the speed–accuracy rows of
docs/paper_reference.csv (LambdaResNet-50@128 77.4 … LambdaResNet-420@320
84.9).
"""

from configs import default
from lambda_networks.models import registry
from lambda_networks.models import resnet_rs

DEPTHS = tuple(sorted(registry.RESNET_DEPTHS))
# The TPU reference's per-core batch: tensorflow/tpu
# models/official/resnet/resnet_model.py normalises with
# tf.layers.batch_normalization and no cross-replica sum, so statistics are
# per TPU core; its pod configs keep 128 examples per core
# (configs/cloud/v3-32.yaml: batch 4096 on 32 cores; v3-128.yaml: 16384 on 128).
BATCH_NORM_GROUP_SIZE = 128


def get_config(arg: str = "50,160"):
  try:
    depth, image_size = (int(part) for part in (arg or "50,160").split(","))
  except ValueError as error:
    raise ValueError(f"config argument must be 'DEPTH,IMAGE_SIZE', e.g. "
                     f"'152,256', got {arg!r}.") from error
  if depth not in DEPTHS:
    raise ValueError(f"LambdaResNet depth must be one of {DEPTHS}, got {depth} "
                     "(config argument 'DEPTH,IMAGE_SIZE', e.g. '152,256').")
  recipe = resnet_rs.recipe(depth, image_size)
  config = default.get_config()
  config.model = f"lambda_resnet{depth}"
  config.dropout_rate = recipe.dropout_rate
  config.stochastic_depth_rate = recipe.stochastic_depth_rate
  config.image_size = image_size
  config.num_epochs = 350.0
  config.nesterov = True  # tf.train.MomentumOptimizer(use_nesterov=True).
  config.weight_decay = 4e-5
  config.ema_decay = 0.9999
  config.randaugment_magnitude = recipe.randaugment_magnitude
  # Batch-norm statistics per 128 examples, as the TPU reference computes
  # them per core (docs/training.md, "Batch-norm groups").
  config.batch_norm_group_size = BATCH_NORM_GROUP_SIZE
  # The lambda layers' execution is timed on the run's devices at start-up
  # and recorded per stage (docs/training.md, "The lambda layers'
  # execution"); `auto`'s GPU and TPU costs are CPU guesses.
  config.model_overrides.lambda_method = "measure"
  config.eval_every_epochs = 50.0
  config.keep_checkpoint_every_epochs = 100.0  # Also keep one per 100 epochs.
  return config
