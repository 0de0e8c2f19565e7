"""Writes `shapes28` (lambda_networks/data/shapes28.py) to a TFDS directory.

    python -m scripts.make_shapes_dataset --data_dir=/tmp/tfds [--train=20000 --test=4000]
    python train.py --config=configs/small_images.py:shapes28 \\
        --config.data_dir=/tmp/tfds --workdir=/tmp/shapes28
"""

from absl import app
from absl import flags

from lambda_networks.data import shapes28

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory.")
_TRAIN = flags.DEFINE_integer("train", 20_000, "Training examples.")
_TEST = flags.DEFINE_integer("test", 4_000, "Test examples.")


def main(argv):
  del argv
  builder = shapes28.Shapes28(data_dir=_DATA_DIR.value, num_train=_TRAIN.value,
                              num_test=_TEST.value)
  builder.download_and_prepare()
  print(f"Wrote {builder.info.full_name} to {builder.data_dir}: "
        f"{dict((k, v.num_examples) for k, v in builder.info.splits.items())}")


if __name__ == "__main__":
  flags.mark_flag_as_required("data_dir")
  app.run(main)
