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
from scipy import optimize

from lambda_networks import ops
from scripts import reporting

METHODS = ("einsum", "conv", "row_conv")


def table_width(variant: str, size: int) -> int:
  """The cropped table width a benchmark variant runs at a map size."""
  match = re.search(r"_r(\d+)_", variant)
  full = 2 * size - 1
  return min(int(match.group(1)), full) if match else full


def fit_costs(rows: list[dict]) -> tuple[dict[str, float], list[dict]]:
  """Relative costs per pair (einsum = 1) and the rows used, with predictions."""
  points = []
  for row in rows:
    method = row.get("method")
    if (row.get("status") != "ok" or method not in METHODS
        or row["variant"].endswith("_auto")
        or not row["variant"].startswith("lambda_")):
      continue
    size = int(row["size"])
    width = table_width(row["variant"], size)
    pairs = ops.visited_pairs((size, size), (width, width))[method]
    scale = int(row["batch"]) * int(row["channels"])
    group = (row["batch"], row["channels"], row["dtype"], size)
    points.append(dict(row, pairs=pairs * scale, group=group,
                       time=float(row["time_ms"])))
  missing = [m for m in METHODS if not any(p["method"] == m for p in points)]
  if missing:
    raise ValueError(
        f"no successful rows of the fixed-method lambda variants for "
        f"{missing}; run scripts.benchmark_layers with its default "
        "--variants (the *_einsum, *_conv and *_row_conv ones).")
  groups = sorted({p["group"] for p in points})
  design = np.zeros((len(points), len(groups) + len(METHODS)))
  for i, point in enumerate(points):
    design[i, groups.index(point["group"])] = 1.0
    design[i, len(groups) + METHODS.index(point["method"])] = point["pairs"]
  times = np.array([p["time"] for p in points])
  # Relative error matters, not absolute: weight each point by 1 / time.
  solution, _ = optimize.nnls(design / times[:, None], np.ones_like(times))
  per_pair = dict(zip(METHODS, solution[len(groups):]))
  if not per_pair["einsum"] > 0:
    raise ValueError("the fit gives the einsum no cost per pair; measure "
                     "larger maps (--sizes 28 56 64) so the position term "
                     "dominates the layer's time.")
  for point, predicted in zip(points, design @ solution):
    point["predicted_ms"] = float(predicted)
  costs = {m: float(f"{max(per_pair[m], 1e-3 * per_pair['einsum']) / per_pair['einsum']:.2g}")
           for m in METHODS}
  return costs, points


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
  rows = reporting.read_csv([args.csv])
  backends = sorted({r["backend"] for r in rows})
  if args.platform is None and len(backends) != 1:
    raise SystemExit(f"{args.csv} mixes backends {backends}; pass --platform.")
  platform = args.platform or backends[0]
  costs, points = fit_costs(rows)
  for point in points:
    print(f"{point['variant']:28s} {int(point['size']):3d}² "
          f"{point['time']:10.2f} ms measured {point['predicted_ms']:10.2f} "
          "ms fitted")
  devices = sorted({r.get("device", "") for r in rows})
  source = (f"scripts.calibrate_pair_cost {args.csv.name} ({', '.join(devices)}, "
            f"batch {sorted({r['batch'] for r in rows})}, channels "
            f"{sorted({r['channels'] for r in rows})}, dtype "
            f"{sorted({r['dtype'] for r in rows})}), "
            f"{datetime.date.today().isoformat()}")
  print(f"{platform}: {json.dumps(costs)}")
  if not args.dry_run:
    write_table(args.costs_file, platform, costs, source)
    print(f"wrote the {platform!r} table to {args.costs_file}")
  return costs


if __name__ == "__main__":
  main()
