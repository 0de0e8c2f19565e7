"""Fine-tuning a pretrained lambda ResNet (timm's ImageNet weights) on a TFDS dataset.

    python train.py --config=configs/finetune.py:oxford_flowers102 \
        --config.init_from=lambda_resnet26t.safetensors --workdir=DIR
    python eval.py --workdir=DIR

The argument is "DATASET[,MODEL]": any TFDS image-classification dataset
(default oxford_flowers102; cifar10, cifar100, oxford_iiit_pet, ... work the
same way) and one of timm's lambda ResNets (lambda_resnet26t by default,
lambda_resnet50ts, lambda_resnet26rpt_256). `--config.init_from` is timm's
`model.safetensors` of that model (see README, "Pretrained models"), or a
workdir written by `python -m scripts.import_timm` or by an earlier run of
the same model; without it the model trains from scratch. The classifier is
re-initialised for the dataset's classes; everything else starts from the
pretrained weights and batch statistics.

The recipe, standard transfer practice (BiT's and timm's fine-tuning runs):
- the pretrained model's own preprocessing, from timm's config
  (`lambda_networks.pretrained.TIMM_MODELS`): 256 px input, its centre-crop
  fraction at evaluation (0.94; 0.95 for 50ts), ImageNet mean/std; images of
  any size are resized to it (a different `--config.image_size` works: the
  rpt model's position tables are interpolated to it);
- inception crop + flip, no RandAugment, label smoothing 0.1;
- SGD + Nesterov momentum, batch 128, a tenth of ImageNet's learning rate
  (0.01 per 256 examples) with a half-epoch warm-up then cosine, no weight
  decay (pulling pretrained weights towards zero only forgets), 10 epochs
  and no dropout or stochastic depth.

Budget: 10 epochs, e.g. 80 steps on oxford_flowers102's 1,020 training
images, 3,900 on cifar10's 50,000: minutes to an hour on a GPU; at 256 px
a 2-core CPU trains a few examples per second. No accuracy was measured here
(neither timm's weights nor these datasets are on this machine).
"""

from configs import default
from lambda_networks.pretrained import timm_models

DEFAULT_DATASET = "oxford_flowers102"
DEFAULT_MODEL = "lambda_resnet26t"


def get_config(arg: str = f"{DEFAULT_DATASET},{DEFAULT_MODEL}"):
  dataset, _, model = (arg or DEFAULT_DATASET).partition(",")
  model = model or DEFAULT_MODEL
  if model not in timm_models.TIMM_MODELS:
    raise ValueError(f"configs/finetune.py: the model must be one of "
                     f"{', '.join(timm_models.TIMM_MODELS)} (argument "
                     f"'DATASET,MODEL'), got {model!r}.")
  preprocessing = timm_models.TIMM_MODELS[model].preprocessing
  config = default.get_config()
  config.model = model
  config.dataset = dataset or DEFAULT_DATASET
  config.eval_split = "auto"
  config.image_size = preprocessing.input_size[0]
  config.eval_crop_fraction = preprocessing.crop_pct
  # timm's mean/std are default.py's ImageNet ones (checked in
  # tests/test_configs.py), so normalization_mean/stddev stay as they are.
  config.global_batch_size = 128
  config.num_epochs = 10.0
  config.warmup_epochs = 0.5
  config.base_learning_rate = 0.01
  config.nesterov = True
  config.weight_decay = 0.0
  config.dropout_rate = 0.0
  config.stochastic_depth_rate = 0.0
  config.log_every_steps = 50
  config.eval_every_epochs = 1.0
  config.checkpoint_every_steps = 500
  return config
