"""A byte-level causal lambda language model on text (or the built-in task).

    python train.py --config=configs/lambda_lm.py:text_recall --workdir=/tmp/recall
    python train.py --config=configs/lambda_lm.py:text_files \
        --config.text_files='/usr/share/common-licenses/*' --workdir=/tmp/lm
    python train.py --config=configs/lambda_lm.py:tiny_shakespeare --workdir=/tmp/shk
    python eval.py --workdir=/tmp/lm
    python -m scripts.generate --workdir=/tmp/lm --prompt "The " --max_bytes 200

The argument is the dataset: "text_recall" (default; the built-in long-range
copy task, made in-process), "text_files" (the files `--config.text_files`
matches; the last 5% of their bytes are the eval split) or a TFDS text
dataset's name (`tiny_shakespeare`, `lm1b`, ...; the feature
`--config.text_key`, default "text"). Sequences of `sequence_length` = 256
bytes.

Model: lambda_lm_tiny (2 blocks, width 128, 0.36M parameters) with a
"global" relative table, so the lambda layers reach the whole context; the
baseline at the same widths is `--config.model=transformer_lm_tiny`; a local
receptive field (constant-memory decoding) is
`--config.model_overrides.receptive_field=63`. Byte vocabulary, next-byte
cross-entropy; eval.py reports loss, bits_per_byte and accuracy.

On "text_recall" the second half of each sequence copies the first, 129
bytes back: a model that reaches that far reaches about 2.35 bits per byte
(4.7 for the random half, 0 for the copy), one with a shorter receptive field
stays near 4.7.
"""

from configs import default


def get_config(dataset: str = "text_recall"):
  config = default.get_config()
  config.task = "language_model"
  config.model = "lambda_lm_tiny"
  config.model_overrides = dict(receptive_field="global")
  config.dtype = "float32"
  config.dataset = dataset
  if dataset == "text_recall":
    config.eval_split = "test"
    config.synthetic_train_examples = 20_000
    config.synthetic_eval_examples = 256
  elif dataset != "text_files":
    config.eval_split = "test"  # tiny_shakespeare, lm1b: train / test.
  config.global_batch_size = 32
  config.num_train_steps = 2000
  config.warmup_epochs = 0.05
  config.base_learning_rate = 2.0  # SGD + Nesterov; × 32 / 256 = 0.25.
  config.nesterov = True
  config.weight_decay = 0.0
  config.label_smoothing = 0.0
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.log_every_steps = 50
  return config
