"""Peak bf16 FLOP/s per JAX device and model FLOPs utilisation (MFU).

MFU = the FLOPs the step needs (XLA's cost analysis of the compiled step,
which counts 2 FLOPs per multiply-add) / step time / the devices' peak. The
peak is the vendor's dense bfloat16 matrix peak whatever dtype the run used,
so a float32 run's MFU says how far it is from what bf16 would allow. A JAX
device is a chip, except on TPU v2/v3, where it is one of the chip's two
cores (half the chip's peak). Devices not listed (CPUs) have no MFU.
"""

from __future__ import annotations

# (device_kind as JAX reports it, matched case-insensitively: exact, or a
# prefix for GPUs; peak dense bf16 TFLOP/s per JAX device; source).
PEAK_BF16_TFLOPS = (
    ("TPU v3", 123 / 2, "cloud.google.com/tpu/docs/v3: 123 TFLOPs per chip, 2 cores"),
    ("TPU v4", 275, "cloud.google.com/tpu/docs/v4: 275 TFLOPs per chip"),
    ("TPU v5 lite", 197, "cloud.google.com/tpu/docs/v5e: 197 TFLOPs per chip"),
    ("TPU v5e", 197, "cloud.google.com/tpu/docs/v5e: 197 TFLOPs per chip"),
    ("TPU v5", 459, "cloud.google.com/tpu/docs/v5p: 459 TFLOPs per chip"),
    ("TPU v5p", 459, "cloud.google.com/tpu/docs/v5p: 459 TFLOPs per chip"),
    ("TPU v6 lite", 918, "cloud.google.com/tpu/docs/v6e: 918 TFLOPs per chip"),
    ("NVIDIA A100", 312, "NVIDIA A100 datasheet: 312 TFLOPS bf16 dense"),
    ("NVIDIA H100 PCIe", 756, "NVIDIA H100 datasheet: 1,513 sparse / 2, PCIe"),
    ("NVIDIA H100 NVL", 835, "NVIDIA H100 datasheet: 1,671 sparse / 2, NVL"),
    ("NVIDIA H100", 989, "NVIDIA H100 datasheet: 1,979 sparse / 2, SXM"),
    ("NVIDIA H200 NVL", 835, "NVIDIA H200 datasheet: 1,671 sparse / 2, NVL"),
    ("NVIDIA H200", 989, "NVIDIA H200 datasheet: 1,979 sparse / 2, SXM"),
)


def peak_flops_per_device(device_kind: str) -> float | None:
  """Dense bf16 peak FLOP/s of one JAX device of this kind, None if unknown."""
  kind = device_kind.strip().lower()
  for name, tflops, _ in PEAK_BF16_TFLOPS:  # TPUs: the exact name.
    if name.startswith("TPU") and kind == name.lower():
      return tflops * 1e12
  matches = [(len(name), tflops) for name, tflops, _ in PEAK_BF16_TFLOPS
             if not name.startswith("TPU") and kind.startswith(name.lower())]
  return max(matches)[1] * 1e12 if matches else None


def model_flops_utilisation(step_flops: float, step_seconds: float,
                            num_devices: int,
                            peak_per_device: float | None) -> float | None:
  """Achieved FLOP/s of the whole step over the devices' summed peak."""
  if not peak_per_device or not step_seconds or not step_flops:
    return None
  return step_flops / step_seconds / (num_devices * peak_per_device)
