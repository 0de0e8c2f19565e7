"""Training and inference throughput, step time and peak memory of registry models.

For every model × image size × batch size × mode, the step (train: forward,
cross-entropy, backward and the trainer's SGD-momentum + weight-decay update;
inference: forward) is compiled for synthetic data, run `--warmup` times,
then timed `--repeats` times; the median is reported, compilation and
warm-up excluded. Peak memory is XLA's buffer assignment for the compiled
step, per device, read before anything runs: a step that needs more than the
device has is reported as out of memory. The batch is split over all local
devices; every row records the device and software versions, the step's
FLOPs per example (XLA's cost analysis, 2 per multiply-add), the achieved
TFLOP/s and, where the peak is known (lambda_networks/benchmarks/
peak_flops.py), the model FLOPs utilisation (MFU).

  python -m scripts.benchmark_models --models lambda_resnet50 efficientnet_b0 \\
      --image-sizes paper --batch-sizes 8 --out results/benchmarks/models.csv
  # tiny models for a smoke test:
  python -m scripts.benchmark_models --models resnet26 --image-sizes 32 \\
      --batch-sizes 2 --override width_multiplier=0.0625 --repeats 2
"""

from __future__ import annotations

import argparse
import itertools
import pathlib

from lambda_networks import models
from lambda_networks.benchmarks import steps
from scripts import benchmarking
from lambda_networks.benchmarks import reporting

RESULT_FIELDS = (
    "model", "overrides", "image_size", "batch_size", "mode", "dtype",
    "num_devices", "status", "params", "compile_s", "peak_memory_mib",
    "memory_limit_mib", "timed_steps", "step_time_ms", "step_time_min_ms",
    "step_time_max_ms", "examples_per_s", "gflops_per_example",
    "achieved_tflops", "peak_tflops", "mfu")
ENVIRONMENT_FIELDS = (
    "backend", "device_kind", "device_count", "host_cpu", "host_cpus", "jax",
    "jaxlib", "flax", "optax", "python", "git_commit", "date")
FIELDS = RESULT_FIELDS + ENVIRONMENT_FIELDS


def image_sizes_for(name: str, sizes: list[str]) -> list[int]:
  """'paper' expands to the sizes the paper reports the model at."""
  return list(dict.fromkeys(itertools.chain.from_iterable(
      models.get_spec(name).paper_image_sizes if size == "paper" else [int(size)]
      for size in sizes)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  add = parser.add_argument
  add("--models", nargs="+", required=True,
      help="registry names (lambda_networks.models.available_models())")
  add("--image-sizes", nargs="+", default=["paper"],
      help="ints, or 'paper' for the sizes the paper uses per model")
  add("--batch-sizes", nargs="+", type=int, default=[8],
      help="global batch sizes (split over the devices)")
  add("--modes", nargs="+", default=list(steps.MODES), choices=steps.MODES)
  add("--override", action="append", default=[], metavar="FIELD=VALUE",
      help="model config override for every model (repeatable), e.g. "
      "width_multiplier=0.0625 or stage_depths=(1,1,1,1)")
  add("--num-classes", type=int, default=1000)
  benchmarking.add_step_flags(parser, warmup=2, repeats=5)
  add("--out", type=pathlib.Path, default=pathlib.Path("results/benchmarks/models.csv"))
  args = parser.parse_args(argv)
  for name in args.models:
    models.get_spec(name)  # A clear error for unknown names, before any work.
  return args


def main(argv: list[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  overrides = benchmarking.parse_overrides(args.override)
  if args.dtype != "float32":
    overrides.setdefault("dtype", args.dtype)
  points = [(name, size, batch, mode) for name in args.models
            for size in image_sizes_for(name, args.image_sizes)
            for batch in args.batch_sizes for mode in args.modes]
  for name, size, _, _ in points:  # Clear errors for bad overrides, up front.
    models.get_config(name, image_size=size, **overrides)
  limit = benchmarking.memory_limit(args)
  env = benchmarking.environment()
  print(f"{env['device_count']} × {env['device_kind']} ({env['backend']}, "
        f"{env['host_cpu']}), jax {env['jax']}, flax {env['flax']}",
        benchmarking.pair_cost_note(), sep="\n", flush=True)
  writer = reporting.CsvWriter(args.out, FIELDS)
  rows = []
  for name, size, batch, mode in points:
    row = benchmarking.measure(name, overrides, args, limit, image_size=size,
                               batch_size=batch, mode=mode,
                               num_classes=args.num_classes)
    rows.append(row | dict(dtype=args.dtype, **env))
    writer.write(rows[-1])
    print(f"{name:22s} {size:4d}px batch {batch:5d} {mode:9s} "
          f"{row.get('step_time_ms') or '—':>10} ms/step "
          f"{row.get('examples_per_s') or '—':>10} ex/s "
          f"{row.get('peak_memory_mib') or '—':>10} MiB "
          f"{row.get('gflops_per_example') or '—':>8} GFLOP/ex "
          f"MFU {row.get('mfu') or '—'} "
          f"compile {row.get('compile_s') or '—'} s  {row['status']}", flush=True)
  print(f"wrote {args.out}")
  return rows


if __name__ == "__main__":
  main()
