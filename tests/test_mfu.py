"""FLOPs from XLA's cost analysis, device peaks and the MFU of the benchmarks."""

import jax
import jax.numpy as jnp
import pytest

from lambda_networks.benchmarks import peak_flops
from lambda_networks.benchmarks import compiled_steps


def test_cost_analysis_counts_two_flops_per_multiply_add():
  rows, depth, cols = 48, 96, 80
  compiled = jax.jit(jnp.matmul).lower(
      jax.ShapeDtypeStruct((rows, depth), jnp.float32),
      jax.ShapeDtypeStruct((depth, cols), jnp.float32)).compile()
  assert compiled_steps.compiled_flops(compiled) == 2 * rows * depth * cols


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

