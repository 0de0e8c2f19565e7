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
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

from lambda_networks.benchmarks import jpeg_dataset
from lambda_networks.benchmarks import reporting

FIELDS = ("augment", "image_size", "cores", "images_per_s",
          "images_per_s_per_core", "images_per_cpu_s", "images", "batch_size",
          "seconds", "cpu_seconds", "load_average_1min", "host_cpu",
          "host_cpus", "tensorflow", "date")


def parse_augment(text: str) -> tuple[int, float]:
  """'off' -> (0, 0); '2x15' -> (2 layers, magnitude 15)."""
  if text == "off":
    return 0, 0.0
  layers, sep, magnitude = text.partition("x")
  if not sep:
    raise argparse.ArgumentTypeError(
        f"augment {text!r} must be 'off' or LAYERSxMAGNITUDE, e.g. 2x15.")
  return int(layers), float(magnitude)


def parse_cores(text: str) -> int:
  available = len(os.sched_getaffinity(0))
  cores = available if text == "all" else int(text)
  if not 1 <= cores <= available:
    raise argparse.ArgumentTypeError(
        f"--cores {text}: this host has {available} usable cores.")
  return cores


def pipeline_config(args: argparse.Namespace, augment: str, image_size: int):
  """configs/default.py pointed at the generated dataset."""
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  layers, magnitude = parse_augment(augment)
  config.update(dataset=jpeg_dataset.DATASET_NAME, data_dir=str(args.data_dir),
                image_size=image_size, randaugment_layers=layers,
                randaugment_magnitude=magnitude, global_batch_size=args.batch,
                seed=args.seed)
  return config


