"""Forward+backward time and memory of lambda layers against self-attention.

Runs each layer variant on square feature maps of several sizes and writes a
CSV, a markdown table and a plot. Memory is XLA's buffer assignment for the
compiled forward+backward step (arguments + outputs + temporaries − aliased),
which is the peak the step needs on any backend.

  python scripts/benchmark_layers.py                       # defaults, ~5 min on 2 CPU cores
  python scripts/benchmark_layers.py --sizes 14 28 --batch 32 --channels 256
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from benchmarking import pair_cost_note  # noqa: E402
from lambda_networks import ops  # noqa: E402
from lambda_networks.layers import LambdaLayer, MultiHeadSelfAttention  # noqa: E402

# name -> how to build the layer for a given map size.
VARIANTS = {
    "lambda_local_r23_auto": dict(receptive_field=23, method="auto"),
    "lambda_local_r23_einsum": dict(receptive_field=23, method="einsum"),
    "lambda_local_r23_conv": dict(receptive_field=23, method="conv"),
    "lambda_local_r23_row_conv": dict(receptive_field=23, method="row_conv"),
    "lambda_global_auto": dict(receptive_field="global", method="auto"),
    "lambda_global_einsum": dict(receptive_field="global", method="einsum"),
    "lambda_global_conv": dict(receptive_field="global", method="conv"),
    "lambda_global_row_conv": dict(receptive_field="global", method="row_conv"),
    "self_attention": None,
}


# Executions that take minutes per step on a CPU at large sizes (a global
# table as a convolution kernel): skipped above this size unless --all.
SLOW_VARIANT_MAX_SIZE = {"lambda_global_conv": 28, "lambda_global_row_conv": 28}


def build(variant: str, size: int, channels: int, heads: int, dtype) -> nnx.Module:
  options = VARIANTS[variant]
  rngs = nnx.Rngs(0)
  if options is None:
    return MultiHeadSelfAttention(channels, channels, heads=heads, dtype=dtype, rngs=rngs)
  return LambdaLayer(channels, channels, heads=heads, input_size=size, dtype=dtype,
                     rngs=rngs, **options)


def executed_method(layer: nnx.Module, size: int) -> str:
  """The position-term execution a layer runs at this size ('auto' resolved)."""
  if not isinstance(layer, LambdaLayer):
    return "attention"
  if layer.method != "auto":
    return layer.method
  table = tuple(min(width, 2 * size - 1) for width in layer.table_shape)
  return ops.choose_method((size, size), table)


def compile_step(layer: nnx.Module, inputs: jax.Array):
  """Compiles loss + gradients w.r.t. parameters and inputs."""
  graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

  def loss(params, rest, inputs):
    model = nnx.merge(graphdef, params, rest, copy=True)  # training mode: batch statistics
    value = jnp.mean(jnp.square(model(inputs).astype(jnp.float32)))
    return value, nnx.state(model, nnx.Not(nnx.Param))

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True))
  compiled = step.lower(params, rest, inputs).compile()
  return compiled, (params, rest, inputs)


def peak_bytes(compiled) -> int | None:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
          + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)


def measure(variant, size, args) -> dict:
  row = dict(variant=variant, size=size, positions=size * size, batch=args.batch,
             channels=args.channels, dtype=args.dtype, backend=jax.default_backend(),
             device=jax.devices()[0].device_kind)
  if not args.all and size > SLOW_VARIANT_MAX_SIZE.get(variant, size):
    return row | dict(method="", peak_memory_mb=float("nan"), timed_steps=0,
                      time_ms=float("nan"), status="skipped (slow; --all runs it)")
  dtype = jnp.dtype(args.dtype)
  try:
    layer = build(variant, size, args.channels, args.heads, dtype)
    inputs = jax.random.normal(jax.random.key(0), (args.batch, size, size, args.channels),
                               dtype)
    row["method"] = executed_method(layer, size)
    compiled, step_args = compile_step(layer, inputs)
    row["peak_memory_mb"] = round((peak_bytes(compiled) or float("nan")) / 2**20, 2)
    start = time.perf_counter()
    jax.block_until_ready(compiled(*step_args))  # warm-up (compiled already)
    times = [time.perf_counter() - start]
    if times[0] < args.slow_seconds:  # a very slow step is timed once only
      times = []
      for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*step_args))
        times.append(time.perf_counter() - start)
    row["timed_steps"] = len(times)
    row["time_ms"] = round(1000 * statistics.median(times), 3)
    row["status"] = "ok"
  except Exception as error:  # an out-of-memory is a result, not a crash
    row.update(time_ms=float("nan"), timed_steps=0, peak_memory_mb=row.get("peak_memory_mb", float("nan")),
               status="oom" if "memory" in str(error).lower() else f"error: {error}"[:120])
  return row


def write_markdown(rows, path: pathlib.Path, header: str) -> str:
  sizes = sorted({r["size"] for r in rows})
  variants = list(dict.fromkeys(r["variant"] for r in rows))
  lookup = {(r["variant"], r["size"]): r for r in rows}
  lines = [header, ""]
  for metric, unit in (("time_ms", "ms, forward+backward"), ("peak_memory_mb", "MiB")):
    lines += [f"**{metric}** ({unit})", "",
              "| variant | " + " | ".join(f"{s}×{s}" for s in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    for variant in variants:
      cells = []
      for size in sizes:
        row = lookup.get((variant, size))
        ok = row is not None and row["status"] == "ok"
        cells.append(f"{row[metric]:g}" if ok else "—" if row is None else row["status"])
      lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if metric == "time_ms":
      lines.append("")
      for variant in (v for v in variants if v.endswith("_auto")):
        choices = [lookup.get((variant, size), {}).get("method", "?") for size in sizes]
        lines.append(f"- {variant} ran " + ", ".join(
            f"{choice} at {size}×{size}" for size, choice in zip(sizes, choices)))
    lines.append("")
  text = "\n".join(lines)
  path.write_text(text)
  return text


def plot(rows, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, axes = plt.subplots(1, 2, figsize=(11, 4))
  for variant in dict.fromkeys(r["variant"] for r in rows):
    points = [r for r in rows if r["variant"] == variant and r["status"] == "ok"]
    xs = [r["positions"] for r in points]
    axes[0].plot(xs, [r["time_ms"] for r in points], marker="o", label=variant)
    axes[1].plot(xs, [r["peak_memory_mb"] for r in points], marker="o", label=variant)
  for axis, label in zip(axes, ("forward+backward time (ms)", "peak memory (MiB)")):
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("positions (H·W)")
    axis.set_ylabel(label)
    axis.grid(True, which="both", alpha=0.3)
  axes[0].legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=120)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[14, 28, 56, 64])
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--channels", type=int, default=64)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--repeats", type=int, default=5,
                      help="timed steps per point (median reported)")
  parser.add_argument("--slow-seconds", type=float, default=3.0,
                      help="a step slower than this is timed once, not --repeats times")
  parser.add_argument("--all", action="store_true",
                      help=f"also run {sorted(SLOW_VARIANT_MAX_SIZE)} above "
                           f"{max(SLOW_VARIANT_MAX_SIZE.values())}×{max(SLOW_VARIANT_MAX_SIZE.values())}")
  parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/layers"))
  args = parser.parse_args()
  args.out.mkdir(parents=True, exist_ok=True)

  header = (f"Lambda layer vs self-attention, batch {args.batch}, {args.channels} channels, "
            f"{args.heads} heads, {args.dtype}, on {jax.devices()[0].device_kind} "
            f"({jax.default_backend()}, {platform.processor() or platform.machine()}), "
            f"jax {jax.__version__}")
  print(header, flush=True)
  print(pair_cost_note(), flush=True)
  rows = []
  for size in args.sizes:
    for variant in args.variants:
      row = measure(variant, size, args)
      rows.append(row)
      print(f"{variant:26s} {size:3d}×{size:<3d} time {row['time_ms']:>10} ms  "
            f"memory {row['peak_memory_mb']:>10} MiB  {row['status']}", flush=True)

  with open(args.out / "benchmark_layers.csv", "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
  print(write_markdown(rows, args.out / "benchmark_layers.md", header))
  plot(rows, args.out / "benchmark_layers.png")
  print(f"wrote {args.out}/benchmark_layers.{{csv,md,png}}")


if __name__ == "__main__":
  main()
