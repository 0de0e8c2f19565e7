"""Parameters and GFLOPs of every registry model at its paper image size.

Writes docs/model_table.md and docs/model_table.csv. Nothing is compiled or
executed: models are built abstractly with `nnx.eval_shape`, parameters are
the nnx.Param leaves (batch-norm statistics excluded), and FLOPs come from
XLA's cost analysis of the lowered (not compiled) inference forward pass for
one image — XLA counts 2 FLOPs per multiply-add and includes element-wise
work, so conventional "FLOPs = multiply-adds" figures are about half of ours.
The paper's numbers (PAPER.md) sit beside ours where it has them.

  python scripts/model_table.py                      # all models (minutes)
  python scripts/model_table.py --models resnet50 resnet50_lambda
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lambda_networks import models  # pylint: disable=g-import-not-at-top

# Variants that are overrides of a registry model rather than names.
EXTRA_ROWS = (
    ("resnet50_lambda", {"intra_depth": 4, "receptive_field": 7}),
    ("resnet50", {"stage_mixers": "CCLL"}),
)
# (name, overrides as text, image size) -> (paper params, paper top-1, source).
PAPER = {
    ("resnet50", "", 224): ("25.6M", "76.9", "Table 3"),
    ("resnet50_se", "", 224): ("28.1M", "77.6", "Table 3"),
    ("resnet50_local_attention", "", 224): ("18.0M", "77.4", "Table 3/4"),
    ("resnet50_axial", "", 224): ("", "77.5", "Table 4"),
    ("resnet50_attention", "", 224): ("", "out of memory", "Table 4"),
    ("resnet50_lambda", "", 224): ("15.0M", "78.4", "Table 3"),
    ("resnet50_augmented", "", 224): ("25.8M", "77.7", "Table 3"),
    ("resnet50_lambda_shared", "", 224): ("", "78.0", "Table 4"),
    ("resnet50_lambda", "intra_depth=4 receptive_field=7", 224):
        ("16.0M", "78.9", "Table 3"),
    ("resnet50", "stage_mixers=CCLL", 224): ("≈15.4M", "≈78.3", "hybrids"),
    ("lambda_resnet50", "", 128): ("", "77.4", "speed–accuracy"),
    ("lambda_resnet50", "", 160): ("", "79.2", "speed–accuracy"),
    ("lambda_resnet101", "", 160): ("", "80.8", "speed–accuracy"),
    ("lambda_resnet101", "", 192): ("", "81.9", "speed–accuracy"),
    ("lambda_resnet152", "", 192): ("", "82.5", "speed–accuracy"),
    ("lambda_resnet152", "", 224): ("", "83.2", "speed–accuracy"),
    ("lambda_resnet152", "", 256): ("", "83.8", "speed–accuracy"),
    ("lambda_resnet270", "", 256): ("", "84.2", "speed–accuracy"),
    ("lambda_resnet350", "", 256): ("", "84.4", "speed–accuracy"),
    ("lambda_resnet350", "", 320): ("", "84.7", "speed–accuracy"),
    ("lambda_resnet420", "", 320): ("", "84.9", "speed–accuracy"),
    ("efficientnet_b0", "", 224): ("", "77.1", "EfficientNet paper"),
    ("efficientnet_b1", "", 240): ("", "79.1", "EfficientNet paper"),
    ("efficientnet_b2", "", 260): ("", "80.1", "EfficientNet paper"),
    ("efficientnet_b3", "", 300): ("", "81.6", "EfficientNet paper"),
    ("efficientnet_b4", "", 380): ("", "82.9", "EfficientNet paper"),
    ("efficientnet_b5", "", 456): ("", "83.6", "EfficientNet paper"),
    ("efficientnet_b6", "", 528): ("", "84.0", "EfficientNet paper"),
    ("efficientnet_b7", "", 600): ("", "84.3", "EfficientNet paper"),
}
FIELDS = ("model", "overrides", "image_size", "params_m", "gflops_xla",
          "paper_params", "paper_top1", "paper_source")


def measure(name: str, overrides: dict, image_size: int) -> tuple[int, float]:
  """(trainable parameters, XLA GFLOPs of one image's inference pass)."""
  model = nnx.eval_shape(lambda: models.get_model(
      name, num_classes=1000, rngs=nnx.Rngs(0), image_size=image_size,
      **overrides))
  params = models.count_parameters(model)
  model.eval()
  graphdef, state = nnx.split(model)
  channels = model.config.in_channels

  def forward(state, images):
    return nnx.merge(graphdef, state)(images)

  images = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
  cost = jax.jit(forward).lower(state, images).cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX returns one dict per device.
    cost = cost[0]
  return params, cost["flops"] / 1e9


def rows_to_measure(selected: list[str] | None):
  rows = []
  for name in models.available_models():
    for size in models.get_spec(name).paper_image_sizes:
      rows.append((name, {}, size))
    rows.extend((n, o, 224) for n, o in EXTRA_ROWS if n == name)
  return [r for r in rows if not selected or r[0] in selected]


def write_tables(results: list[dict], out_dir: str) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "model_table.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(results)
  lines = [
      "# Model table",
      "",
      "Every registry model at the image size(s) the paper reports it at, for "
      "1000 classes. Generated by `python scripts/model_table.py`; do not edit.",
      "",
      "- **params**: trainable parameters (`nnx.Param`; batch-norm running "
      "statistics excluded), counted on abstract models (`nnx.eval_shape`).",
      "- **GFLOPs (XLA)**: XLA's cost analysis of the lowered inference forward "
      "pass for one image (not compiled, not run). XLA counts 2 FLOPs per "
      "multiply-add and includes element-wise work, so papers that quote "
      "multiply-adds as FLOPs (e.g. ResNet-50 ≈ 4.1B) show about half. "
      "Lambda layers count the execution `method='auto'` picks for each "
      "layer's map size (`ops.choose_method`): the row convolution it picks "
      "on larger maps does more multiply-adds than the 2-D lambda "
      "convolution, in exchange for a far faster kernel.",
      "- **paper**: parameters and ImageNet top-1 from PAPER.md (Tables 3–4, "
      "the hybrid table, the speed–accuracy table, and the EfficientNet "
      "reference points). Blank: the paper gives no number.",
      "",
      "| model | overrides | image | params | GFLOPs (XLA) | paper params | "
      "paper top-1 | source |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in results:
    lines.append(
        f"| {r['model']} | {r['overrides'] or '—'} | {r['image_size']} | "
        f"{r['params_m']}M | {r['gflops_xla']} | {r['paper_params'] or ''} | "
        f"{r['paper_top1'] or ''} | {r['paper_source'] or ''} |")
  with open(os.path.join(out_dir, "model_table.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="*", help="registry names (default: all)")
  parser.add_argument("--out_dir", default=os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs"))
  args = parser.parse_args()
  results = []
  for name, overrides, size in rows_to_measure(args.models):
    start = time.time()
    params, gflops = measure(name, overrides, size)
    text = " ".join(f"{k}={v}" for k, v in overrides.items())
    paper = PAPER.get((name, text, size), ("", "", ""))
    results.append(dict(
        model=name, overrides=text, image_size=size,
        params_m=f"{params / 1e6:.2f}", gflops_xla=f"{gflops:.2f}",
        paper_params=paper[0], paper_top1=paper[1], paper_source=paper[2]))
    print(f"{name:26s} {text:34s} {size:4d} {params:>12,d} params "
          f"{gflops:8.2f} GFLOPs ({time.time() - start:.0f}s)", flush=True)
  write_tables(results, args.out_dir)


if __name__ == "__main__":
  main()
