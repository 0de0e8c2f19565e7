"""Fits the per-platform cost table of `method="auto"` from a layer benchmark.

From the rows of `scripts.benchmark_layers` (lambda variants that ran a fixed
execution), fits

    time(variant, size) = overhead(size) + cost[method] · pairs(method, size)

by non-negative least squares: `overhead` is what every lambda layer of a
size pays alike (projections, batch norms, content lambda), `pairs` the
(query, offset) pairs the method visits (`ops.visited_pairs`) times the batch
and channels. The costs, relative to the einsum's, go under a platform in
lambda_networks/pair_cost.json, which `ops.choose_method` reads.
"""

from __future__ import annotations

import json
import pathlib
import re
import time

import jax
import numpy as np
import pandas as pd
from scipy import optimize

from lambda_networks import ops

METHODS = ("einsum", "conv", "row_conv")
COMMAND = "python -m scripts.benchmark_layers --calibrate"


def note(platform: str | None = None) -> str:
  """Says whether method="auto" on this platform runs a measured cost table."""
  platform = platform or jax.default_backend()
  table = ops.pair_cost_table(platform)
  if table["calibrated"]:
    return f"auto: the measured {platform!r} cost table ({table['source']})."
  return (f"auto: the {platform!r} cost table is UNCALIBRATED "
          f"({table['source']}); calibrate it with `{COMMAND}`.")


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


def calibrate(rows: pd.DataFrame, *, platform: str | None,
              costs_file: pathlib.Path, dry_run: bool,
              command: str) -> dict[str, float]:
  """Fits `rows` (as read from CSV), prints the fit, writes the table.

  `platform` defaults to the rows' backend; `command` says in the table's
  "source" what produced it.
  """
  backends = sorted(rows["backend"].unique())
  if platform is None and len(backends) != 1:
    raise ValueError(f"the rows mix backends {backends}; pass --platform.")
  platform = platform or backends[0]
  costs, points = fit_costs(rows)
  for p in points.itertuples():
    print(f"{p.variant:28s} {p.size:3d}² {p.time_ms:10.2f} ms measured "
          f"{p.predicted_ms:10.2f} ms fitted")
  print(f"{platform}: {json.dumps(costs)}")
  if not dry_run:
    batch, channels, dtype = (sorted(rows[key].unique())
                              for key in ("batch", "channels", "dtype"))
    write_table(costs_file, platform, costs, (
        f"{command} ({', '.join(sorted(rows['device'].unique()))}, batch "
        f"{batch}, channels {channels}, dtype {dtype}), {time.strftime('%Y-%m-%d')}"))
    print(f"wrote the {platform!r} table to {costs_file}")
  return costs
