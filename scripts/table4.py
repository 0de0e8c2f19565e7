"""Table 4 of the paper: ResNet-50 at 224 with each spatial mixer, memory and speed.

Rows: the conv baseline and the paper's Table 4 (docs/paper_reference.csv) —
global, axial and 7×7 local self-attention; the lambda layer, with k = 8,
with shared embeddings, and the 7×7 lambda convolution. Columns: the
attention maps' / position embeddings' analytic memory (float32 GiB) in the
paper's convention (at its batch 128, each layer at its block's output
resolution; reproduces its 120 / 4.8 / 1.9 / 0.95 / 0.63 GB) and as this
implementation runs it (lambda_networks/benchmarks/memory.py), then XLA's
inference peak memory and the throughput at `--batch`. A step that needs
more memory than the device has is reported as out of memory, not run.

  python -m scripts.table4                           # paper setting, batch 128
  python -m scripts.table4 --batch 2 --out docs/table4_cpu   # small CPU run
  python -m scripts.table4 --analytic-only           # no compilation (seconds)
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from lambda_networks import models
from lambda_networks import paper
from lambda_networks.benchmarks import memory
from scripts import benchmarking
from lambda_networks.benchmarks import reporting

REFERENCE = paper.REFERENCE
BASELINE = ("conv (baseline)", "resnet50", "")  # Hybrids table, C C C C.
PAPER_BATCH = 128
BYTES_PER_FLOAT = 4  # float32 maps, as the paper's numbers assume.
FIELDS = (
    "layer", "model", "overrides", "image_size", "batch_size", "status",
    "paper_memory_gb", "analytic_paper_convention_gib", "analytic_as_run_gib",
    "peak_memory_mib", "examples_per_s", "step_time_ms", "compile_s",
    "paper_inference_examples_per_s", "paper_top1", "params",
    "gflops_per_example", "achieved_tflops", "peak_tflops", "mfu", "backend",
    "device_kind", "host_cpu", "jax", "flax", "git_commit", "date")


def reference_rows(path: pathlib.Path = REFERENCE) -> list[dict[str, str]]:
  """The conv baseline, then the paper's Table 4 rows, from the data file."""
  rows = paper.rows(path)
  baseline = [dict(r, row=BASELINE[0]) for r in rows
              if r["table"] == "hybrids" and r["model"] == BASELINE[1]
              and r["overrides"] == BASELINE[2]]
  return baseline + [r for r in rows if r["table"] == "table4"]


def table_row(reference: dict[str, str], args: argparse.Namespace,
              env: dict[str, Any], limit: int | None) -> dict[str, Any]:
  name = reference["model"]
  overrides = benchmarking.parse_overrides(reference["overrides"].split())
  if args.dtype != "float32":
    overrides["dtype"] = args.dtype
  row: dict[str, Any] = dict(
      layer=reference["row"], model=name,
      overrides=benchmarking.format_overrides(overrides),
      image_size=args.image_size, batch_size=args.batch,
      paper_memory_gb=reference["memory_gb"] or None,
      paper_inference_examples_per_s=(
          reference["inference_examples_per_s"] or reference["note"] or None),
      paper_top1=reference["top1"] or None,
      **{key: env[key] for key in FIELDS if key in env})
  config = models.get_config(name, image_size=args.image_size, **overrides)
  for column, batch, convention in (
      ("analytic_paper_convention_gib", args.analytic_batch, "paper"),
      ("analytic_as_run_gib", args.batch, "as_run")):
    floats = memory.analytic_floats(
        config, batch, convention=convention,
        shared_embeddings=convention == "paper" and config.share_lambda_embeddings)
    row[column] = round(floats * BYTES_PER_FLOAT / benchmarking.GIB, 3)
  if args.analytic_only:
    row["status"] = "analytic only"
    return row
  measured = benchmarking.measure(
      name, overrides, args, limit, image_size=args.image_size,
      batch_size=args.batch, mode="inference")
  return row | {key: measured.get(key) for key in (
      "status", "peak_memory_mib", "examples_per_s", "step_time_ms", "compile_s",
      "params", "gflops_per_example", "achieved_tflops", "peak_tflops", "mfu")}


