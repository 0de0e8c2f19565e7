"""The per-platform cost table of method="auto" and its calibration."""

import csv
import json

import jax
import pytest

from conftest import run
from lambda_networks import ops
from lambda_networks.benchmarks import pair_cost
from scripts import benchmark_layers

CPU_COSTS = {"einsum": 1.0, "conv": 2.0, "row_conv": 0.3}
CONV_FRIENDLY = {"einsum": 1.0, "conv": 0.01, "row_conv": 5.0}


@pytest.fixture
def fake_tables(monkeypatch):
  tables = {"cpu": {"calibrated": True, "costs": CPU_COSTS, "source": "a fit"},
            "gpu": {"calibrated": True, "costs": CONV_FRIENDLY},
            "default": {"calibrated": False, "source": "a guess", "costs": {
                "einsum": 0.01, "conv": 5.0, "row_conv": 5.0}}}
  monkeypatch.setattr(ops, "pair_costs", lambda: tables)
  return tables


@pytest.mark.parametrize("backend,expected", [
    ("cpu", "row_conv"), ("gpu", "conv"), ("tpu", "einsum")])
def test_auto_uses_the_default_backends_table(fake_tables, monkeypatch,
                                              backend, expected):
  del fake_tables
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  # A 64×64 map with a 23×23 table: each table makes a different method win
  # (the made-up "tpu" falls back to the "default" entry).
  assert ops.choose_method((64, 64), (23, 23)) == expected
  assert ops.choose_method((64, 64), (23, 23), platform=backend) == expected


def test_shipped_table_marks_unmeasured_platforms():
  tables = ops.load_pair_costs()
  assert tables["cpu"]["calibrated"]
  assert ops.pair_costs() == tables  # Read on first use, the same file.
  for platform in ("gpu", "tpu", "default"):
    assert tables[platform]["calibrated"] is False


def test_a_table_without_every_method_is_rejected(tmp_path):
  path = tmp_path / "costs.json"
  complete = {"einsum": 1.0, "conv": 2.0, "row_conv": 0.3}
  path.write_text(json.dumps({"default": {"costs": complete},
                              "cpu": {"costs": {"einsum": 1.0, "conv": 2.0}}}))
  with pytest.raises(ValueError, match=r"row_conv.*benchmark_layers --calibrate"):
    ops.load_pair_costs(path)
  path.write_text(json.dumps({"cpu": {"costs": complete}}))
  with pytest.raises(ValueError, match="default"):
    ops.load_pair_costs(path)


def test_calibration_recovers_known_costs(tmp_path):
  """Times made from known costs per pair (plus a per-size overhead) refit."""
  per_pair_ms = {"einsum": 4e-7, "conv": 1e-6, "row_conv": 1e-7}
  rows = []
  for size in (14, 28, 56):
    overhead = 0.5 * size
    for variant in ("lambda_local_r23", "lambda_global"):
      width = pair_cost.table_width(variant + "_x", size)
      for method, cost in per_pair_ms.items():
        pairs = ops.visited_pairs((size, size), (width, width))[method]
        rows.append(dict(variant=f"{variant}_{method}", size=size, batch=2,
                         channels=8, dtype="float32", backend="cpu",
                         device="cpu", method=method, status="ok",
                         time_ms=overhead + cost * pairs * 2 * 8))
  path = tmp_path / "layers.csv"
  with open(path, "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  costs_file = tmp_path / "pair_cost.json"
  costs_file.write_text(ops.PAIR_COST_FILE.read_text())
  costs = benchmark_layers.main(
      ["--calibrate", str(path), "--platform", "gpu", "--costs-file", str(costs_file)])
  assert costs == pytest.approx({"einsum": 1.0, "conv": 2.5, "row_conv": 0.25})
  written = ops.load_pair_costs(costs_file)
  assert written["gpu"]["calibrated"] and written["gpu"]["costs"] == costs
  assert "benchmark_layers --calibrate" in written["gpu"]["source"]
  assert written["cpu"] == ops.load_pair_costs()["cpu"]  # Others untouched.
  # Rows of two backends need --platform to say which table they calibrate.
  other = tmp_path / "other.csv"
  other.write_text(path.read_text().replace(",cpu,cpu,", ",gpu,gpu,"))
  with pytest.raises(SystemExit, match="mix backends"):
    benchmark_layers.main(["--calibrate", str(path), str(other), "--dry-run"])


def test_note_says_whether_auto_is_calibrated(fake_tables):
  del fake_tables
  assert pair_cost.note("cpu") == "auto: the measured 'cpu' cost table (a fit)."
  uncalibrated = pair_cost.note("tpu")  # Falls back to "default".
  assert "UNCALIBRATED (a guess)" in uncalibrated
  assert "python -m scripts.benchmark_layers --calibrate" in uncalibrated


def test_importing_ops_reads_no_file():
  """The table is read when a cost is first needed, not at import."""
  code = ("from lambda_networks import ops\n"
          "assert ops.pair_costs.cache_info().currsize == 0\n"
          "assert ops.pair_cost_table('cpu') == ops.load_pair_costs()['cpu']\n"
          "assert ops.pair_costs.cache_info().currsize == 1\n")
  run(["-c", code], devices=1)