def measure(args: argparse.Namespace, augment: str, image_size: int,
            cores: int) -> dict:
  """Times `args.images` training images through the pipeline (after 1 batch)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from lambda_networks import data  # pylint: disable=g-import-not-at-top
  source = data.create_source(pipeline_config(args, augment, image_size),
                              data.HostShard())
  steps = max(1, -(-args.images // args.batch))
  batches = source.train_batches(0, steps + 1)
  first = next(batches)
  assert first["image"].shape == (args.batch, image_size, image_size, 3)
  start, cpu_start = time.perf_counter(), _cpu_seconds()
  count = sum(batch["image"].shape[0] for batch in batches)
  seconds = time.perf_counter() - start
  cpu_seconds = _cpu_seconds() - cpu_start
  rate = count / seconds
  return dict(augment=augment, image_size=image_size, cores=cores,
              images_per_s=round(rate, 1),
              images_per_s_per_core=round(rate / cores, 1),
              images_per_cpu_s=round(count / cpu_seconds, 1), images=count,
              batch_size=args.batch, seconds=round(seconds, 2),
              cpu_seconds=round(cpu_seconds, 2),
              load_average_1min=os.getloadavg()[0],
              host_cpu=reporting.cpu_name(), host_cpus=os.cpu_count(), tensorflow=tf.__version__,
              date=time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()))


def worker(args: argparse.Namespace) -> None:
  """Runs every (augment, size) on `args.worker_cores` cores; JSON lines out."""
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.worker_cores])
  for augment in args.augments:
    for size in args.image_sizes:
      print(json.dumps(measure(args, augment, size, args.worker_cores)),
            flush=True)


def run_workers(args: argparse.Namespace) -> list[dict]:
  rows = []
  for cores in args.cores:
    command = [sys.executable, "-m", "scripts.benchmark_input", *args.argv,
               "--worker-cores", str(cores)]
    process = subprocess.run(command, capture_output=True, text=True,
                             check=False, env=dict(os.environ, PYTHONPATH=str(
                                 reporting.REPO_ROOT)))
    if process.returncode:
      raise RuntimeError(f"worker on {cores} cores failed:\n{process.stderr[-3000:]}")
    for line in process.stdout.splitlines():
      if line.startswith("{"):
        row = json.loads(line)
        rows.append(row)
        print(f"{row['augment']:>5} {row['image_size']:4d}px {row['cores']} "
              f"core(s): {row['images_per_s']:8.1f} images/s "
              f"({row['images_per_s_per_core']:.1f} per core; "
              f"{row['images_per_cpu_s']:.1f} per CPU-second; load "
              f"{row['load_average_1min']:.2f})", flush=True)
  return rows


def write_markdown(rows: list[dict], path: pathlib.Path, header: str) -> str:
  sizes = sorted({r["image_size"] for r in rows})
  keys = list(dict.fromkeys((r["augment"], r["cores"]) for r in rows))
  lookup = {(r["augment"], r["cores"], r["image_size"]): r for r in rows}
  cell = lambda row: row and (f"{row['images_per_s']:g} ("  # pylint: disable=g-long-lambda
                              f"{row['images_per_s_per_core']:g}) · "
                              f"{row['images_per_cpu_s']:g}")
  body = [[augment, cores, *(cell(lookup.get((augment, cores, s))) for s in sizes)]
          for augment, cores in keys]
  text = "\n".join([
      header, "", "Training pipeline, batch "
      f"{rows[0]['batch_size']}: wall-clock images/s (per core) · images per "
      "CPU-second of the process (all its threads; less sensitive to other "
      "load on the host than wall-clock time):", "",
      reporting.markdown_table(["RandAugment", "cores",
                                *[f"{s} px" for s in sizes]], body), ""])
  path.write_text(text)
  return text


def profile(args: argparse.Namespace, image_size: int) -> str:
  """Images per CPU-second after each stage, cumulatively (pins to one core)."""
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from lambda_networks.data import preprocessing  # pylint: disable=g-import-not-at-top
  from lambda_networks.data import tfds_source  # pylint: disable=g-import-not-at-top
  records = tfds.builder(jpeg_dataset.DATASET_NAME, data_dir=str(args.data_dir)
                         ).as_dataset(split="train", decoders={
                             "image": tfds.decode.SkipDecoding()})
  records = records.take(args.images).cache()
  for _ in records:  # Fill the cache: reading is timed on its own below.
    pass
  seed = tf.constant([1, 2], tf.int64)
  crop_args = dict(channels=3, min_area=0.08, is_jpeg=True)
  crop = lambda image: preprocessing.random_crop(image, seed, **crop_args)
  augment = lambda image, magnitude: preprocessing.train_image_uint8(
      image, seed, image_size=image_size, randaugment_layers=2,
      randaugment_magnitude=magnitude, **crop_args)
  mean, stddev = (127.0, 127.0, 127.0), (60.0, 60.0, 60.0)
  stages = {
      "read (cached records)": lambda image: tf.strings.length(image),
      "decode whole JPEG": lambda image: tf.io.decode_jpeg(image, channels=3),
      "decode + inception crop (fused)": crop,
      "+ flip, resize (bicubic), round to uint8": lambda image: augment(image, 0.0),
      "+ normalise (per image)": lambda image: preprocessing.normalize_batch(
          augment(image, 0.0)[None], mean, stddev)[0],
      "uint8 image + RandAugment 2×10": lambda image: augment(image, 10.0),
      "uint8 image + RandAugment 2×15": lambda image: augment(image, 15.0),
  }
  rows = []
  for name, function in stages.items():
    ds = records.map(lambda ex, f=function: f(ex["image"]),
                     num_parallel_calls=tf.data.AUTOTUNE).with_options(
                         tfds_source.pipeline_options())
    for _ in ds.take(8):  # Warm-up: trace and start threads.
      pass
    start = _cpu_seconds()
    count = sum(1 for _ in ds)
    rate = count / (_cpu_seconds() - start)
    rows.append([name, f"{rate:.0f}", f"{1000 / rate:.2f}"])
    print(*rows[-1], sep="  ", flush=True)
  return "\n".join([
      f"Per-image cost on 1 core, {image_size} px, {args.images} images "
      "(cumulative stages, each a parallel tf.data map; CPU time of the "
      "process):", "", reporting.markdown_table(
          ["stage", "images per CPU-second", "CPU ms per image"], rows)]) + "\n"


def _cpu_seconds() -> float:
  """CPU time of this process, all threads (user + system)."""
  return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


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
  add("--cores", nargs="+", type=parse_cores, default=[1, parse_cores("all")],
      help="core counts to pin the pipeline to ('all' allowed)")
  add("--images", type=int, default=384, help="timed images per setting")
  add("--batch", type=int, default=64)
  add("--profile", action="store_true",
      help="also time each stage on one core (profile.md)")
  add("--out", type=pathlib.Path, default=pathlib.Path("results/input"))
  add("--worker-cores", type=int, default=0, help=argparse.SUPPRESS)
  args = reporting.parse(parser, argv)
  args.cores = list(dict.fromkeys(args.cores))
  return args


def main(argv: list[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  if args.worker_cores:
    worker(args)
    return []
  start = time.perf_counter()
  builder = jpeg_dataset.build(args.data_dir, num_train=args.num_train,
                               num_eval=args.num_eval, seed=args.seed,
                               long_side=args.long_side)
  print(f"dataset {builder.info.full_name} in {builder.data_dir} "
        f"({time.perf_counter() - start:.0f} s)", flush=True)
  rows = run_workers(args)
  args.out.mkdir(parents=True, exist_ok=True)
  writer = reporting.CsvWriter(args.out / "input.csv", FIELDS)
  for row in rows:
    writer.write(row)
  header = (f"Training input pipeline on {rows[0]['host_cpu']} "
            f"({rows[0]['host_cpus']} cores), TensorFlow {rows[0]['tensorflow']}, "
            f"{args.num_train} generated JPEGs (long side {args.long_side} px), "
            f"{rows[0]['date']}; 1-minute load average while measuring: "
            f"{min(r['load_average_1min'] for r in rows):.2f}–"
            f"{max(r['load_average_1min'] for r in rows):.2f}.")
  print(write_markdown(rows, args.out / "input.md", header))
  if args.profile:
    text = profile(args, max(args.image_sizes))
    (args.out / "profile.md").write_text(text)
  print(f"wrote {args.out}/input.{{csv,md}}")
  return rows


if __name__ == "__main__":
  main()
