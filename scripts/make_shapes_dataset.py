"""Writes `shapes28` (lambda_networks/data/shapes28.py) to a TFDS directory.

    python -m scripts.make_shapes_dataset --data_dir=/tmp/tfds [--train=20000 --test=4000]
    python train.py --config=configs/small_images.py:shapes28 \\
        --config.data_dir=/tmp/tfds --workdir=/tmp/shapes28
"""

from lambda_networks.benchmarks import reporting
from lambda_networks.data import shapes28


def main(argv: list[str] | None = None) -> None:
  parser = reporting.parser(__doc__)
  parser.add_argument("--data_dir", required=True, help="TFDS data directory")
  parser.add_argument("--train", type=int, default=20_000, help="training examples")
  parser.add_argument("--test", type=int, default=4_000, help="test examples")
  args = parser.parse_args(argv)
  builder = shapes28.Shapes28(data_dir=args.data_dir, num_train=args.train,
                              num_test=args.test)
  builder.download_and_prepare()
  print(f"Wrote {builder.info.full_name} to {builder.data_dir}: "
        f"{dict((k, v.num_examples) for k, v in builder.info.splits.items())}")


if __name__ == "__main__":
  main()
