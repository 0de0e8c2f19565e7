"""Defaults shared by every experiment; other configs start from these.

Not an experiment itself: it names ImageNet and LambdaResNet-50 with the
90-epoch recipe so that every field has a sensible value. Each field can be
overridden on the command line, e.g. `--config.global_batch_size=512`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # Model: a name from lambda_networks.models.available_models(); any field of
  # its ResNetConfig / EfficientNetConfig can be overridden in model_overrides.
  config.model = "lambda_resnet50"
  config.model_overrides = ml_collections.ConfigDict()
  config.num_classes = 0  # 0: take it from the dataset.
  # Fine-tuning: a workdir (ours, or scripts.import_timm's) or a timm weight
  # file whose arrays start a new run (see lambda_networks/train/init_from.py).
  config.init_from = ""
  # None keeps the model's own default (the LambdaResNets have per-depth ones).
  config.dropout_rate = ml_collections.config_dict.placeholder(float)
  config.stochastic_depth_rate = ml_collections.config_dict.placeholder(float)
  # Computation dtype; parameters stay in param_dtype. "auto": bfloat16 on
  # TPU/GPU, float32 on CPU (where bfloat16 is slower and compiles longer).
  # "float16" is refused (for both): there is no loss scaling, and bfloat16
  # needs none.
  config.dtype = "auto"
  config.param_dtype = "float32"

  # Data: any TFDS image-classification dataset, or "synthetic_far_marks".
  config.dataset = "imagenet2012"
  config.dataset_version = ""  # "" : the newest prepared version.
  config.data_dir = ""  # "" : TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.train_split = "train"
  config.eval_split = "validation"  # "auto": validation if there is one, else test.
  config.image_key = "image"
  config.label_key = "label"
  config.image_size = 224
  # Training crop: "inception" (random area and aspect, resized) or "pad"
  # (crop_padding zero pixels per side, random image_size crop: small images).
  config.train_crop = "inception"
  config.crop_padding = 4
  config.min_crop_area = 0.08  # Inception crop: area fraction in [min, 1].
  config.eval_crop_fraction = 0.875  # Eval: resize to size / fraction, crop.
  config.randaugment_layers = 2
  config.randaugment_magnitude = 0.0  # 0 turns RandAugment off.
  # "reference": the TensorFlow TPU RandAugment that ResNet-RS trains with;
  # "timm": this repository's earlier, timm-like one (docs/training.md).
  config.randaugment_variant = "reference"
  config.normalization_mean = (0.485 * 255, 0.456 * 255, 0.406 * 255)
  config.normalization_stddev = (0.229 * 255, 0.224 * 255, 0.225 * 255)
  # Empty mean and stddev: computed per channel from the first
  # normalization_examples of train_split (written into the run's config.json).
  config.normalization_examples = 10_000
  # Shuffling (TFDS): each epoch reads the host's share in chunks of at most
  # shuffle_chunk consecutive examples of one file, in an order of (seed,
  # epoch, host), and fully shuffles windows of >= shuffle_buffer examples.
  # About 3-4 windows of encoded examples are in memory (read ahead); a resume
  # reads at most the window it starts in. 0 or 1: no shuffle.
  config.shuffle_buffer = 16_384
  config.shuffle_chunk = 2048  # Examples; ImageNet's ~1,250-example files stay whole.
  config.prefetch_batches = 2  # Host batches prepared ahead of the devices.
  config.synthetic_train_examples = 50_000  # "synthetic_far_marks", "text_recall".
  config.synthetic_eval_examples = 2_000

  # Task: "classification" (images) or "language_model" (bytes; the dataset
  # is "text_files", "text_recall" or a TFDS text dataset: see
  # lambda_networks/data/text_source.py and configs/lambda_lm.py).
  config.task = "classification"
  config.sequence_length = 256  # Bytes per training sequence (language_model).
  config.text_files = ""  # A glob of text files, for dataset="text_files".
  config.text_eval_fraction = 0.05  # The last fraction of their bytes: eval.
  config.text_key = "text"  # The string feature of a TFDS text dataset.
  config.text_max_bytes = 0  # > 0: read at most this many bytes per TFDS split.

  # Optimisation: linear warm-up then cosine, lr per 256 examples.
  # optimizer: "sgd" (momentum, nesterov), "adamw" or "lamb" (adam_*); see
  # docs/training.md, "Optimisers and gradient clipping".
  config.optimizer = "sgd"
  config.global_batch_size = 4096
  config.eval_batch_size = 0  # 0: the global batch size.
  config.num_epochs = 90.0
  config.num_train_steps = 0  # > 0 overrides num_epochs.
  config.warmup_epochs = 5.0
  config.warmup_steps = 0  # > 0 overrides warmup_epochs.
  config.base_learning_rate = 0.1  # Multiplied by global_batch_size / 256.
  config.momentum = 0.9  # SGD only.
  config.nesterov = False  # SGD only.
  config.adam_b1 = 0.9  # AdamW and LAMB only: the moments' decay rates,
  config.adam_b2 = 0.999
  config.adam_eps = 1e-8  # and the denominator's epsilon (timm's LAMB: 1e-6).
  # Kernels only (no batch-norm or bias parameters). SGD: coupled, an L2 term
  # added to the gradient; AdamW and LAMB: decoupled, lr · weight_decay · w
  # (their recipes use larger values, e.g. 0.05 or 0.02).
  config.weight_decay = 1e-4
  # Gradient clipping, before weight decay; 0 turns each off. agc_clip:
  # adaptive gradient clipping (NFNets), each unit's gradient norm at most
  # agc_clip times its weights' norm, classifier excepted; then grad_clip_norm:
  # the global norm of all gradients at most this.
  config.agc_clip = 0.0
  config.grad_clip_norm = 0.0
  config.label_smoothing = 0.1
  # Label mixing (classification only; docs/training.md, "Mixup and CutMix"),
  # as timm's Mixup in batch mode: one λ ~ Beta(α, α) per (micro-)batch, each
  # example mixed with its partner in the batch reversed within each device's
  # shard; targets λ·y + (1 − λ)·y_partner (both label-smoothed). 0 turns each
  # off. CutMix pastes a box of the partner and sets λ to the share left.
  config.mixup_alpha = 0.0
  config.cutmix_alpha = 0.0
  # With both on: the chance a batch uses CutMix instead of mixup (timm: 0.5).
  config.mixup_switch_prob = 0.5
  config.mixup_prob = 1.0  # The chance a batch is mixed at all.
  # Fitting the batch to the hardware (docs/training.md, "Fitting a recipe to
  # your hardware"): the global batch runs as this many micro-batches per
  # optimiser step (gradients averaged; steps, schedule and checkpoints count
  # optimiser steps); it must divide the per-device batch.
  config.gradient_accumulation_steps = 1
  # Batch-norm training statistics over groups of this many consecutive
  # examples (per-core statistics as in the TPU reference); 0: the whole
  # global batch. Must divide the per-device (micro-)batch.
  config.batch_norm_group_size = 0
  # "block": recompute each residual block in the backward pass (same
  # gradients, less activation memory, ~1/3 more compute); "none".
  config.remat = "none"
  # 0 turns the EMA off; otherwise the weights and the batch-norm statistics
  # are averaged with this decay (warmed up: min(decay, (1+t)/(10+t))).
  config.ema_decay = 0.0
  # Evaluate the EMA weights, with the EMA statistics, when there are some.
  config.eval_use_ema = True

  # Devices: a ('data',) mesh; -1 means every device.
  config.mesh_shape = (-1,)

  # Loop, checkpoints and logs.
  config.seed = 0
  config.log_every_steps = 100
  config.eval_every_steps = 0  # 0: evaluate at the end only.
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3  # The newest ones.
  config.keep_checkpoint_period = 0  # Also keep every N-th step (0: none).
  # The same intervals in epochs (0: use the step fields above); resolved to
  # steps from the dataset size by `resolved_config.resolve_epoch_intervals`
  # (the resolved config in config.json gives the steps, these then 0).
  config.eval_every_epochs = 0.0
  config.keep_checkpoint_every_epochs = 0.0
  config.async_checkpointing = True
  # The workdir's lock is a lease: process 0 rewrites <workdir>/trainer.lock
  # every lock_renew_seconds; another trainer (any host) takes over a lock
  # not renewed for lock_stale_seconds (e.g. one left by a killed job that
  # SLURM requeued on another node) and is refused a fresher one.
  config.lock_renew_seconds = 60.0
  config.lock_stale_seconds = 300.0
  config.profile_start_step = 10  # Profiler trace of steps [start, start + num).
  config.profile_num_steps = 0  # 0: no trace.
  return config
