"""Fits the per-platform cost table of `method="auto"` from a layer benchmark.

Reads the CSV of scripts/benchmark_layers.py (one backend), and fits, for the
lambda rows that ran a fixed execution,

    time(variant, size) = overhead(size) + cost[method] · pairs(method, size)

by non-negative least squares: `overhead` is what every lambda layer of a
size pays alike (projections, batch norms, content lambda), `pairs` the
(query, offset) pairs the method visits (`ops.visited_pairs`) times the batch
and channels. The costs, relative to the einsum's, are written under the
CSV's backend in lambda_networks/pair_cost.json, which `ops.choose_method`
reads — so after

  python -m scripts.benchmark_layers --sizes 14 28 56 64 --batch 32 \\
      --channels 256 --out results/layers
  python -m scripts.calibrate_pair_cost results/layers/benchmark_layers.csv

`auto` on that platform uses the measured table. `--dry-run` only prints it.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import re

import numpy as np
import pandas as pd
from scipy import optimize

from lambda_networks import ops
from lambda_networks.benchmarks import reporting

METHODS = ("einsum", "conv", "row_conv")


def table_width(variant: str, size: int) -> int:
  """The cropped table width a benchmark variant runs at a map size."""
  match = re.search(r"_r(\d+)_", variant)
  full = 2 * size - 1
  return min(int(match.group(1)), full) if match else full


def fit_costs(rows: pd.DataFrame) -> tuple[dict[str, float], pd.DataFrame]:
  """Relative costs per pair (einsum = 1), and the rows fitted, with predictions."""
  points = rows[(rows["status"] == "ok") & rows["method"].isin(METHODS)
                & rows["variant"].str.startswith("lambda_")
                & ~rows["variant"].str.endswith("_auto")]
  if missing := [m for m in METHODS if m not in set(points["method"])]:
    raise ValueError(
        f"no successful rows of the fixed-method lambda variants for "
        f"{missing}; run scripts.benchmark_layers with its default "
        "--variants (the *_einsum, *_conv and *_row_conv ones).")
  points = points.astype({"size": int, "batch": int, "channels": int,
                          "time_ms": float})
  pairs = [ops.visited_pairs((p.size, p.size), (table_width(p.variant, p.size),) * 2)
           [p.method] * p.batch * p.channels for p in points.itertuples()]
  # Columns: one overhead per (batch, channels, dtype, size), one cost per method.
  groups = points[["batch", "channels", "dtype", "size"]].astype(str).agg(
      "/".join, axis=1)
  design = np.concatenate([
      pd.get_dummies(groups, dtype=float).to_numpy(),
      (points["method"].to_numpy()[:, None] == np.array(METHODS)) *
      np.array(pairs, float)[:, None]], axis=1)
  times = points["time_ms"].to_numpy()
  # Relative error matters, not absolute: weight each point by 1 / time.
  solution, _ = optimize.nnls(design / times[:, None], np.ones_like(times))
  per_pair = dict(zip(METHODS, solution[-len(METHODS):]))
  if not per_pair["einsum"] > 0:
    raise ValueError("the fit gives the einsum no cost per pair; measure "
                     "larger maps (--sizes 28 56 64) so the position term "
                     "dominates the layer's time.")
  costs = {m: float(f"{max(per_pair[m], 1e-3 * per_pair['einsum']) / per_pair['einsum']:.2g}")
           for m in METHODS}
  return costs, points.assign(predicted_ms=design @ solution)


def write_table(path: pathlib.Path, platform: str, costs: dict[str, float],
                source: str) -> None:
  tables = json.loads(path.read_text())
  tables[platform] = {"calibrated": True, "costs": costs, "source": source}
  path.write_text(json.dumps(tables, indent=2) + "\n")
  ops.load_pair_costs(path)  # Fails loudly if what was written is unusable.


def main(argv: list[str] | None = None) -> dict[str, float]:
  parser = reporting.parser(__doc__)
  parser.add_argument("csv", type=pathlib.Path,
                      help="benchmark_layers.csv of one backend")
  parser.add_argument("--platform", default=None,
                      help="table to write (default: the CSV's backend)")
  parser.add_argument("--costs-file", type=pathlib.Path,
                      default=ops.PAIR_COST_FILE)
  parser.add_argument("--dry-run", action="store_true",
                      help="print the fitted table, write nothing")
  args = parser.parse_args(argv)
  rows = pd.read_csv(args.csv, dtype=str)
  backends = sorted(rows["backend"].unique())
  if args.platform is None and len(backends) != 1:
    raise SystemExit(f"{args.csv} mixes backends {backends}; pass --platform.")
  platform = args.platform or backends[0]
  costs, points = fit_costs(rows)
  for p in points.itertuples():
    print(f"{p.variant:28s} {p.size:3d}² {p.time_ms:10.2f} ms measured "
          f"{p.predicted_ms:10.2f} ms fitted")
  batch, channels, dtype = (sorted(rows[key].unique())
                            for key in ("batch", "channels", "dtype"))
  source = (f"scripts.calibrate_pair_cost {args.csv.name} ("
            f"{', '.join(sorted(rows['device'].unique()))}, batch {batch}, "
            f"channels {channels}, dtype {dtype}), {datetime.date.today()}")
  print(f"{platform}: {json.dumps(costs)}")
  if not args.dry_run:
    write_table(args.costs_file, platform, costs, source)
    print(f"wrote the {platform!r} table to {args.costs_file}")
  return costs


if __name__ == "__main__":
  main()
