"""Forward+backward time and memory of lambda layers against self-attention.

Runs each layer variant on square feature maps of several sizes and writes a
CSV, a markdown table and a plot. Memory is XLA's buffer assignment for the
compiled forward+backward step (arguments + outputs + temporaries − aliased),
which is the peak the step needs on any backend. `--calibrate` then fits this
platform's cost table of `method="auto"` (lambda_networks/benchmarks/
pair_cost.py) to the rows measured, or to the CSVs it is given without
measuring anything, and writes it to lambda_networks/pair_cost.json.

  python -m scripts.benchmark_layers                    # defaults, ~5 min on 2 CPU cores
  python -m scripts.benchmark_layers --sizes 14 28 --batch 32 --channels 256
  python -m scripts.benchmark_layers --sizes 14 28 56 64 --batch 32 \\
      --channels 256 --calibrate
  python -m scripts.benchmark_layers --calibrate docs/benchmark_layers_cpu.csv --dry-run
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import platform
import statistics

import jax
import jax.numpy as jnp
import pandas as pd
from flax import nnx

from lambda_networks import ops
from lambda_networks.benchmarks import pair_cost
from lambda_networks.benchmarks import reporting
from lambda_networks.benchmarks import compiled_steps
from lambda_networks.layers import LambdaLayer, MultiHeadSelfAttention

# name -> the LambdaLayer's options (None: self-attention).
VARIANTS = {
    f"lambda_{scope}_{method}": dict(receptive_field=field, method=method)
    for scope, field in (("local_r23", 23), ("global", "global"))
    for method in ("auto", "einsum", "conv", "row_conv")
} | {"self_attention": None}
FIELDS = ("variant", "size", "positions", "batch", "channels", "dtype", "backend",
          "device", "method", "peak_memory_mib", "timed_steps", "time_ms",
          "status")
METRICS = {"time_ms": ("ms, forward+backward", "forward+backward time (ms)"),
           "peak_memory_mib": ("MiB", "peak memory (MiB)")}
# Executions that take minutes per step on a CPU at large sizes (a global
# table as a convolution kernel): skipped above this size unless --all.
SLOW_VARIANT_MAX_SIZE = {"lambda_global_conv": 28, "lambda_global_row_conv": 28}


def compile_step(layer: nnx.Module, inputs: jax.Array):
  """Compiles loss + gradients w.r.t. parameters and inputs."""
  graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

  def loss(params, rest, inputs):
    model = nnx.merge(graphdef, params, rest, copy=True)  # training mode: batch statistics
    value = jnp.mean(jnp.square(model(inputs).astype(jnp.float32)))
    return value, nnx.state(model, nnx.Not(nnx.Param))

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True))
  return step.lower(params, rest, inputs).compile(), (params, rest, inputs)


def measure(variant: str, size: int, args: argparse.Namespace) -> dict:
  row = dict(variant=variant, size=size, positions=size * size, batch=args.batch,
             channels=args.channels, dtype=args.dtype, backend=jax.default_backend(),
             device=jax.devices()[0].device_kind, method="",
             peak_memory_mib=float("nan"), timed_steps=0, time_ms=float("nan"))
  if not args.all and size > SLOW_VARIANT_MAX_SIZE.get(variant, size):
    return row | dict(status="skipped (slow; --all runs it)")
  try:
    options, dtype, rngs = VARIANTS[variant], jnp.dtype(args.dtype), nnx.Rngs(0)
    layer = (LambdaLayer(args.channels, args.channels, heads=args.heads,
                         input_size=size, dtype=dtype, rngs=rngs, **options)
             if options else MultiHeadSelfAttention(
                 args.channels, args.channels, heads=args.heads, dtype=dtype,
                 rngs=rngs))
    inputs = jax.random.normal(jax.random.key(0), (args.batch, size, size,
                                                   args.channels), args.dtype)
    row["method"] = (ops.resolved_method((size, size), layer.table_shape,
                                         layer.method)
                     if isinstance(layer, LambdaLayer) else "attention")
    compiled, step_args = compile_step(layer, inputs)
    peak = compiled_steps.peak_bytes(compiled)
    row["peak_memory_mib"] = round((peak or float("nan")) / compiled_steps.MIB, 2)
    times = compiled_steps.time_compiled(
        compiled, step_args, repeats=args.repeats, slow_seconds=args.slow_seconds)
  except Exception as error:  # pylint: disable=broad-except  # OOM is a result.
    return row | dict(status=compiled_steps.error_status(error))
  return row | dict(timed_steps=len(times), status="ok",
                    time_ms=round(1000 * statistics.median(times), 3))


def markdown(rows: pd.DataFrame, header: str) -> str:
  def grid(values: pd.Series) -> pd.DataFrame:  # variant × size, in run order.
    return rows.assign(value=values).pivot(
        index="variant", columns="size", values="value").reindex(rows.variant.unique())

  def section(metric: str, unit: str) -> list[str]:
    table = grid(rows[metric].map("{:g}".format).where(rows.status == "ok",
                                                       rows.status))
    return [f"**{metric}** ({unit})", "", reporting.markdown_table(
        ["variant", *(f"{s}×{s}" for s in table.columns)],
        table.reset_index().fillna("").values), ""]

  time_ms, memory = (section(metric, unit) for metric, (unit, _) in METRICS.items())
  auto = [f"- {variant} ran " + ", ".join(f"{m} at {s}×{s}" for s, m in methods.items())
          for variant, methods in grid(rows.method).fillna("?").iterrows()
          if variant.endswith("_auto")]
  return "\n".join([header, "", *time_ms, *auto, "", *memory])


def plot(rows: pd.DataFrame, path: pathlib.Path) -> None:
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  figure = mpl_figure.Figure(figsize=(11, 4))  # No pyplot: no GUI backend.
  axes = figure.subplots(1, 2)
  for axis, (metric, (_, label)) in zip(axes, METRICS.items()):
    for variant, points in rows.groupby("variant", sort=False):
      points = points[points.status == "ok"]
      axis.plot(points.positions, points[metric], marker="o", label=variant)
    axis.set(xscale="log", yscale="log", xlabel="positions (H·W)", ylabel=label)
    axis.grid(True, which="both", alpha=0.3)
  axes[0].legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=120)


def calibrate(paths: list[pathlib.Path], args: argparse.Namespace) -> dict:
  """Fits and writes (or with --dry-run prints) the table `method="auto"` uses."""
  try:
    return pair_cost.calibrate(
        pd.concat([pd.read_csv(path, dtype=str) for path in paths]),
        platform=args.platform, costs_file=args.costs_file, dry_run=args.dry_run,
        command=f"scripts.benchmark_layers --calibrate {' '.join(map(str, paths))}")
  except ValueError as error:  # Rows that cannot be fitted: say why, no traceback.
    raise SystemExit(f"calibrate: {error}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  add = parser.add_argument
  add("--sizes", type=int, nargs="+", default=[14, 28, 56, 64])
  add("--batch", type=int, default=4)
  add("--channels", type=int, default=64)
  add("--heads", type=int, default=4)
  add("--dtype", default="float32")
  add("--repeats", type=int, default=5, help="timed steps per point (median reported)")
  add("--slow-seconds", type=float, default=3.0,
      help="a step slower than this is timed once, not --repeats times")
  add("--all", action="store_true", help=f"also run {sorted(SLOW_VARIANT_MAX_SIZE)} "
      f"above {max(SLOW_VARIANT_MAX_SIZE.values())} px")
  add("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
  add("--out", type=pathlib.Path, default=pathlib.Path("results/layers"))
  add("--calibrate", nargs="*", type=pathlib.Path, metavar="CSV", help="fit "
      "pair_cost.json to the rows measured, or only to these CSVs (one backend)")
  add("--platform", help="table to calibrate (default: the CSVs' backend)")
  add("--costs-file", type=pathlib.Path, default=ops.PAIR_COST_FILE)
  add("--dry-run", action="store_true", help="print the fitted table, write nothing")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float] | None:
  """Measures (unless given CSVs to calibrate); returns any calibrated costs."""
  args = parse_args(argv)
  if args.calibrate:
    return calibrate(args.calibrate, args)
  header = (f"Lambda layer vs self-attention, batch {args.batch}, {args.channels} channels, "
            f"{args.heads} heads, {args.dtype}, on {jax.devices()[0].device_kind} "
            f"({jax.default_backend()}, {platform.processor() or platform.machine()}), "
            f"jax {jax.__version__}")
  print(header, pair_cost.note(), sep="\n", flush=True)
  writer = reporting.CsvWriter(args.out / "benchmark_layers.csv", FIELDS)
  rows = []
  for size, variant in itertools.product(args.sizes, args.variants):
    rows.append(row := measure(variant, size, args))
    writer.write(row)
    print(f"{variant:26s} {size:3d}×{size:<3d} time {row['time_ms']:>10} ms  "
          f"memory {row['peak_memory_mib']:>10} MiB  {row['status']}", flush=True)
  rows = pd.DataFrame(rows)
  text = markdown(rows, header)
  (args.out / "benchmark_layers.md").write_text(text)
  print(text)
  plot(rows, args.out / "benchmark_layers.png")
  print(f"wrote {args.out}/benchmark_layers.{{csv,md,png}}")
  return None if args.calibrate is None else calibrate([writer.path], args)


if __name__ == "__main__":
  main()
