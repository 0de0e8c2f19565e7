"""Speed–accuracy: LambdaResNets against EfficientNets, as a table and a plot.

Joins benchmark CSVs (scripts/benchmark_models.py: measured step times), the
metrics JSONs that eval.py writes and the paper's numbers
(docs/paper_reference.csv, marked paper-reported) into PREFIX.md (the table
and the speed-up at equal accuracy), PREFIX.csv and PREFIX.png (accuracy
against step time; hollow markers: paper-reported accuracies). The speed-up
of a LambdaResNet is the EfficientNet step time at its accuracy, interpolated
log-linearly between the two EfficientNets that bracket it, over its own.

A metrics JSON names its model and image size in its fields, in a sweep
manifest (`--manifest`), or after the path: `PATH#model=NAME,image_size=160`;
a workdir stands for its newest eval_*.json.

  python -m scripts.speed_accuracy --benchmarks results/benchmarks/models.csv \\
      --metrics runs/l50_160#model=lambda_resnet50,image_size=160 \\
      --out docs/speed_accuracy_cpu
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from typing import Any, Iterable

import numpy as np
import pandas as pd

from lambda_networks.benchmarks import reporting

LAMBDA, EFFICIENT = "LambdaResNet", "EfficientNet"
FAMILIES = {"lambda_resnet": LAMBDA, "efficientnet": EFFICIENT}
KEY = ["model", "image_size"]
FIELDS = [
    "model", "image_size", "family", "top1", "top1_source", "measured_top1",
    "paper_top1", "train_batch", "train_step_ms", "train_examples_per_s",
    "inference_examples_per_s", "device", "dtype", "paper_train_examples_per_s",
    "paper_hardware", "train_gflops_per_example", "train_mfu"]


def family_of(model: str) -> str:
  return next((family for prefix, family in FAMILIES.items()
               if model.startswith(prefix)), "other")


def describe_device(row: pd.Series) -> str:
  """'NVIDIA H100 80GB HBM3 ×1' or, for CPUs, the host processor and cores."""
  if row.get("backend") == "cpu" and pd.notna(row.get("host_cpu")):
    cores = row.get("host_cpus")
    return f"CPU {row['host_cpu']} ({'?' if pd.isna(cores) else int(cores)} cores)"
  count = row.get("num_devices", row.get("device_count"))
  return (f"{row.get('device_kind')} ×{int(count)}" if pd.notna(count)
          else str(row.get("device_kind")))


def label(model: str, image_size: int) -> str:
  short = model.replace("lambda_resnet", "L").replace("efficientnet_", "")
  return f"{short.upper() if family_of(model) == EFFICIENT else short}@{image_size}"


def select_benchmarks(paths: list[pathlib.Path], *, dtype: str | None,
                      device: str | None, include_overrides: bool
                      ) -> pd.DataFrame:
  """One row per (model, size, mode): the measured one with the largest batch."""
  columns = [*KEY, "mode", "batch_size", "step_time_ms", "examples_per_s",
             "gflops_per_example", "mfu", "device", "dtype"]
  if not paths:
    return pd.DataFrame(columns=columns)
  rows = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
  rows["examples_per_s"] = pd.to_numeric(rows["examples_per_s"], errors="coerce")
  keep = (rows["status"] == "ok") & rows["examples_per_s"].notna()
  if not include_overrides:
    keep &= rows["overrides"].isna() | (rows["overrides"] == "")
  if dtype:
    keep &= rows.get("dtype") == dtype
  if device:
    keep &= rows["device_kind"].fillna("").str.lower().str.contains(
        device.lower(), regex=False)
  rows = rows[keep].copy()
  rows["device"] = rows.apply(describe_device, axis=1)
  return (rows.sort_values("batch_size", kind="stable")
          .groupby([*KEY, "mode"]).tail(1).reindex(columns=columns))


def newest_eval_json(workdir: pathlib.Path) -> pathlib.Path | None:
  """The eval_<split>_step<N>.json with the largest N (validation first)."""
  found = [(int(m[2]), m[1] == "validation", path)
           for path in workdir.glob("eval_*_step*.json")
           if (m := re.fullmatch(r"eval_(.+)_step(\d+)\.json", path.name))]
  final = workdir / "final_metrics.json"
  return max(found)[2] if found else (final if final.exists() else None)


def load_metrics(specs: Iterable[str], manifests: Iterable[pathlib.Path]
                 ) -> dict[tuple[str, int], float]:
  """(model, image size) -> measured top-1 in percent."""
  entries = []
  for spec in specs:  # 'PATH#model=x,image_size=160'
    path, _, labels = spec.partition("#")
    given = dict(item.partition("=")[::2] for item in filter(None, labels.split(",")))
    if set(given) - set(KEY) or "" in given.values():
      raise ValueError(f"metrics labels in {spec!r} must be model=NAME or "
                       "image_size=INT.")
    entries.append((pathlib.Path(path), given))
  entries += [(pathlib.Path(run["workdir"]), run) for manifest in manifests
              for run in json.loads(pathlib.Path(manifest).read_text())["runs"]]
  results = {}
  for path, given in entries:
    if (found := newest_eval_json(path) if path.is_dir() else path) is None:
      print(f"note: no eval_*.json in {path}; skipped", file=sys.stderr)
      continue
    data, path = json.loads(found.read_text()), found
    model, size = (given.get(key) or data.get(key) for key in KEY)
    if not model or not size:
      raise ValueError(
          f"{path} does not say which model and image size it scores; add "
          f"them after the path: '{path}#model=lambda_resnet50,image_size=160' "
          "(or pass the sweep manifest with --manifest).")
    if not isinstance(top1 := data.get("top1"), (int, float)):
      raise ValueError(f"{path} has no numeric 'top1' field.")
    results[(model, int(size))] = 100 * top1 if top1 <= 1 else top1
  return results


def join(benchmarks: pd.DataFrame, metrics: dict[tuple[str, int], float],
         reference: pd.DataFrame, *, all_paper_points: bool) -> pd.DataFrame:
  """One row per model/size that something measured or the paper has."""
  train, inference = (benchmarks[benchmarks["mode"] == mode].set_index(KEY)
                      for mode in ("train", "inference"))
  points = pd.DataFrame({
      "train_batch": train["batch_size"], "train_step_ms": train["step_time_ms"],
      "train_examples_per_s": train["examples_per_s"],
      "inference_examples_per_s": inference["examples_per_s"],
      "train_gflops_per_example": train["gflops_per_example"],
      "train_mfu": train["mfu"],
      # The train row's device and dtype, else the inference row's.
      "device": train["device"].combine_first(inference["device"]),
      "dtype": train["dtype"].combine_first(inference["dtype"])}).reset_index()
  points = points.merge(pd.DataFrame(
      [(*key, top1) for key, top1 in metrics.items()],
      columns=[*KEY, "measured_top1"]), on=KEY, how="outer")
  points = points[points["model"].map(family_of) != "other"]
  reference = reference[reference["image_size"].notna()].astype({"image_size": int})
  paper = reference[reference["table"].isin(["speed_accuracy", "efficientnet"])]
  headline = reference[reference["table"] == "headline"]
  how = "outer" if all_paper_points else "left"
  for rows, columns in ((paper, {"top1": "paper_top1"}),
                        (headline, {"train_examples_per_s":
                                    "paper_train_examples_per_s",
                                    "hardware": "paper_hardware"})):
    points = points.merge(rows[[*KEY, *columns]].rename(columns=columns),
                          on=KEY, how=how)
  points["family"] = points["model"].map(family_of)
  points["top1"] = points["measured_top1"].astype(float).fillna(points["paper_top1"])
  points["top1_source"] = np.select(
      [points["measured_top1"].notna(), points["paper_top1"].notna()],
      ["measured", "paper-reported"], None)
  points = points.astype({"image_size": int, "train_batch": "Int64"})
  order = points["family"].map({LAMBDA: 0, EFFICIENT: 1})
  return points.assign(order=order).sort_values(["order", *KEY])[FIELDS].reset_index(drop=True)


def speedups(points: pd.DataFrame) -> pd.DataFrame:
  """LambdaResNet step time vs EfficientNet step time at equal accuracy."""
  timed = points.dropna(subset=["top1", "step_s"])
  curve = timed[timed["family"] == EFFICIENT].sort_values(["top1", "step_s"])
  accuracies, labels = curve["top1"].to_numpy(), curve["label"].to_numpy()
  ratios = timed[timed["family"] == LAMBDA][
      ["label", "model", "image_size", "top1", "top1_source", "step_s"]].copy()
  ratios["between"] = "outside the EfficientNets measured"
  ratios["efficientnet_s"] = np.nan
  if len(curve) > 1:
    inside = ratios["top1"].between(accuracies[0], accuracies[-1])
    upper = np.clip(np.searchsorted(accuracies, ratios.loc[inside, "top1"]), 1,
                    None)
    ratios.loc[inside, "between"] = [f"{labels[i - 1]}–{labels[i]}"
                                     for i in upper]
    ratios.loc[inside, "efficientnet_s"] = np.exp(np.interp(
        ratios.loc[inside, "top1"], accuracies, np.log(curve["step_s"])))
  ratios["ratio"] = ratios["efficientnet_s"] / ratios["step_s"]
  return ratios


def _fmt(value: Any, digits: int = 1) -> str | None:
  return None if pd.isna(value) else f"{value:,.{digits}f}"


def markdown(points: pd.DataFrame, ratios: pd.DataFrame, batch: int,
             claim: str | None, command: str) -> str:
  devices = sorted(points["device"].dropna().unique())
  dtypes = sorted(points["dtype"].dropna().unique())
  measured_acc = int((points["top1_source"] == "measured").sum())
  table = reporting.markdown_table(
      ["model", "image", "top-1 (%)", "top-1 from",
       f"train step (ms, batch {batch})", "train ex/s", "inference ex/s",
       "train GFLOPs/ex (XLA)", "train MFU", "measured on", "paper top-1",
       "paper train ex/s (8 TPUv3)"],
      [[p.model, p.image_size, _fmt(p.top1), p.top1_source, _fmt(1000 * p.step_s),
        _fmt(p.train_examples_per_s, 2), _fmt(p.inference_examples_per_s, 2),
        _fmt(p.train_gflops_per_example, 2), _fmt(p.train_mfu, 3), p.device,
        _fmt(p.paper_top1), _fmt(p.paper_train_examples_per_s, 0)]
       for p in points.itertuples()])
  speedup_table = reporting.markdown_table(
      ["LambdaResNet", "top-1", f"its step (ms, batch {batch})",
       "EfficientNet step at that top-1 (ms)", "interpolated between",
       "speed-up"],
      [[r.label, f"{r.top1:.1f} ({r.top1_source})", _fmt(1000 * r.step_s),
        _fmt(1000 * r.efficientnet_s), r.between, _fmt(r.ratio, 2)]
       for r in ratios.itertuples()])
  values = ratios["ratio"].dropna()
  return "\n".join([
      "# Speed–accuracy: LambdaResNets and EfficientNets",
      "",
      f"Step times measured on {', '.join(devices) or 'nothing yet'} "
      f"({', '.join(dtypes) or '—'}; training step = forward, backward and "
      "SGD-momentum update on synthetic data, median of the timed steps); "
      f"{measured_acc} of {len(points)} accuracies measured here, the rest "
      "paper-reported (docs/paper_reference.csv). Generated by "
      f"`{command}`.",
      "",
      table,
      "",
      "## Speed-up at equal accuracy",
      "",
      f"Paper (TPUv3, its own step times): {claim or '?'}× faster than "
      "EfficientNets. Here: the EfficientNet step time at the LambdaResNet's "
      "accuracy, interpolated log-linearly between the two EfficientNets that "
      "bracket it, over the LambdaResNet's measured step time.",
      "",
      speedup_table,
      "",
      (f"**Speed-up measured here: {values.min():.2f}–{values.max():.2f}×** "
       f"({len(values)} LambdaResNet points)." if len(values) else
       "**Speed-up: not computable** — it needs measured step times "
       "for at least two EfficientNets whose accuracies bracket a "
       "measured LambdaResNet's."),
      ""])


def plot(points: pd.DataFrame, batch: int, path: pathlib.Path, title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top

  figure, axis = plt.subplots(figsize=(7.5, 5))
  colors = {LAMBDA: "tab:blue", EFFICIENT: "tab:orange"}
  shown = points.dropna(subset=["top1", "step_s"]).sort_values("step_s")
  for family, members in shown.groupby("family"):
    axis.plot(1000 * members["step_s"], members["top1"], color=colors[family],
              alpha=0.5, linewidth=1)
    for p in members.itertuples():
      color = colors[family]
      axis.scatter(1000 * p.step_s, p.top1, s=50, color=color, zorder=3,
                   facecolors=color if p.top1_source == "measured" else "none",
                   linewidths=1.5)
      axis.annotate(p.label, (1000 * p.step_s, p.top1), fontsize=7,
                    xytext=(4, -10), textcoords="offset points")
  if shown.empty:
    axis.text(0.5, 0.5, "no point has both a measured step time and an accuracy",
              ha="center", va="center", transform=axis.transAxes)
  else:
    axis.set_xscale("log")
    axis.margins(x=0.15, y=0.1)
  axis.set(xlabel=f"training time per step of {batch} examples (ms), measured",
           ylabel="ImageNet top-1 (%)")
  axis.set_title(title, fontsize=9)
  axis.grid(True, which="both", alpha=0.3)
  markers = [(f, dict(color=c)) for f, c in colors.items()] + [
      ("top-1 measured here", dict(color="black", linestyle="none")),
      ("top-1 paper-reported", dict(color="black", linestyle="none",
                                    markerfacecolor="none"))]
  axis.legend(handles=[Line2D([], [], marker="o", label=name, **style)
                       for name, style in markers], fontsize=8, loc="lower right")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = reporting.parser(__doc__)
  add = parser.add_argument
  add("--benchmarks", nargs="*", default=[], type=pathlib.Path,
      help="CSVs written by scripts/benchmark_models.py")
  add("--metrics", nargs="*", default=[],
      help="eval JSONs or workdirs, optionally '#model=NAME,image_size=INT'")
  add("--manifest", nargs="*", default=[], type=pathlib.Path,
      help="sweep manifests (scripts/sweep.py): each run's workdir, model and "
      "image size")
  add("--reference", type=pathlib.Path,
      default=reporting.REPO_ROOT / "docs" / "paper_reference.csv")
  add("--batch", type=int, help="step size of the time axis (default: the "
      "measured batch if all points share one, else 1024, scaled from measured "
      "throughput)")
  add("--dtype", help="only benchmark rows of this dtype")
  add("--device", help="only benchmark rows whose device_kind contains this")
  add("--include-overrides", action="store_true",
      help="also use benchmark rows of overridden models")
  add("--all-paper-points", action="store_true",
      help="list every paper model, not only measured ones")
  add("--out", type=pathlib.Path, default=pathlib.Path("results/speed_accuracy"),
      help="output prefix: PREFIX.md, PREFIX.csv, PREFIX.png")
  return reporting.parse(parser, argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  reference = pd.read_csv(args.reference)
  points = join(select_benchmarks(args.benchmarks, dtype=args.dtype,
                                  device=args.device,
                                  include_overrides=args.include_overrides),
                load_metrics(args.metrics, args.manifest), reference,
                all_paper_points=args.all_paper_points)
  batches = points.loc[points["train_examples_per_s"].notna(), "train_batch"]
  batch = args.batch or (int(batches.iloc[0]) if batches.nunique() == 1
                         else 1024)
  # A training step of `batch` examples: measured, else from throughput.
  at_batch = (points["train_batch"] == batch).fillna(False)
  points["step_s"] = (points["train_step_ms"].where(at_batch) / 1000).fillna(
      batch / points["train_examples_per_s"])
  points["label"] = [label(m, s) for m, s in zip(points["model"],
                                                  points["image_size"])]
  ratios = speedups(points)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  points[FIELDS].to_csv(args.out.with_suffix(".csv"), index=False,
                        lineterminator="\r\n")
  claim = reference.loc[(reference["table"] == "claim") & reference["row"]
                        .str.contains("EfficientNets"), "value"]
  text = markdown(points, ratios, batch, claim.iloc[0] if len(claim) else None,
                  reporting.command_line("speed_accuracy", args.argv))
  args.out.with_suffix(".md").write_text(text)
  devices = ", ".join(sorted(points["device"].dropna().unique())) or "—"
  plot(points, batch, args.out.with_suffix(".png"),
       f"Speed–accuracy; step times measured on {devices}")
  print(text)
  print(f"wrote {args.out}.md, {args.out}.csv and {args.out}.png")
  values = ratios["ratio"].dropna()
  return dict(points=points, ratios=ratios, batch=batch,
              speedup=(values.min(), values.max()) if len(values) else None)


if __name__ == "__main__":
  main()
