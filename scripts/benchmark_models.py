"""Model benchmarks: step throughput, the paper's Table 4, the model table.

Each command writes OUT.csv (table4 and model-table OUT.md too); `python -m
scripts.benchmark_models COMMAND --help` says what it measures and how.

  python -m scripts.benchmark_models throughput --models resnet50 --batch-sizes 8
  python -m scripts.benchmark_models table4 --analytic-only --out results/t4
  python -m scripts.benchmark_models model-table   # docs/model_table.{md,csv}
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import pathlib
from typing import Any, Callable, Iterable, Iterator, Sequence

from lambda_networks import models
from lambda_networks import paper
from lambda_networks.benchmarks import environment
from lambda_networks.benchmarks import memory
from lambda_networks.benchmarks import pair_cost
from lambda_networks.benchmarks import reporting
from lambda_networks.benchmarks import compiled_steps

THROUGHPUT_FIELDS = (
    "model", "overrides", "image_size", "batch_size", "mode", "dtype",
    "num_devices", "status", "params", "compile_s", "peak_memory_mib",
    "memory_limit_mib", "timed_steps", "step_time_ms", "step_time_min_ms",
    "step_time_max_ms", "examples_per_s", "gflops_per_example",
    "achieved_tflops", "peak_tflops", "mfu", "backend", "device_kind",
    "device_count", "host_cpu", "host_cpus", "jax", "jaxlib", "flax", "optax",
    "python", "git_commit", "date")
TABLE4_FIELDS = (
    "layer", "model", "overrides", "image_size", "batch_size", "status",
    "paper_memory_gb", "analytic_paper_convention_gib", "analytic_as_run_gib",
    "peak_memory_mib", "examples_per_s", "step_time_ms", "compile_s",
    "paper_inference_examples_per_s", "paper_top1", "params",
    "gflops_per_example", "achieved_tflops", "peak_tflops", "mfu", "backend",
    "device_kind", "host_cpu", "jax", "flax", "git_commit", "date")
MODEL_TABLE_FIELDS = ("model", "overrides", "image_size", "params_m",
                      "gflops_xla", "paper_params", "paper_top1", "paper_source")
TABLE4_NOTES = """\
- **paper** columns: paper-reported (docs/paper.md#table-4, likely); the paper \
measured on 8 TPUv3 cores at batch 128.
- **analytic, paper convention**: the paper's space complexities (attention \
b·h·n², axial b·h·n·(H+W), local b·h·n·w², lambda k·u·n², lambda convolution \
k·u·n·r², shared embeddings one k·u·n² per stage) summed over the layers, \
float32, each layer at its block's output resolution; computed, not measured.
- **analytic, as run here**: what this implementation materialises (attention \
maps; lambda position lambdas b·n·k·v plus gathered embeddings k·u·n² when \
the einsum execution is chosen), each mixer at the resolution it runs (full \
resolution in strided blocks); computed.
- **XLA peak memory**: XLA's buffer assignment of the compiled forward pass \
(parameters, activations, temporaries), per device. Inference frees each \
layer's maps before the next layer, so this can be far below the analytic \
sums, which count every layer's maps at once (as a training step keeps them \
for the backward pass).
- **GFLOPs/example**: XLA's cost analysis of the compiled inference step per \
image (2 FLOPs per multiply-add); **MFU**: achieved FLOP/s over the devices' \
dense bf16 peak (lambda_networks/benchmarks/peak_flops.py; none for CPUs).
- A status `oom: …` means XLA's plan needs more memory than the device has; \
the step was not run.
"""
MODEL_TABLE_NOTES = """\
- **params**: trainable parameters (`nnx.Param`; batch-norm running \
statistics excluded), counted on abstract models (`nnx.eval_shape`).
- **GFLOPs (XLA)**: XLA's cost analysis of the lowered inference forward pass \
for one image (not compiled, not run). XLA counts 2 FLOPs per multiply-add \
and includes element-wise work, so papers that quote multiply-adds as FLOPs \
(e.g. ResNet-50 ≈ 4.1B) show about half. Lambda layers count the execution \
`method='auto'` picks for each layer's map size (`ops.choose_method`): the \
row convolution it picks on larger maps does more multiply-adds than the 2-D \
lambda convolution, in exchange for a far faster kernel.
- **paper**: parameters and ImageNet top-1 from docs/paper_reference.csv \
(Tables 3–4, the hybrid table, the speed–accuracy table, and the EfficientNet \
reference points). Blank: the paper gives no number. "(quoted)": a number the \
paper quotes from another paper's model and training setup, not a result of \
its own recipe.
"""
# Model-table variants that are overrides of a registry model, at 224.
MODEL_TABLE_VARIANTS = (
    ("resnet50_lambda", {"intra_depth": 4, "receptive_field": 7}),
    ("resnet50", {"stage_mixers": "CCLL"}),
)


def parse_overrides(pairs: Iterable[tuple[str, str]], dtype: str
                    ) -> dict[str, Any]:
  """[('query_depth', '8')], 'bfloat16' -> {'query_depth': 8, 'dtype': ...}."""
  overrides = {field: reporting.parse_value(text) for field, text in pairs}
  if dtype != "float32":  # The models' default, not written as an override.
    overrides.setdefault("dtype", dtype)
  return overrides


def format_overrides(overrides: dict[str, Any]) -> str:
  return " ".join(f"{k}={reporting.format_value(v)}" for k, v in overrides.items())


def image_sizes_for(name: str, sizes: list[str]) -> list[int]:
  """'paper' expands to the sizes the paper reports the model at."""
  return list(dict.fromkeys(itertools.chain.from_iterable(
      models.get_spec(name).paper_image_sizes if size == "paper" else [int(size)]
      for size in sizes)))


def measure(args: argparse.Namespace, name: str, overrides: dict[str, Any],
            **point: Any) -> dict[str, Any]:
  """The point (image size, batch size, mode) and its compiled step's row."""
  return dict(model=name, overrides=format_overrides(overrides), **point) | (
      compiled_steps.measure(
          name, overrides, **point, memory_limit=args.memory_limit,
          num_classes=args.num_classes, num_devices=args.num_devices,
          compile_only=args.compile_only, warmup=args.warmup,
          repeats=args.repeats, max_seconds=args.max_seconds))


def throughput(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
  """Training and inference throughput, step time and peak memory of models.

  For every model × image size × batch size × mode, the step (train: forward,
  cross-entropy, backward, the trainer's SGD-momentum + weight-decay update;
  inference: forward) is compiled for synthetic data, the batch split over
  the devices, and timed: the median of `--repeats` steps after `--warmup`.
  Rows hold XLA's peak memory per device (a step that does not fit is `oom`,
  not run), FLOPs per example (XLA, 2 per multiply-add), achieved TFLOP/s,
  the MFU where the device's peak is known (benchmarks/peak_flops.py), and
  the device and software versions.

  python -m scripts.benchmark_models throughput --models lambda_resnet50 \\
      efficientnet_b0 --image-sizes paper --batch-sizes 8
  python -m scripts.benchmark_models throughput --models resnet26 \\
      --image-sizes 32 --batch-sizes 2 --override width_multiplier=0.0625  # tiny
  """
  overrides = parse_overrides(args.override, args.dtype)
  points = [(name, size, batch, mode) for name in args.models
            for size in image_sizes_for(name, args.image_sizes)
            for batch in args.batch_sizes for mode in args.modes]
  for name, size, _, _ in points:  # Clear errors for bad overrides, up front.
    models.get_config(name, image_size=size, **overrides)
  for name, size, batch, mode in points:
    yield measure(args, name, overrides, image_size=size, batch_size=batch,
                  mode=mode) | dict(dtype=args.dtype)


def table4_references() -> list[dict[str, str]]:
  """The conv baseline (the hybrids table's C C C C), then the Table 4 rows."""
  return [dict(r, row="conv (baseline)") for r in paper.rows()
          if (r["table"], r["model"], r["overrides"]) == ("hybrids", "resnet50", "")
          ] + [r for r in paper.rows() if r["table"] == "table4"]


def table4(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
  """The paper's Table 4: ResNet-50 with each spatial mixer, memory and speed.

  Rows: the conv baseline and the paper's Table 4 (docs/paper_reference.csv).
  Columns: the attention maps' / position embeddings' analytic memory
  (float32 GiB, benchmarks/memory.py) in the paper's convention (reproduces
  its 120 / 4.8 / 1.9 / 0.95 / 0.63 GB at batch 128) and as this code runs
  it, then XLA's inference peak memory and the throughput at `--batch` (a
  step that needs more memory than the device has is `oom`, not run).

  python -m scripts.benchmark_models table4            # paper setting, batch 128
  python -m scripts.benchmark_models table4 --batch 2 --out docs/table4_cpu
  python -m scripts.benchmark_models table4 --analytic-only   # seconds
  """
  for reference in table4_references():
    if args.rows and reference["row"] not in args.rows:
      continue
    name = reference["model"]
    overrides = parse_overrides(
        map(reporting.field_value, reference["overrides"].split()), args.dtype)
    config = models.get_config(name, image_size=args.image_size, **overrides)
    analytic = {
        column: round(memory.analytic_floats(
            config, batch, convention=convention, shared_embeddings=(
                convention == "paper" and config.share_lambda_embeddings))
            * 4 / compiled_steps.GIB, 3)  # float32 maps, as the paper's.
        for column, batch, convention in (
            ("analytic_paper_convention_gib", args.analytic_batch, "paper"),
            ("analytic_as_run_gib", args.batch, "as_run"))}
    row = (dict(model=name, overrides=format_overrides(overrides),
                image_size=args.image_size, batch_size=args.batch,
                status="analytic only") if args.analytic_only else
           measure(args, name, overrides, image_size=args.image_size,
                   batch_size=args.batch, mode="inference"))
    yield row | analytic | dict(
        layer=reference["row"], paper_memory_gb=reference["memory_gb"] or None,
        paper_inference_examples_per_s=(reference["inference_examples_per_s"]
                                        or reference["note"] or None),
        paper_top1=reference["top1"] or None)


def table4_markdown(rows: list[dict[str, Any]], args: argparse.Namespace,
                    env: dict[str, Any]) -> str:
  columns = {
      "layer": "layer", "paper_memory_gb": "paper memory (GB)",
      "analytic_paper_convention_gib":
          f"analytic, paper convention (GiB, batch {args.analytic_batch})",
      "analytic_as_run_gib": f"analytic, as run here (GiB, batch {args.batch})",
      "peak_memory_mib": f"XLA peak memory, inference (MiB, batch {args.batch})",
      "examples_per_s": f"throughput here (ex/s, batch {args.batch})",
      "gflops_per_example": "GFLOPs/example (XLA)", "mfu": "MFU",
      "paper_inference_examples_per_s":
          "paper throughput (ex/s, 8 TPUv3, batch 128)",
      "paper_top1": "paper top-1", "status": "status"}
  if args.analytic_only:
    how = "Analytic memory only: nothing compiled or run."
  elif args.compile_only:
    how = (f"Inference, {args.dtype}, batch {args.batch}: compiled only (XLA's "
           "memory plan), not run, so no throughput.")
  else:
    how = (f"Inference, {args.dtype}, batch {args.batch}, median of up to "
           f"{args.repeats} timed steps after {args.warmup} warm-up step(s).")
  return "\n".join([
      f"# Table 4: ResNet-50 at {args.image_size} with each spatial mixer",
      "",
      f"Measured on {environment.summary(env)}. {how} Generated by "
      f"`{args.command_line}`.",
      "",
      reporting.markdown_table(list(columns.values()),
                               [[r.get(key) for key in columns] for r in rows]),
      "",
      TABLE4_NOTES])


def model_table(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
  """Parameters and GFLOPs of every registry model at its paper image size.

  Compiles and runs nothing: parameters of `nnx.eval_shape` models, FLOPs
  from XLA's cost analysis of the lowered inference pass for one image (2
  per multiply-add). The paper's numbers (`lambda_networks.paper`) beside.

  python -m scripts.benchmark_models model-table     # all models (minutes)
  python -m scripts.benchmark_models model-table --models resnet50 resnet26
  """
  reference = paper.model_numbers()
  for name in models.available_models():
    if args.models and name not in args.models:
      continue
    sizes = models.get_spec(name).paper_image_sizes
    for overrides, size in [({}, s) for s in sizes] + [
        (o, 224) for n, o in MODEL_TABLE_VARIANTS if n == name]:
      step = compiled_steps.build_step(
          name, overrides, image_size=size, batch_size=1, mode="inference",
          num_devices=1, lower_only=True)
      text = format_overrides(overrides)
      numbers = reference.get((name, text, size), dict(params="", top1="",
                                                        source=""))
      yield dict(model=name, overrides=text, image_size=size,
                 params_m=f"{step.num_params / 1e6:.2f}",
                 gflops_xla=f"{step.flops / 1e9:.2f}",
                 paper_params=numbers["params"], paper_top1=numbers["top1"],
                 paper_source=numbers["source"])


def model_table_markdown(rows: list[dict[str, Any]], args: argparse.Namespace,
                         env: dict[str, Any]) -> str:
  del args, env  # The table says nothing of the machine.
  return "\n".join([
      "# Model table",
      "",
      "Every registry model at the image size(s) the paper reports it at, for "
      "1000 classes. Generated by `python -m scripts.benchmark_models "
      "model-table`; do not edit.",
      "",
      MODEL_TABLE_NOTES,
      reporting.markdown_table(
          ["model", "overrides", "image", "params", "GFLOPs (XLA)",
           "paper params", "paper top-1", "source"],
          [[r["model"], r["overrides"] or "—", r["image_size"],
            f"{r['params_m']}M", r["gflops_xla"], r["paper_params"],
            r["paper_top1"], r["paper_source"]] for r in rows], empty=""),
      ""])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  commands = parser.add_subparsers(dest="command", required=True)

  def command(rows: Callable[[argparse.Namespace], Iterator[dict[str, Any]]],
              fields: Sequence[str], progress: Sequence[str],
              out: str | pathlib.Path, markdown: Callable[..., str] | None = None,
              *, timing: tuple[int, int] | None = None) -> Callable[..., Any]:
    """A subcommand named after `rows`, whose docstring is its help."""
    doc = inspect.getdoc(rows)
    sub = reporting.parser(doc, commands.add_parser, help=doc.split("\n")[0],
                           name=rows.__name__.replace("_", "-"))
    sub.set_defaults(table_rows=rows, fields=fields, progress=progress,
                     markdown=markdown)
    add = sub.add_argument
    add("--out", type=pathlib.Path, default=pathlib.Path(out),
        help="output: OUT.csv" + (" and OUT.md" if markdown else ""))
    if timing:  # The flags of every measured step.
      add("--dtype", default="float32", help="the models' dtype, e.g. bfloat16")
      add("--num-devices", type=int, help="devices to split the batch over "
          "(default: all local)")
      add("--num-classes", type=int, default=1000)
      add("--warmup", type=int, default=timing[0], help="untimed steps")
      add("--repeats", type=int, default=timing[1],
          help="timed steps (the median is reported)")
      add("--max-seconds", type=float, default=60.0,
          help="stop timing a point after this long (≥ 1 timed step)")
      add("--memory-limit-gib", type=float, help="report steps needing more as "
          "out of memory without running them (default: the device's memory; "
          "on CPU the available RAM)")
      add("--compile-only", action="store_true",
          help="compile and read XLA's memory plan, do not run")
    return add

  add = command(throughput, THROUGHPUT_FIELDS, THROUGHPUT_FIELDS[:5] + (
      "step_time_ms", "examples_per_s", "peak_memory_mib", "mfu", "status"),
                "results/benchmarks/models.csv", timing=(2, 5))
  add("--models", nargs="+", required=True,
      help="registry names (lambda_networks.models.available_models())")
  add("--image-sizes", nargs="+", default=["paper"],
      help="ints, or 'paper' for the sizes the paper uses per model")
  add("--batch-sizes", nargs="+", type=int, default=[8],
      help="global batch sizes (split over the devices)")
  add("--modes", nargs="+", default=list(compiled_steps.MODES),
      choices=compiled_steps.MODES)
  add("--override", action="append", default=[], metavar="FIELD=VALUE",
      type=reporting.field_value,
      help="model config override for every model (repeatable), e.g. "
      "width_multiplier=0.0625 or stage_depths=(1,1,1,1)")
  add = command(table4, TABLE4_FIELDS, ("layer",) + TABLE4_FIELDS[5:11],
                "results/table4/table4", table4_markdown, timing=(1, 3))
  add("--batch", type=int, default=128,
      help="measured inference batch (split over the devices)")
  add("--analytic-batch", type=int, default=128,
      help="batch of the paper-convention analytic column")
  add("--image-size", type=int, default=224)
  add("--rows", nargs="+", metavar="LAYER", help="only these layers (default: "
      "all)", choices=[r["row"] for r in table4_references()])
  add("--analytic-only", action="store_true",
      help="analytic memory only: nothing compiled or run")
  add = command(model_table, MODEL_TABLE_FIELDS, MODEL_TABLE_FIELDS[:5],
                reporting.REPO_ROOT / "docs/model_table", model_table_markdown)
  add("--models", nargs="*", help="registry names (default: all)")
  args = reporting.parse(parser, argv)
  for name in getattr(args, "models", None) or ():
    models.get_spec(name)  # A clear error for unknown names, before any work.
  args.command_line = reporting.command_line("benchmark_models", args.argv)
  if "memory_limit_gib" in args:  # A measuring command: one limit for all.
    args.memory_limit = (
        compiled_steps.device_memory_bytes() if args.memory_limit_gib is None
        else int(args.memory_limit_gib * compiled_steps.GIB))
  return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  args = parse_args(argv)
  env = environment.describe()
  print(environment.summary(env), pair_cost.note(), sep="\n",
        flush=True)
  writer, rows = None, []
  for row in args.table_rows(args):
    writer = writer or reporting.CsvWriter(args.out.with_suffix(".csv"),
                                           args.fields)
    rows.append(dict.fromkeys(args.fields) | env | row)
    writer.write(rows[-1])
    print("  ".join(f"{key} {rows[-1][key]}" for key in args.progress
                    if rows[-1][key] not in (None, "")), flush=True)
  if args.markdown:
    text = args.markdown(rows, args, env)
    args.out.with_suffix(".md").write_text(text)
    print(text)
  print(f"wrote {args.out.with_suffix('.csv')}")
  return rows


if __name__ == "__main__":
  main()