def write_markdown(rows: list[dict[str, Any]], path: pathlib.Path,
                   args: argparse.Namespace, env: dict[str, Any]) -> str:
  header = [
      "layer", "paper memory (GB)",
      f"analytic, paper convention (GiB, batch {args.analytic_batch})",
      f"analytic, as run here (GiB, batch {args.batch})",
      f"XLA peak memory, inference (MiB, batch {args.batch})",
      f"throughput here (ex/s, batch {args.batch})",
      "GFLOPs/example (XLA)", "MFU",
      "paper throughput (ex/s, 8 TPUv3, batch 128)", "paper top-1", "status"]
  columns = ("layer", "paper_memory_gb", "analytic_paper_convention_gib",
             "analytic_as_run_gib", "peak_memory_mib", "examples_per_s",
             "gflops_per_example", "mfu", "paper_inference_examples_per_s",
             "paper_top1", "status")
  body = [[r.get(key) for key in columns] for r in rows]
  measured_on = (f"{env['device_count']} × {env['device_kind']} "
                 f"({env['backend']}; host {env['host_cpu']}, "
                 f"{env['host_cpus']} CPUs), jax {env['jax']}, flax "
                 f"{env['flax']}, commit {env['git_commit']}, {env['date']}")
  if args.analytic_only:
    how = "Analytic memory only: nothing compiled or run."
  elif args.compile_only:
    how = (f"Inference, {args.dtype}, batch {args.batch}: compiled only (XLA's "
           "memory plan), not run, so no throughput.")
  else:
    how = (f"Inference, {args.dtype}, batch {args.batch}, median of up to "
           f"{args.repeats} timed steps after {args.warmup} warm-up step(s).")
  text = "\n".join([
      f"# Table 4: ResNet-50 at {args.image_size} with each spatial mixer",
      "",
      f"Measured on {measured_on}. {how} Generated by "
      f"`{reporting.command_line('table4', args.argv)}`.",
      "",
      reporting.markdown_table(header, body),
      "",
      "- **paper** columns: paper-reported (PAPER.md §2, [likely]); the "
      "paper measured on 8 TPUv3 cores at batch 128.",
      "- **analytic, paper convention**: the paper's space complexities "
      "(attention b·h·n², axial b·h·n·(H+W), local b·h·n·w², lambda k·u·n², "
      "lambda convolution k·u·n·r², shared embeddings one k·u·n² per stage) "
      "summed over the layers, float32, each layer at its block's output "
      "resolution; computed, not measured.",
      "- **analytic, as run here**: what this implementation materialises "
      "(attention maps; lambda position lambdas b·n·k·v plus gathered "
      "embeddings k·u·n² when the einsum execution is chosen), each mixer at "
      "the resolution it runs (full resolution in strided blocks); computed.",
      "- **XLA peak memory**: XLA's buffer assignment of the compiled "
      "forward pass (parameters, activations, temporaries), per device. "
      "Inference frees each layer's maps before the next layer, so this can "
      "be far below the analytic sums, which count every layer's maps at once "
      "(as a training step keeps them for the backward pass).",
      "- **GFLOPs/example**: XLA's cost analysis of the compiled inference "
      "step per image (2 FLOPs per multiply-add); **MFU**: achieved FLOP/s "
      "over the devices' dense bf16 peak (lambda_networks/benchmarks/peak_flops.py; none for "
      "CPUs).",
      "- A status `oom: …` means XLA's plan needs more memory than the device "
      "has; the step was not run.",
      ""])
  path.write_text(text)
  return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  add = parser.add_argument
  add("--batch", type=int, default=PAPER_BATCH,
      help="measured inference batch (split over the devices)")
  add("--analytic-batch", type=int, default=PAPER_BATCH,
      help="batch of the paper-convention analytic column")
  add("--image-size", type=int, default=224)
  add("--rows", nargs="+", help="only these layer names (default: all)")
  benchmarking.add_step_flags(parser, warmup=1, repeats=3)
  add("--analytic-only", action="store_true",
      help="analytic memory only: nothing compiled or run")
  add("--reference", type=pathlib.Path, default=REFERENCE)
  add("--out", type=pathlib.Path, default=pathlib.Path("results/table4/table4"),
      help="output prefix: writes PREFIX.csv and PREFIX.md")
  return reporting.parse(parser, argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  references = reference_rows(args.reference)
  if args.rows:
    unknown = sorted(set(args.rows) - {r["row"] for r in references})
    if unknown:
      raise SystemExit(f"unknown --rows {unknown}; choose from "
                       f"{[r['row'] for r in references]}.")
    references = [r for r in references if r["row"] in args.rows]
  limit = benchmarking.memory_limit(args)
  env = benchmarking.environment()
  args.out.parent.mkdir(parents=True, exist_ok=True)
  writer = reporting.CsvWriter(args.out.with_suffix(".csv"), FIELDS)
  rows = []
  for reference in references:
    row = table_row(reference, args, env, limit)
    writer.write(row)
    rows.append(row)
    print(f"{row['layer']:34s} paper {row['paper_memory_gb'] or '—':>5} GB  "
          f"analytic {row['analytic_paper_convention_gib']:>8} GiB  "
          f"as run {row.get('analytic_as_run_gib') or '—':>8} GiB  "
          f"XLA {row.get('peak_memory_mib') or '—':>9} MiB  "
          f"{row.get('examples_per_s') or '—':>9} ex/s  {row['status']}",
          flush=True)
  print(write_markdown(rows, args.out.with_suffix(".md"), args, env))
  print(f"wrote {args.out}.csv and {args.out}.md")
  return rows


if __name__ == "__main__":
  main()
