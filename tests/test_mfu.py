"""FLOPs from XLA's cost analysis, device peaks and the MFU of the benchmarks."""

import csv
import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
import benchmark_models  # noqa: E402  pylint: disable=g-import-not-at-top
import benchmarking  # noqa: E402  pylint: disable=g-import-not-at-top
import peak_flops  # noqa: E402  pylint: disable=g-import-not-at-top


def test_cost_analysis_counts_two_flops_per_multiply_add():
  rows, depth, cols = 48, 96, 80
  compiled = jax.jit(jnp.matmul).lower(
      jax.ShapeDtypeStruct((rows, depth), jnp.float32),
      jax.ShapeDtypeStruct((depth, cols), jnp.float32)).compile()
  assert benchmarking.compiled_flops(compiled) == 2 * rows * depth * cols


def test_mfu_of_a_matmul_of_known_flops():
  flops = 2 * 8192 ** 3  # One 8192³ matmul: 1.0995e12 FLOPs.
  peak = peak_flops.peak_flops_per_device("NVIDIA H100 80GB HBM3")
  assert peak == 989e12
  # At 2 ms per step on one H100: 549.8 TFLOP/s, 55.6% of the peak.
  mfu = peak_flops.model_flops_utilisation(flops, 2e-3, 1, peak)
  assert mfu == pytest.approx(flops / 2e-3 / 989e12)
  assert mfu == pytest.approx(0.5559, abs=1e-4)
  # The same step spread over 4 devices uses a quarter of their peak.
  assert peak_flops.model_flops_utilisation(flops, 2e-3, 4, peak) == (
      pytest.approx(mfu / 4))
  assert peak_flops.model_flops_utilisation(flops, 2e-3, 1, None) is None


@pytest.mark.parametrize("kind,tflops", [
    ("TPU v3", 61.5), ("TPU v4", 275), ("TPU v5 lite", 197), ("TPU v5", 459),
    ("TPU v5p", 459), ("NVIDIA A100-SXM4-80GB", 312), ("NVIDIA H100 PCIe", 756),
    ("NVIDIA H200", 989), ("cpu", None), ("TPU v7 future", None)])
def test_peak_table_matches_device_kinds(kind, tflops):
  peak = peak_flops.peak_flops_per_device(kind)
  assert peak == (None if tflops is None else pytest.approx(tflops * 1e12))


def test_benchmark_rows_carry_flops_and_mfu(tmp_path):
  out = tmp_path / "models.csv"
  benchmark_models.main(
      ["--models", "resnet26", "--image-sizes", "16", "--batch-sizes", "2",
       "--modes", "train", "--warmup", "1", "--repeats", "2",
       "--num-classes", "10", "--out", str(out),
       "--override", "stage_depths=(1,)", "--override", "stage_widths=(4,)",
       "--override", "stem_width=4", "--override", "stage_mixers=C"])
  with open(out, newline="") as handle:
    (row,) = list(csv.DictReader(handle))
  gflops = float(row["gflops_per_example"])
  assert gflops > 0
  achieved = float(row["achieved_tflops"])
  step_seconds = float(row["step_time_ms"]) / 1000
  assert achieved == pytest.approx(gflops * 2 / step_seconds / 1000, rel=1e-3)
  assert row["mfu"] == "" and row["peak_tflops"] == ""  # No peak for CPUs.
