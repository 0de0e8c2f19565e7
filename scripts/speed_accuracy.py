"""Speed–accuracy: LambdaResNets against EfficientNets, as a table and a plot.

Joins benchmark CSVs (scripts/benchmark_models.py), the metrics JSONs that
eval.py writes (eval_<split>_step<N>.json) and the paper's reference numbers
(docs/paper_reference.csv, every one marked paper-reported) into

  PREFIX.md   the table, and the speed-up at equal accuracy;
  PREFIX.csv  the same rows;
  PREFIX.png  accuracy against training time per step: filled markers are
              accuracies measured here, hollow markers paper-reported ones.

Step times always come from the benchmark CSVs (measured); the paper gives
no per-model step times. The speed-up at equal accuracy ("3.2–4.4× faster
than EfficientNets" in the paper) is computed from whatever was measured: for
each LambdaResNet point, the EfficientNet step time at the same accuracy,
interpolated (log-linearly in time) between the two EfficientNets that
bracket it, divided by the LambdaResNet's step time.

Metrics JSONs need the model and image size: taken from the JSON's `model`
and `image_size` fields, from a sweep manifest (`--manifest`, see
scripts/sweep.py), or given after the path: `PATH#model=NAME,image_size=160`.
A workdir in place of a JSON means its newest eval_*.json.

  python scripts/speed_accuracy.py --benchmarks results/benchmarks/models.csv \\
      --metrics runs/l50_160#model=lambda_resnet50,image_size=160 \\
      --out docs/speed_accuracy_cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import re
import sys
from typing import Any, Iterable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import reporting  # noqa: E402  pylint: disable=g-import-not-at-top

REFERENCE = reporting.REPO_ROOT / "docs" / "paper_reference.csv"
FAMILIES = (("lambda_resnet", "LambdaResNet"), ("efficientnet", "EfficientNet"))
LAMBDA, EFFICIENT = "LambdaResNet", "EfficientNet"
FIELDS = (
    "model", "image_size", "family", "top1", "top1_source", "measured_top1",
    "paper_top1", "train_batch", "train_step_ms", "train_examples_per_s",
    "inference_examples_per_s", "device", "dtype", "paper_train_examples_per_s",
    "paper_hardware", "train_gflops_per_example", "train_mfu")


@dataclasses.dataclass
class Point:
  """One model at one image size, with where each number came from."""

  model: str
  image_size: int
  family: str
  measured_top1: float | None = None  # Percent.
  paper_top1: float | None = None
  train_batch: int | None = None
  train_step_ms: float | None = None
  train_examples_per_s: float | None = None
  inference_examples_per_s: float | None = None
  device: str | None = None
  dtype: str | None = None
  paper_train_examples_per_s: float | None = None
  paper_hardware: str | None = None
  train_gflops_per_example: float | None = None  # XLA cost analysis.
  train_mfu: float | None = None  # Over the device's bf16 peak.

  @property
  def top1(self) -> float | None:
    return self.measured_top1 if self.measured_top1 is not None else self.paper_top1

  @property
  def top1_source(self) -> str | None:
    if self.measured_top1 is not None:
      return "measured"
    return "paper-reported" if self.paper_top1 is not None else None

  @property
  def label(self) -> str:
    short = self.model.replace("lambda_resnet", "L").replace("efficientnet_", "")
    return f"{short.upper() if self.family == EFFICIENT else short}@{self.image_size}"

  def as_row(self) -> dict[str, Any]:
    row = dataclasses.asdict(self)
    row.update(top1=self.top1, top1_source=self.top1_source)
    return row


def family_of(model: str) -> str:
  for prefix, family in FAMILIES:
    if model.startswith(prefix):
      return family
  return "other"


def describe_device(row: dict[str, str]) -> str:
  """'NVIDIA H100 80GB HBM3 ×1' or, for CPUs, the host processor and cores."""
  if row.get("backend") == "cpu" and row.get("host_cpu"):
    return f"CPU {row['host_cpu']} ({row.get('host_cpus', '?')} cores)"
  count = row.get("num_devices") or row.get("device_count")
  return f"{row.get('device_kind')} ×{count}" if count else str(row.get("device_kind"))


def _number(text: Any) -> float | None:
  try:
    value = float(text)
  except (TypeError, ValueError):
    return None
  return None if math.isnan(value) else value


# ---------------------------------------------------------------- inputs


def load_reference(path: pathlib.Path) -> list[dict[str, str]]:
  return reporting.read_csv([path])


def paper_speedup_claim(reference: list[dict[str, str]]) -> str | None:
  for row in reference:
    if row["table"] == "claim" and "EfficientNets" in row["row"]:
      return row["value"]
  return None


def select_benchmarks(rows: list[dict[str, str]], *, dtype: str | None,
                      device: str | None, include_overrides: bool
                      ) -> dict[tuple[str, int, str], dict[str, str]]:
  """(model, size, mode) -> the measured row with the largest batch."""
  chosen: dict[tuple[str, int, str], dict[str, str]] = {}
  for row in rows:
    if row.get("status") != "ok" or _number(row.get("examples_per_s")) is None:
      continue
    if row.get("overrides") and not include_overrides:
      continue
    if dtype and row.get("dtype") != dtype:
      continue
    if device and device.lower() not in (row.get("device_kind") or "").lower():
      continue
    key = (row["model"], int(row["image_size"]), row["mode"])
    if key not in chosen or int(row["batch_size"]) >= int(chosen[key]["batch_size"]):
      chosen[key] = row
  return chosen


def parse_metrics_spec(spec: str) -> tuple[pathlib.Path, dict[str, Any]]:
  """'PATH#model=x,image_size=160' -> (PATH, {'model': 'x', 'image_size': 160})."""
  path, _, labels = spec.partition("#")
  given: dict[str, Any] = {}
  for item in filter(None, labels.split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in ("model", "image_size"):
      raise ValueError(f"metrics label {item!r} in {spec!r} must be "
                       "model=NAME or image_size=INT.")
    given[key] = int(value) if key == "image_size" else value
  return pathlib.Path(path), given


def newest_eval_json(workdir: pathlib.Path) -> pathlib.Path | None:
  """The eval_<split>_step<N>.json with the largest N (validation first)."""
  candidates = []
  for path in workdir.glob("eval_*_step*.json"):
    match = re.fullmatch(r"eval_(.+)_step(\d+)\.json", path.name)
    if match:
      candidates.append((int(match.group(2)), match.group(1) == "validation", path))
  if candidates:
    return max(candidates)[2]
  final = workdir / "final_metrics.json"
  return final if final.exists() else None


def load_metrics(specs: Iterable[str], manifests: Iterable[pathlib.Path]
                 ) -> dict[tuple[str, int], float]:
  """(model, image size) -> measured top-1 in percent."""
  entries: list[tuple[pathlib.Path, dict[str, Any]]] = [
      parse_metrics_spec(spec) for spec in specs]
  for manifest in manifests:
    for run in json.loads(pathlib.Path(manifest).read_text())["runs"]:
      given = {key: run[key] for key in ("model", "image_size")
               if run.get(key) is not None}
      entries.append((pathlib.Path(run["workdir"]), given))
  results: dict[tuple[str, int], float] = {}
  for path, given in entries:
    if path.is_dir():
      found = newest_eval_json(path)
      if found is None:
        print(f"note: no eval_*.json in {path}; skipped", file=sys.stderr)
        continue
      path = found
    data = json.loads(path.read_text())
    model = given.get("model") or data.get("model")
    size = given.get("image_size") or data.get("image_size")
    if not model or not size:
      raise ValueError(
          f"{path} does not say which model and image size it scores; add "
          f"them after the path: '{path}#model=lambda_resnet50,image_size=160' "
          "(or pass the sweep manifest with --manifest).")
    top1 = _number(data.get("top1"))
    if top1 is None:
      raise ValueError(f"{path} has no numeric 'top1' field.")
    results[(model, int(size))] = 100 * top1 if top1 <= 1 else top1
  return results


def join(benchmarks: dict[tuple[str, int, str], dict[str, str]],
         metrics: dict[tuple[str, int], float],
         reference: list[dict[str, str]], *, all_paper_points: bool
         ) -> list[Point]:
  """Points for every model/size that something measured or the paper has."""
  points: dict[tuple[str, int], Point] = {}

  def point(model: str, size: int) -> Point:
    key = (model, size)
    if key not in points:
      points[key] = Point(model, size, family_of(model))
    return points[key]

  for (model, size, mode), row in benchmarks.items():
    if family_of(model) == "other":
      continue
    p = point(model, size)
    p.device = describe_device(row)
    p.dtype = row.get("dtype") or p.dtype
    if mode == "train":
      p.train_batch = int(row["batch_size"])
      p.train_step_ms = _number(row["step_time_ms"])
      p.train_examples_per_s = _number(row["examples_per_s"])
      p.train_gflops_per_example = _number(row.get("gflops_per_example"))
      p.train_mfu = _number(row.get("mfu"))
    else:
      p.inference_examples_per_s = _number(row["examples_per_s"])
  for (model, size), top1 in metrics.items():
    point(model, size).measured_top1 = top1
  for row in reference:
    if row["table"] not in ("speed_accuracy", "efficientnet", "headline"):
      continue
    if not row["model"] or not row["image_size"]:
      continue
    key = (row["model"], int(row["image_size"]))
    if key not in points and not all_paper_points:
      continue
    p = point(*key)
    if row["table"] == "headline":
      p.paper_train_examples_per_s = _number(row["train_examples_per_s"])
      p.paper_hardware = row["hardware"]
    else:
      p.paper_top1 = _number(row["top1"])
  order = {LAMBDA: 0, EFFICIENT: 1}
  return sorted(points.values(),
                key=lambda p: (order.get(p.family, 2), p.model, p.image_size))


# ---------------------------------------------------------------- analysis


def step_seconds(p: Point, batch: int) -> float | None:
  """Measured training time of one step of `batch` examples.

  The measured median step time when it was measured at `batch`, else
  scaled linearly from the measured throughput.
  """
  if p.train_step_ms and p.train_batch == batch:
    return p.train_step_ms / 1000
  if not p.train_examples_per_s:
    return None
  return batch / p.train_examples_per_s


def speedups(points: list[Point], batch: int) -> list[dict[str, Any]]:
  """LambdaResNet step time vs EfficientNet step time at equal accuracy."""
  curve = sorted((p.top1, step_seconds(p, batch), p) for p in points
                 if p.family == EFFICIENT and p.top1 is not None
                 and step_seconds(p, batch))
  results = []
  for p in points:
    time = step_seconds(p, batch)
    if p.family != LAMBDA or p.top1 is None or not time:
      continue
    result = dict(point=p, efficientnet_seconds=None, ratio=None, between=None)
    for (acc_a, time_a, a), (acc_b, time_b, b) in zip(curve, curve[1:]):
      if acc_a <= p.top1 <= acc_b:
        share = 0.0 if acc_b == acc_a else (p.top1 - acc_a) / (acc_b - acc_a)
        seconds = math.exp(math.log(time_a) + share * (math.log(time_b) - math.log(time_a)))
        result.update(efficientnet_seconds=seconds, ratio=seconds / time,
                      between=(a, b))
        break
    results.append(result)
  return results


def common_batch(points: list[Point]) -> int | None:
  batches = {p.train_batch for p in points if p.train_examples_per_s}
  return batches.pop() if len(batches) == 1 else None


# ---------------------------------------------------------------- outputs


def _fmt(value: Any, digits: int = 1) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:,.{digits}f}"
  return str(value)


def write_markdown(points: list[Point], ratios: list[dict[str, Any]],
                   batch: int, path: pathlib.Path, claim: str | None,
                   command: str) -> str:
  devices = sorted({p.device for p in points if p.device})
  dtypes = sorted({p.dtype for p in points if p.dtype})
  measured_acc = sum(p.top1_source == "measured" for p in points)
  header = ["model", "image", "top-1 (%)", "top-1 from",
            f"train step (ms, batch {batch})", "train ex/s", "inference ex/s",
            "train GFLOPs/ex (XLA)", "train MFU", "measured on", "paper top-1",
            "paper train ex/s (8 TPUv3)"]
  body = [[p.model, p.image_size, _fmt(p.top1), p.top1_source,
           _fmt(None if step_seconds(p, batch) is None
                else 1000 * step_seconds(p, batch)),
           _fmt(p.train_examples_per_s, 2), _fmt(p.inference_examples_per_s, 2),
           _fmt(p.train_gflops_per_example, 2), _fmt(p.train_mfu, 3), p.device,
           _fmt(p.paper_top1), _fmt(p.paper_train_examples_per_s, 0)]
          for p in points]
  lines = [
      "# Speed–accuracy: LambdaResNets and EfficientNets",
      "",
      f"Step times measured on {', '.join(devices) or 'nothing yet'} "
      f"({', '.join(dtypes) or '—'}; training step = forward, backward and "
      "SGD-momentum update on synthetic data, median of the timed steps); "
      f"{measured_acc} of {len(points)} accuracies measured here, the rest "
      "paper-reported (docs/paper_reference.csv). Generated by "
      f"`{command}`.",
      "",
      reporting.markdown_table(header, body),
      "",
      "## Speed-up at equal accuracy",
      "",
      f"Paper (TPUv3, its own step times): {claim or '?'}× faster than "
      "EfficientNets. Here: the EfficientNet step time at the LambdaResNet's "
      "accuracy, interpolated log-linearly between the two EfficientNets that "
      "bracket it, over the LambdaResNet's measured step time.",
      "",
  ]
  rows = []
  for r in ratios:
    p = r["point"]
    between = (f"{r['between'][0].label}–{r['between'][1].label}"
               if r["between"] else "outside the EfficientNets measured")
    rows.append([p.label, f"{p.top1:.1f} ({p.top1_source})",
                 _fmt(1000 * step_seconds(p, batch)),
                 _fmt(None if r["efficientnet_seconds"] is None
                      else 1000 * r["efficientnet_seconds"]),
                 between, _fmt(r["ratio"], 2)])
  lines.append(reporting.markdown_table(
      ["LambdaResNet", "top-1", f"its step (ms, batch {batch})",
       "EfficientNet step at that top-1 (ms)", "interpolated between",
       "speed-up"], rows))
  values = [r["ratio"] for r in ratios if r["ratio"] is not None]
  lines += ["", (f"**Speed-up measured here: {min(values):.2f}–{max(values):.2f}×** "
                 f"({len(values)} LambdaResNet points)." if values else
                 "**Speed-up: not computable** — it needs measured step times "
                 "for at least two EfficientNets whose accuracies bracket a "
                 "measured LambdaResNet's."), ""]
  text = "\n".join(lines)
  path.write_text(text)
  return text


def plot(points: list[Point], batch: int, path: pathlib.Path, title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top

  figure, axis = plt.subplots(figsize=(7.5, 5))
  colors = {LAMBDA: "tab:blue", EFFICIENT: "tab:orange", "other": "tab:gray"}
  plotted = 0
  for family, color in colors.items():
    members = sorted((step_seconds(p, batch), p) for p in points
                     if p.family == family and p.top1 is not None
                     and step_seconds(p, batch))
    if not members:
      continue
    axis.plot([1000 * t for t, _ in members], [p.top1 for _, p in members],
              color=color, alpha=0.5, linewidth=1)
    for seconds, p in members:
      measured = p.top1_source == "measured"
      axis.scatter(1000 * seconds, p.top1, s=50, color=color, zorder=3,
                   facecolors=color if measured else "none", linewidths=1.5)
      axis.annotate(p.label, (1000 * seconds, p.top1), fontsize=7,
                    xytext=(4, -10), textcoords="offset points")
      plotted += 1
  if not plotted:
    axis.text(0.5, 0.5, "no point has both a measured step time and an accuracy",
              ha="center", va="center", transform=axis.transAxes)
  else:
    axis.set_xscale("log")
    axis.margins(x=0.15, y=0.1)
  axis.set_xlabel(f"training time per step of {batch} examples (ms), measured")
  axis.set_ylabel("ImageNet top-1 (%)")
  axis.set_title(title, fontsize=9)
  axis.grid(True, which="both", alpha=0.3)
  handles = [
      Line2D([], [], color=colors[LAMBDA], marker="o", linestyle="-", label=LAMBDA),
      Line2D([], [], color=colors[EFFICIENT], marker="o", linestyle="-",
             label=EFFICIENT),
      Line2D([], [], color="black", marker="o", linestyle="none",
             label="top-1 measured here"),
      Line2D([], [], color="black", marker="o", markerfacecolor="none",
             linestyle="none", label="top-1 paper-reported"),
  ]
  axis.legend(handles=handles, fontsize=8, loc="lower right")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="\n\n".join(__doc__.split("\n\n")[1:]))
  parser.add_argument("--benchmarks", nargs="*", default=[], type=pathlib.Path,
                      help="CSVs written by scripts/benchmark_models.py")
  parser.add_argument("--metrics", nargs="*", default=[],
                      help="eval JSONs or workdirs, optionally "
                      "'#model=NAME,image_size=INT'")
  parser.add_argument("--manifest", nargs="*", default=[], type=pathlib.Path,
                      help="sweep manifests (scripts/sweep.py): each run's "
                      "workdir, model and image size")
  parser.add_argument("--reference", type=pathlib.Path, default=REFERENCE)
  parser.add_argument("--batch", type=int, default=None,
                      help="step size of the time axis (default: the measured "
                      "batch if all points share one, else 1024, scaled from "
                      "measured throughput)")
  parser.add_argument("--dtype", default=None, help="only benchmark rows of this dtype")
  parser.add_argument("--device", default=None,
                      help="only benchmark rows whose device_kind contains this")
  parser.add_argument("--include-overrides", action="store_true",
                      help="also use benchmark rows of overridden models")
  parser.add_argument("--all-paper-points", action="store_true",
                      help="list every paper model, not only measured ones")
  parser.add_argument("--out", type=pathlib.Path,
                      default=pathlib.Path("results/speed_accuracy"),
                      help="output prefix: PREFIX.md, PREFIX.csv, PREFIX.png")
  args = parser.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  reference = load_reference(args.reference)
  benchmarks = select_benchmarks(
      reporting.read_csv(args.benchmarks), dtype=args.dtype,
      device=args.device, include_overrides=args.include_overrides)
  metrics = load_metrics(args.metrics, args.manifest)
  points = join(benchmarks, metrics, reference,
                all_paper_points=args.all_paper_points)
  batch = args.batch or common_batch(points) or 1024
  ratios = speedups(points, batch)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  benchmarks_rows = [p.as_row() for p in points]
  writer = reporting.CsvWriter(args.out.with_suffix(".csv"), FIELDS)
  for row in benchmarks_rows:
    writer.write(row)
  command = "python scripts/speed_accuracy.py " + " ".join(args.argv)
  text = write_markdown(points, ratios, batch, args.out.with_suffix(".md"),
                        paper_speedup_claim(reference), command)
  devices = ", ".join(sorted({p.device for p in points if p.device})) or "—"
  plot(points, batch, args.out.with_suffix(".png"),
       f"Speed–accuracy; step times measured on {devices}")
  print(text)
  print(f"wrote {args.out}.md, {args.out}.csv and {args.out}.png")
  values = [r["ratio"] for r in ratios if r["ratio"] is not None]
  return dict(points=points, ratios=ratios, batch=batch,
              speedup=(min(values), max(values)) if values else None)


if __name__ == "__main__":
  main()
