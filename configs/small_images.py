"""Small images (28–96 px): a lambda ResNet on any TFDS image-classification dataset.

    python train.py --config=configs/small_images.py:fashion_mnist --workdir=/tmp/fmnist
    python eval.py --workdir=/tmp/fmnist

The argument is the TFDS dataset name (default fashion_mnist; mnist, cifar10,
cifar100, svhn_cropped, stl10, ... work the same way); add
`--config.data_dir=DIR` when it is not in TFDS's default directory. Standard
small-image practice, taken from the dataset where it can be:

- model: lambda_resnet26 shrunk for small inputs — the 'small' stem (one 3×3
  stride-1 conv, no max pool, so c2..c5 see 1, 1/2, 1/4, 1/8 of the image),
  one block per stage, width ×0.25, lambda layers in c4 and c5 whose position
  tables are sized to the maps they see (receptive_field='global');
- image size from the dataset, pad-4-and-random-crop + flip, no RandAugment,
  the full image at evaluation (eval_crop_fraction=1);
- normalisation statistics computed from the training split (the first
  10,000 images), written into the run's config.json;
- eval split 'validation' if the dataset has one, else 'test';
- SGD + Nesterov momentum, batch 128, lr 0.1·128/256 with 1 warm-up epoch
  then cosine, weight decay 5e-4, 5 epochs, float32 on CPU (bfloat16 on TPU/GPU).

Budget: 5 epochs. On a 2-core CPU shared with other jobs we measured 3.3–8.9
s a step (batch 128; the load varied) plus 78 s of compilation: the 390
steps of a 10,000-image dataset took 40 minutes, and the test top-1 on
`shapes28` (lambda_networks/data/shapes28.py) was 0.784. A 60,000-image
dataset (MNIST, Fashion-MNIST) has six times as many steps: about 2–5 hours
on such a CPU, minutes on a GPU.
docs/training.md has the measured runs and published figures for the
standard 28–32 px benchmarks. Raise `--config.num_epochs` and
`--config.model_overrides.width_multiplier` on a GPU.
"""

from configs import default


def get_config(dataset: str = "fashion_mnist"):
  config = default.get_config()
  config.model = "lambda_resnet26"
  config.model_overrides = dict(
      stem="small", width_multiplier=0.25, stage_depths=(1, 1, 1, 1),
      mixer_blocks=(0, 0, 1, 1), receptive_field="global", query_depth=8,
      heads=4)
  config.dataset = dataset or "fashion_mnist"
  config.eval_split = "auto"
  config.image_size = 0  # 0: the dataset's own image size.
  config.train_crop = "pad"
  config.eval_crop_fraction = 1.0
  config.normalization_mean = ()  # Empty: computed from the training split.
  config.normalization_stddev = ()
  config.global_batch_size = 128
  config.num_epochs = 5.0
  config.warmup_epochs = 1.0
  config.nesterov = True
  config.weight_decay = 5e-4
  config.label_smoothing = 0.0
  config.dropout_rate = 0.0
  config.stochastic_depth_rate = 0.0
  config.log_every_steps = 50
  config.checkpoint_every_steps = 200
  return config
