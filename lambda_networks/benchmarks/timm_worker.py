"""timm's side of `scripts.compare_timm`: one timm model's step, timed.

  TIMM_PYTHON -m lambda_networks.benchmarks.timm_worker  # step_worker's protocol

Runs under an interpreter that has torch and timm (not the project's: torch
and TensorFlow crash in one process), with the repository on PYTHONPATH; it
imports nothing of lambda_networks but `step_worker` (standard library).
The steps are those of our side (`jax_worker`): train = forward,
cross-entropy, backward and SGD (lr 0.1, momentum 0.9, weight decay 1e-4 on
every parameter, as optax's `add_decayed_weights` + `sgd`); inference = the
eval-mode forward pass under `torch.inference_mode`. Eager PyTorch, NCHW,
float32, as `timm.create_model` gives it; torch uses as many threads as the
process's CPU affinity (set by the parent). On CUDA, TF32 is allowed for
matmuls and convolutions as XLA's default float32 precision allows it, and
cuDNN picks its algorithms (`cudnn.benchmark`).
"""

from __future__ import annotations

import os
import time
from typing import Any

from lambda_networks.benchmarks import step_worker


class TimmSide:
  """The state between requests: one timm model, its batch and optimiser."""

  def __init__(self):
    self.torch = None
    self.step = None
    self.device = "cpu"
    self.baseline_rss = None

  def ready(self) -> dict[str, Any]:
    import timm  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    self.torch = torch
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    return dict(framework="timm", version=timm.__version__,
                torch=torch.__version__, threads=torch.get_num_threads(),
                cuda=torch.cuda.is_available())

  def build(self, model: str, mode: str, batch_size: int, image_size: int,
            num_classes: int = 1000, seed: int = 0,
            device: str = "cpu") -> dict[str, Any]:
    import timm  # pylint: disable=import-outside-toplevel
    torch = self.torch
    self.device = device
    if device == "cuda":
      torch.backends.cuda.matmul.allow_tf32 = True
      torch.backends.cudnn.allow_tf32 = True
      torch.backends.cudnn.benchmark = True
      torch.cuda.reset_peak_memory_stats()
    self.baseline_rss = step_worker.rss_bytes()
    start = time.perf_counter()
    torch.manual_seed(seed)
    net = timm.create_model(model, pretrained=False, num_classes=num_classes)
    net = net.to(device).train(mode == "train")
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    labels = torch.randint(0, num_classes, (batch_size,), device=device)
    if mode == "train":
      optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9,
                                  weight_decay=1e-4)
      loss_fn = torch.nn.CrossEntropyLoss()

      def step():
        loss = loss_fn(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    else:
      def step():
        with torch.inference_mode():
          net(images)
    self.step = step
    build_s = time.perf_counter() - start
    step_worker.reset_peak_rss()
    params = sum(p.numel() for p in net.parameters())
    return dict(params=params, build_s=build_s)

  def run(self, steps: int) -> dict[str, Any]:
    """Seconds of each of `steps` steps (CUDA: synchronised)."""
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      self.step()
      if self.device == "cuda":
        self.torch.cuda.synchronize()
      times.append(time.perf_counter() - start)
    return dict(times=times)

  def memory(self) -> dict[str, Any]:
    """Peak RSS above the pre-build baseline; CUDA's peak allocation."""
    device_peak = (self.torch.cuda.max_memory_allocated()
                   if self.device == "cuda" else None)
    return step_worker.memory_row(self.baseline_rss, device_peak)


def main() -> None:
  side = TimmSide()
  step_worker.serve(side.ready, dict(build=side.build, run=side.run,
                                     memory=side.memory))


if __name__ == "__main__":
  main()
