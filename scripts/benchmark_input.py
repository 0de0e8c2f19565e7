"""Images per second of the training input pipeline, per host core.

Builds (once, under --data-dir) a TFDS dataset of generated ImageNet-like
JPEGs (lambda_networks/benchmarks/jpeg_dataset.py), then runs the training
pipeline on it exactly as train.py builds it (`data.create_source` from
configs/default.py: read, shuffle, fused decode + inception crop, resize,
flip, RandAugment, normalise, batch). Each core count runs in its own process
pinned to that many cores, so TensorFlow sizes its thread pools as on such a
host; the first batch is not timed. Writes <out>/input.csv and
<out>/input.md; `--profile` adds <out>/profile.md, each stage's cost on one core.

  python -m scripts.benchmark_input                     # ~5 min on 2 cores
  python -m scripts.benchmark_input --image-sizes 224 --augments off 2x15 \\
      --cores 1 --images 256
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import pathlib
import time
from typing import Any

import pandas as pd

from lambda_networks import native_logs

native_logs.quiet()  # As in train.py, before JAX and TensorFlow load.

# pylint: disable=wrong-import-position
from configs import default
from lambda_networks.benchmarks import input_pipeline
from lambda_networks.benchmarks import jpeg_dataset
from lambda_networks.benchmarks import reporting
# pylint: enable=wrong-import-position

PROGRESS = ("{augment:>5} {image_size:4d}px {cores} core(s): {images_per_s:8.1f} "
            "images/s ({images_per_s_per_core:.1f} per core; {images_per_cpu_s:.1f}"
            " per CPU-second; load {load_average_1min:.2f})")


def parse_augment(text: str) -> tuple[int, float]:
  """'off' -> (0, 0); '2x15' -> (2 layers, magnitude 15)."""
  if text == "off":
    return 0, 0.0
  layers, sep, magnitude = text.partition("x")
  if not sep:
    raise argparse.ArgumentTypeError(
        f"augment {text!r} must be 'off' or LAYERSxMAGNITUDE, e.g. 2x15.")
  return int(layers), float(magnitude)


def parse_cores(text: str) -> int | str:
  return text if text == "all" else int(text)


def worker(args: argparse.Namespace, cores: int) -> list[dict[str, Any]]:
  """Measures every (augment, size) in this process, pinned to `cores` cores."""
  rows = []
  for augment, size in itertools.product(args.augments, args.image_sizes):
    layers, magnitude = parse_augment(augment)
    config = default.get_config()  # Pointed at the generated dataset:
    config.update(dataset=jpeg_dataset.DATASET_NAME, data_dir=str(args.data_dir),
                  image_size=size, randaugment_layers=layers,
                  randaugment_magnitude=magnitude, global_batch_size=args.batch,
                  seed=args.seed)
    rows.append(input_pipeline.measure(config, augment=augment,
                                       images=args.images, cores=cores))
  return rows


def run_workers(args: argparse.Namespace) -> pd.DataFrame:
  """Runs `worker` in a new process pinned to each of `args.cores` core counts."""
  available, rows = sorted(os.sched_getaffinity(0)), []
  try:
    for cores in args.cores:
      os.sched_setaffinity(0, available[:cores])  # The worker inherits it.
      # Spawned: a fresh TensorFlow sizes its thread pools to the pinned cores.
      with multiprocessing.get_context("spawn").Pool(1) as pool:
        for row in pool.apply(worker, (args, cores)):
          rows.append(row)
          print(PROGRESS.format(**row), flush=True)
  finally:
    os.sched_setaffinity(0, available)
  return pd.DataFrame(rows, columns=input_pipeline.FIELDS)


def markdown(rows: pd.DataFrame, header: str) -> str:
  keys = ["augment", "cores"]
  cells = rows.set_index([*keys, "image_size"]).apply(
      lambda r: f"{r.images_per_s:g} ({r.images_per_s_per_core:g}) · "
      f"{r.images_per_cpu_s:g}", axis=1).unstack().reindex(
          pd.MultiIndex.from_frame(rows[keys].drop_duplicates()))
  return "\n".join([
      header, "", f"Training pipeline, batch {rows.batch_size[0]}: wall-clock "
      "images/s (per core) · images per CPU-second of the process (all its "
      "threads; less sensitive to other load on the host than wall-clock "
      "time):", "", reporting.markdown_table(
          ["RandAugment", "cores", *(f"{s} px" for s in cells.columns)],
          cells.reset_index().fillna("").values), ""])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  add = parser.add_argument
  add("--data-dir", type=pathlib.Path, default=pathlib.Path("results/input/tfds"))
  add("--num-train", type=int, default=2048,
      help="generated training images (built once)")
  add("--num-eval", type=int, default=64)
  add("--long-side", type=int, default=500,
      help="long side of most generated images, px")
  add("--seed", type=int, default=0)
  # --augments are checked here and kept as text (the CSV's `augment` column).
  add("--augments", nargs="+", type=lambda text: parse_augment(text) and text,
      default=["off", "2x10", "2x15"], help="'off' or RandAugment LAYERSxMAGNITUDE")
  add("--image-sizes", nargs="+", type=int, default=[128, 160, 224])
  add("--cores", nargs="+", type=parse_cores, default=[1, "all"],
      help="core counts to pin the pipeline to ('all' allowed)")
  add("--images", type=int, default=384, help="timed images per setting")
  add("--batch", type=int, default=64)
  add("--profile", action="store_true",
      help="also time each stage on one core (profile.md)")
  add("--out", type=pathlib.Path, default=pathlib.Path("results/input"))
  args = parser.parse_args(argv)
  available = len(os.sched_getaffinity(0))
  args.cores = list(dict.fromkeys(available if n == "all" else n for n in args.cores))
  if not all(1 <= n <= available for n in args.cores):
    parser.error(f"--cores {args.cores}: this host has {available} usable cores.")
  return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
  args = parse_args(argv)
  start = time.perf_counter()
  builder = jpeg_dataset.build(args.data_dir, num_train=args.num_train,
                               num_eval=args.num_eval, seed=args.seed,
                               long_side=args.long_side)
  print(f"dataset {builder.info.full_name} in {builder.data_dir} "
        f"({time.perf_counter() - start:.0f} s)", flush=True)
  rows = run_workers(args)
  args.out.mkdir(parents=True, exist_ok=True)
  rows.to_csv(args.out / "input.csv", index=False, lineterminator="\r\n")
  first, load = rows.iloc[0], rows.load_average_1min
  text = markdown(rows, (
      f"Training input pipeline on {first.host_cpu} ({first.host_cpus} cores), "
      f"TensorFlow {first.tensorflow}, {args.num_train} generated JPEGs (long "
      f"side {args.long_side} px), {first.date}; 1-minute load average while "
      f"measuring: {load.min():.2f}–{load.max():.2f}."))
  (args.out / "input.md").write_text(text)
  print(text)
  if args.profile:  # On one core.
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])
    (args.out / "profile.md").write_text(input_pipeline.profile(
        args.data_dir, max(args.image_sizes), args.images))
  print(f"wrote {args.out}/input.{{csv,md}}")
  return rows


if __name__ == "__main__":
  main()
