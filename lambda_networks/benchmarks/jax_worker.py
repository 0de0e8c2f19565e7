"""Our side of `scripts.compare_timm`: one registry model's step, timed.

  python -m lambda_networks.benchmarks.jax_worker   # step_worker's protocol

`build` compiles the train or inference step of `benchmarks/compiled_steps.py`
(forward, cross-entropy, backward, SGD-momentum with weight decay; or the
eval-mode forward pass) for a random batch; `run` times steps, feeding each
train step's outputs to the next; `memory` reports the peaks. JAX's CPU
thread pool is as wide as the process's CPU affinity, which the parent sets.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from lambda_networks.benchmarks import step_worker
from lambda_networks.benchmarks import compiled_steps as steps_lib


class JaxSide:
  """The state between requests: one compiled step and its arguments."""

  def __init__(self):
    self.step = None
    self.mode = None
    self.arguments = None
    self.baseline_rss = None

  def ready(self) -> dict[str, Any]:
    device = jax.devices()[0]
    return dict(framework="jax", version=jax.__version__,
                backend=jax.default_backend(), device=device.device_kind)

  def build(self, model: str, mode: str, batch_size: int, image_size: int,
            num_classes: int = 1000, seed: int = 0,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    self.baseline_rss = step_worker.rss_bytes()
    start = time.perf_counter()
    self.step = steps_lib.build_step(model, overrides or {}, image_size=image_size,
                                 batch_size=batch_size, mode=mode,
                                 num_classes=num_classes, num_devices=1,
                                 seed=seed)
    self.mode = mode
    self.arguments = self.step.make_arguments()
    build_s = time.perf_counter() - start
    step_worker.reset_peak_rss()  # Compiling's peak is not the step's.
    return dict(params=self.step.num_params, build_s=build_s,
                xla_plan_mib=None if self.step.peak_bytes is None else
                self.step.peak_bytes / step_worker.MIB)

  def run(self, steps: int) -> dict[str, Any]:
    """Seconds of each of `steps` steps, each waited for."""
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      outputs = self.step.compiled(*self.arguments)
      jax.block_until_ready(outputs)
      times.append(time.perf_counter() - start)
      if self.mode == "train":  # The inputs were donated: carry the outputs on.
        self.arguments = tuple(outputs[:3]) + tuple(self.arguments[3:])
    return dict(times=times)

  def memory(self) -> dict[str, Any]:
    """Peak RSS above the pre-build baseline; the device's peak (accelerators)."""
    device_peak = None
    if jax.default_backend() != "cpu":
      stats = jax.devices()[0].memory_stats() or {}
      device_peak = stats.get("peak_bytes_in_use")
    return step_worker.memory_row(self.baseline_rss, device_peak)


def main() -> None:
  side = JaxSide()
  step_worker.serve(side.ready, dict(build=side.build, run=side.run,
                                     memory=side.memory))


if __name__ == "__main__":
  main()
