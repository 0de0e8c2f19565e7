"""The LambdaResNet family on ImageNet (ResNet-RS recipe), by depth and image size.

    python train.py --config=configs/lambda_resnet.py:152,256 --workdir=DIR

Argument "DEPTH,IMAGE_SIZE" (default "50,160"); depths 50, 101, 152, 200,
270, 350, 420. Recipe (PAPER.md §3, [likely]): 350 epochs, batch 4096, SGD
momentum 0.9, lr 0.1·batch/256 with 5 warm-up epochs then cosine, weight
decay 4e-5 (kernels only), label smoothing 0.1, EMA 0.9999 (evaluated),
RandAugment (magnitude 10 up to LambdaResNet-101, 15 beyond), dropout and
stochastic depth as the model registry sets per depth, bfloat16. Needs
imagenet2012 prepared in TFDS. Expected top-1 (speed–accuracy table):
50@128 77.4, 50@160 79.2, 101@160 80.8, 101@192 81.9, 152@192 82.5,
152@224 83.2, 152@256 83.8, 270@256 84.2, 350@256 84.4, 350@320 84.7,
420@320 84.9.
"""

from configs import default

DEPTHS = (50, 101, 152, 200, 270, 350, 420)


def get_config(arg: str = "50,160"):
  depth, image_size = (int(part) for part in (arg or "50,160").split(","))
  if depth not in DEPTHS:
    raise ValueError(f"LambdaResNet depth must be one of {DEPTHS}, got {depth} "
                     "(config argument 'DEPTH,IMAGE_SIZE', e.g. '152,256').")
  config = default.get_config()
  config.model = f"lambda_resnet{depth}"
  config.model_overrides = dict()
  config.dataset = "imagenet2012"
  config.image_size = image_size
  config.global_batch_size = 4096
  config.num_epochs = 350.0
  config.warmup_epochs = 5.0
  config.base_learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 4e-5
  config.label_smoothing = 0.1
  config.ema_decay = 0.9999
  config.eval_use_ema = True
  config.randaugment_layers = 2
  config.randaugment_magnitude = 10.0 if depth <= 101 else 15.0
  config.dtype = "bfloat16"
  config.log_every_steps = 100
  config.eval_every_steps = 3128 * 5  # About every 50 epochs.
  config.checkpoint_every_steps = 1000
  config.keep_checkpoint_period = 31_280  # Keep one per ~100 epochs.
  return config
