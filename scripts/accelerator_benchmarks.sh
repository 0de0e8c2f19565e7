#!/usr/bin/env bash
# The throughput checks to run once on an accelerator (GPU or TPU host), in order:
#   1. the lambda layer benchmark at training shapes, fp32 and bf16, and the
#      calibration of `method="auto"`'s cost table for this platform;
#   2. Table 4 at batch 128, 224 px, bf16 (throughput, peak memory, MFU);
#   3. training/inference throughput and MFU of lambda_resnet50/101/152 at the
#      paper's sizes and efficientnet_b0–b4, bf16, and the speed–accuracy table;
#   4. a profiler trace of the lambda_resnet50 training step;
#   5. with TIMM_PYTHON (an interpreter with torch + timm), our models against
#      timm's, float32, train step and inference (scripts.compare_timm).
# Results go to docs/*_<device>.* (DEVICE, default: h100); link them from the
# README. Each step prints whether the platform's cost table was calibrated.
#
#   DEVICE=h100 BATCH=128 bash scripts/accelerator_benchmarks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-h100}"
BATCH="${BATCH:-128}"
PYTHON="${PYTHON:-python}"
OUT="results/accelerator_${DEVICE}"
mkdir -p "$OUT"

# 1. Layers: 256 channels, 14²–64², batch 32–128, fp32 and bf16; calibrate.
for dtype in float32 bfloat16; do
  for batch in 32 128; do
    "$PYTHON" -m scripts.benchmark_layers --sizes 14 28 56 64 --batch "$batch" \
        --channels 256 --dtype "$dtype" --out "$OUT/layers_${dtype}_b${batch}"
  done
done
"$PYTHON" -m scripts.benchmark_layers --calibrate "$OUT"/layers_bfloat16_b*/benchmark_layers.csv
for dtype in float32 bfloat16; do
  cp "$OUT/layers_${dtype}_b${BATCH}/benchmark_layers.csv" "docs/benchmark_layers_${DEVICE}_${dtype}.csv"
  cp "$OUT/layers_${dtype}_b${BATCH}/benchmark_layers.md" "docs/benchmark_layers_${DEVICE}_${dtype}.md"
done

# 2. Table 4 (inference, as the paper) at batch 128, bf16.
"$PYTHON" -m scripts.benchmark_models table4 --batch 128 --dtype bfloat16 --out "docs/table4_${DEVICE}"

# 3. Speed–accuracy: training steps and inference, bf16, paper sizes.
"$PYTHON" -m scripts.benchmark_models throughput --dtype bfloat16 --batch-sizes "$BATCH" \
    --image-sizes paper --models lambda_resnet50 lambda_resnet101 lambda_resnet152 \
    resnet50 resnet50_lambda efficientnet_b0 efficientnet_b1 efficientnet_b2 \
    efficientnet_b3 efficientnet_b4 --out "docs/benchmarks_${DEVICE}.csv"
"$PYTHON" -m scripts.speed_accuracy --benchmarks "docs/benchmarks_${DEVICE}.csv" \
    --out "docs/speed_accuracy_${DEVICE}"

# 4. A profile of the lambda_resnet50 training step (open with TensorBoard or
#    Perfetto); its MFU is in docs/benchmarks_${DEVICE}.csv.
"$PYTHON" - "$OUT" "$BATCH" <<'EOF'
import pathlib, sys
import jax
from lambda_networks.benchmarks import compiled_steps as steps
out, batch = pathlib.Path(sys.argv[1]), int(sys.argv[2])
step = steps.build_step("lambda_resnet50", {"dtype": "bfloat16"},
                        image_size=160, batch_size=batch, mode="train")
steps.time_step(step, "train", warmup=3, repeats=1, max_seconds=60)
with jax.profiler.trace(str(out / "profile_lambda_resnet50")):
  steps.time_step(step, "train", warmup=0, repeats=10, max_seconds=60)
print(f"trace in {out}/profile_lambda_resnet50")
EOF
# 5. Our models against timm's (needs torch + timm in another venv: see
#    scripts/compare_timm.py), float32, 256 px.
if [[ -n "${TIMM_PYTHON:-}" ]]; then
  "$PYTHON" -m scripts.compare_timm --timm-python "$TIMM_PYTHON" \
      --batch-size "$BATCH" --rounds 3 --steps 10 --warmup 5 \
      --out "docs/compare_timm_${DEVICE}"
else
  echo "skipped scripts.compare_timm: set TIMM_PYTHON to a python with torch + timm"
fi
echo "done: docs/*_${DEVICE}.* and lambda_networks/pair_cost.json (this platform's table)"
