"""Training-step time and memory on long sequences: causal lambda vs attention.

One pre-norm LM block (`models/lm.py`: norm, mixer, projection, MLP), or
with `--scope model` a whole `lambda_lm_tiny`-sized model with its embedding
and head, forward+backward at batch 1 over 1k…64k bytes, with the mixer a
causal lambda layer with a local table (r = 63), one with a "global" table
(every offset of the context), or causal attention
(`jax.nn.dot_product_attention`, RoPE). Memory is XLA's buffer assignment
of the compiled step (arguments + outputs + temporaries − aliased); a step
whose plan exceeds the memory free on the device is reported as not fitting
and not run. Writes CSV, markdown and a plot.

  python -m scripts.benchmark_sequences                       # block, 1k…64k
  python -m scripts.benchmark_sequences --scope model --lengths 1024 4096
  python -m scripts.benchmark_sequences --out docs --name sequences_cpu
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import statistics

import jax
import jax.numpy as jnp
import pandas as pd
from flax import nnx

from lambda_networks import ops
from lambda_networks.benchmarks import reporting
from lambda_networks.benchmarks import compiled_steps
from lambda_networks.models import lm

# name -> LanguageModelConfig fields.
VARIANTS = {
    "lambda_local_r63": dict(mixer="lambda", receptive_field=63),
    "lambda_global": dict(mixer="lambda", receptive_field="global"),
    "attention": dict(mixer="attention", receptive_field=None),
}
FIELDS = ("scope", "variant", "length", "width", "heads", "dtype", "backend",
          "device", "method", "parameters", "peak_memory_mib", "timed_steps",
          "time_ms", "status")
# Variants whose work grows as length² (the global table's convolution or
# einsum, attention's logits): timed only up to these lengths unless
# --time-all; their memory plan is reported at every length.
QUADRATIC_TIMED_UP_TO = {"lambda_global": 4096, "attention": 8192}
METRICS = {"time_ms": ("ms, forward+backward", "training-step time (ms)"),
           "peak_memory_mib": ("MiB, XLA plan", "peak memory (MiB)")}


def build(variant: str, length: int, args: argparse.Namespace):
  """The module and its input for one measurement."""
  config = lm.LanguageModelConfig(
      width=args.width, heads=args.heads, num_blocks=args.blocks,
      sequence_length=length, dtype=args.dtype, **VARIANTS[variant])
  rngs = nnx.Rngs(0)
  if args.scope == "block":
    module = lm.Block(config, rngs=rngs)
    inputs = jax.random.normal(jax.random.key(1), (1, length, args.width),
                               jnp.dtype(args.dtype))
  else:
    module = lm.LanguageModel(config, rngs=rngs)
    inputs = jax.random.randint(jax.random.key(1), (1, length), 0, lm.VOCAB_SIZE)
  return config, module, inputs


def compile_step(module: nnx.Module, inputs: jax.Array):
  """Compiles a loss and its gradients w.r.t. the parameters."""
  graphdef, params = nnx.split(module)

  def loss(params, inputs):
    out = nnx.merge(graphdef, params)(inputs).astype(jnp.float32)
    return jnp.mean(jnp.square(out))

  step = jax.jit(jax.value_and_grad(loss))
  return step.lower(params, inputs).compile(), (params, inputs)


def measure(variant: str, length: int, args: argparse.Namespace) -> dict:
  row = dict(scope=args.scope, variant=variant, length=length, width=args.width,
             heads=args.heads, dtype=args.dtype, backend=jax.default_backend(),
             device=jax.devices()[0].device_kind, method="", parameters=0,
             peak_memory_mib=float("nan"), timed_steps=0, time_ms=float("nan"))
  try:
    config, module, inputs = build(variant, length, args)
    row["parameters"] = sum(leaf.size for leaf in jax.tree.leaves(
        nnx.state(module, nnx.Param)))
    if config.mixer == "lambda":
      width = 2 * length - 1 if config.receptive_field == "global" else 63
      row["method"] = ops.resolved_method((length,), (width,))
    else:
      row["method"] = "dot_product_attention"
    compiled, step_args = compile_step(module, inputs)
    peak = compiled_steps.peak_bytes(compiled)
    row["peak_memory_mib"] = round((peak or float("nan")) / compiled_steps.MIB, 2)
    free = compiled_steps.device_memory_bytes()
    if peak and free and peak > free:
      return row | dict(
          status=f"does not fit ({peak / compiled_steps.GIB:.1f} GiB planned, "
                 f"{free / compiled_steps.GIB:.1f} GiB free)")
    if length > args.max_timed_length.get(variant, length):
      return row | dict(status="not timed (slow; --time-all times it)")
    times = compiled_steps.time_compiled(
        compiled, step_args, repeats=args.repeats, slow_seconds=args.slow_seconds)
  except Exception as error:  # pylint: disable=broad-except  # OOM is a result.
    return row | dict(status=compiled_steps.error_status(error))
  return row | dict(timed_steps=len(times), status="ok",
                    time_ms=round(1000 * statistics.median(times), 2))


def markdown(rows: pd.DataFrame, header: str) -> str:
  lines = [header, ""]
  for metric, (unit, _) in METRICS.items():
    values = rows[metric].map("{:g}".format).where(
        rows.status == "ok", rows.status)
    if metric == "peak_memory_mib":  # The plan is known even when not run.
      values = rows[metric].map("{:g}".format).where(
          rows[metric].notna(), rows.status)
    table = rows.assign(value=values).pivot(
        index="variant", columns="length", values="value").reindex(
            rows.variant.unique())
    lines += [f"**{metric}** ({unit})", "", reporting.markdown_table(
        ["variant", *(f"{length:,}" for length in table.columns)],
        table.reset_index().fillna("").values), ""]
  longest = []
  for variant, points in rows.groupby("variant", sort=False):
    fits = points[~points.status.str.startswith("does not fit")
                  & points.peak_memory_mib.notna()]
    longest.append(f"- {variant}: longest length that fits: "
                   f"{fits.length.max():,}" if len(fits) else f"- {variant}: none fits")
  return "\n".join(lines + longest) + "\n"


def plot(rows: pd.DataFrame, path: pathlib.Path) -> None:
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  figure = mpl_figure.Figure(figsize=(11, 4))
  axes = figure.subplots(1, 2)
  for axis, (metric, (_, label)) in zip(axes, METRICS.items()):
    for variant, points in rows.groupby("variant", sort=False):
      if metric == "time_ms":
        points = points[points.status == "ok"]
      axis.plot(points.length, points[metric], marker="o", label=variant)
    axis.set(xscale="log", yscale="log", xlabel="sequence length (bytes)",
             ylabel=label)
    axis.grid(True, which="both", alpha=0.3)
  axes[0].legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=120)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  add = parser.add_argument
  add("--scope", choices=("block", "model"), default="block")
  add("--lengths", type=int, nargs="+",
      default=[1024, 2048, 4096, 8192, 16384, 32768, 65536])
  add("--width", type=int, default=128)
  add("--heads", type=int, default=4)
  add("--blocks", type=int, default=2, help="blocks of the whole model (--scope model)")
  add("--dtype", default="float32")
  add("--repeats", type=int, default=3)
  add("--slow-seconds", type=float, default=5.0,
      help="a step slower than this is timed once")
  add("--time-all", action="store_true",
      help=f"also time above {QUADRATIC_TIMED_UP_TO} (quadratic work: minutes "
      "per step on a CPU)")
  add("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
  add("--out", type=pathlib.Path, default=pathlib.Path("results/sequences"))
  add("--name", default="benchmark_sequences", help="file name of the outputs")
  args = parser.parse_args(argv)
  args.max_timed_length = {} if args.time_all else QUADRATIC_TIMED_UP_TO
  return args


def main(argv: list[str] | None = None) -> pd.DataFrame:
  args = parse_args(argv)
  header = (f"One causal LM {args.scope} ({args.width} channels, {args.heads} heads"
            f"{f', {args.blocks} blocks' if args.scope == 'model' else ''}), "
            f"batch 1, forward+backward, {args.dtype}, on "
            f"{jax.devices()[0].device_kind} ({jax.default_backend()}, "
            f"{reporting.cpu_name() or platform.machine()}), jax {jax.__version__}, "
            f"commit {reporting.git_commit()}")
  print(header, flush=True)
  args.out.mkdir(parents=True, exist_ok=True)
  writer = reporting.CsvWriter(args.out / f"{args.name}.csv", FIELDS)
  rows = []
  for length in args.lengths:
    for variant in args.variants:
      rows.append(row := measure(variant, length, args))
      writer.write(row)
      print(f"{variant:18s} {length:6d}  time {row['time_ms']:>10} ms  memory "
            f"{row['peak_memory_mib']:>10} MiB  {row['status']}", flush=True)
  frame = pd.DataFrame(rows)
  text = markdown(frame, header)
  (args.out / f"{args.name}.md").write_text(text)
  print(text)
  plot(frame, args.out / f"{args.name}.png")
  print(f"wrote {args.out}/{args.name}.{{csv,md,png}}")
  return frame


if __name__ == "__main__":
  main()
