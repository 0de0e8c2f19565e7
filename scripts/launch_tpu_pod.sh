#!/usr/bin/env bash
# Runs the same train.py (or eval.py) command on every worker of a Cloud TPU VM
# pod slice, with the workdir on a Cloud Storage bucket (all workers share it).
#
#   scripts/launch_tpu_pod.sh --tpu NAME --zone ZONE [options] -- TRAIN_ARGS...
#
# Steps (each printed before it runs; --dry-run prints them and runs nothing):
#   1. with --create: create the TPU VM slice unless it exists
#      (gcloud compute tpus tpu-vm create);
#   2. copy this checkout to every worker (tar + tpu-vm scp --worker=all),
#      unless --no-copy;
#   3. with --setup: make a venv there and install requirements.txt and
#      jax[tpu];
#   4. run `python ENTRY --distributed=on TRAIN_ARGS` on all workers at once
#      (tpu-vm ssh --worker=all); jax.distributed finds the other workers
#      from the TPU metadata (a --distributed=... in TRAIN_ARGS wins).
#
# Options:
#   --tpu NAME              TPU VM name (required)
#   --zone ZONE             e.g. europe-west4-a (required)
#   --project PROJECT       gcloud project (default: gcloud's)
#   --accelerator TYPE      with --create, e.g. v3-8, v3-32, v4-32 (default v3-32)
#   --version VERSION       with --create, TPU software (default tpu-ubuntu2204-base)
#   --spot                  with --create, a Spot (preemptible) slice
#   --create                create the slice if it does not exist
#   --setup                 install the Python environment on the workers
#   --no-copy               do not copy the code (it is there already)
#   --entry FILE            train.py (default) or eval.py
#   --remote-dir DIR        code directory on the workers (default lambda-networks-jax)
#   --detach                run in the background on the workers (nohup), log to
#                           ~/ENTRY.log there; the command returns at once
#   --delete-after          delete the slice when the (foreground) run ends
#   --allow-local-workdir   accept a --workdir that is not gs:// (single host only)
#   --dry-run               print the commands, run nothing
#
# Example (the LambdaResNet-152 at 256 of the speed–accuracy table):
#   scripts/launch_tpu_pod.sh --tpu lambda-pod --zone europe-west4-a \
#     --accelerator v3-32 --create --setup -- \
#     --config=configs/lambda_resnet.py:152,256 \
#     --workdir=gs://MY_BUCKET/runs/lambda_resnet152_256 \
#     --config.data_dir=gs://MY_BUCKET/tensorflow_datasets
set -euo pipefail

. "$(dirname "$0")/launch_common.sh"
TPU_NAME="" ZONE="" PROJECT="" ACCELERATOR="v3-32" VERSION="tpu-ubuntu2204-base"
SPOT=0 CREATE=0 SETUP=0 COPY=1 DETACH=0 DELETE_AFTER=0 ALLOW_LOCAL=0
REMOTE_DIR="lambda-networks-jax"
JAX_TPU="jax[tpu]~=0.10.2"
VALUE_OPTIONS="tpu:TPU_NAME zone:ZONE project:PROJECT accelerator:ACCELERATOR
  version:VERSION remote-dir:REMOTE_DIR"
FLAG_OPTIONS="spot:SPOT=1 create:CREATE=1 setup:SETUP=1 no-copy:COPY=0
  detach:DETACH=1 delete-after:DELETE_AFTER=1 allow-local-workdir:ALLOW_LOCAL=1"
parse_options "$@"

[[ -n "$TPU_NAME" ]] || die "--tpu NAME is required"
[[ -n "$ZONE" ]] || die "--zone ZONE is required (e.g. europe-west4-a)"
[[ -n "$WORKDIR" ]] || die "pass --workdir=gs://BUCKET/DIR after -- (the train.py arguments)"
if [[ "$WORKDIR" != gs://* && "$ALLOW_LOCAL" == 0 ]]; then
  die "--workdir=$WORKDIR is not on a bucket: every worker writes checkpoints \
there, so it must be gs://BUCKET/DIR (or pass --allow-local-workdir on one host)"
fi

LOCATION=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && LOCATION+=(--project="$PROJECT")

# Prints a command (shell-quoted), then runs it unless this is a dry run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if ((DRY_RUN == 0)); then "$@"; fi
}

# 1. The slice.
if ((CREATE)); then
  if ((DRY_RUN)) || ! gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOCATION[@]}" \
      >/dev/null 2>&1; then
    CREATE_ARGS=(--accelerator-type="$ACCELERATOR" --version="$VERSION")
    ((SPOT)) && CREATE_ARGS+=(--spot)
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION[@]}" "${CREATE_ARGS[@]}"
  else
    echo "TPU VM $TPU_NAME exists; using it."
  fi
fi

# 2. The code, on every worker.
ARCHIVE_NAME="lambda_networks_code.tar.gz"
if ((COPY)); then
  ARCHIVE="${TMPDIR:-/tmp}/$ARCHIVE_NAME"
  run tar -czf "$ARCHIVE" -C "$REPO" --exclude=.venv --exclude=.git \
    --exclude=results --exclude=__pycache__ --exclude=.pytest_cache .
  run gcloud compute tpus tpu-vm scp "$ARCHIVE" "$TPU_NAME:~/$ARCHIVE_NAME" \
    --worker=all "${LOCATION[@]}"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all \
    --command="mkdir -p ~/$REMOTE_DIR && tar -xzf ~/$ARCHIVE_NAME -C ~/$REMOTE_DIR"
fi

# 3. The Python environment.
if ((SETUP)); then
  SETUP_COMMAND="cd ~/$REMOTE_DIR && python3 -m venv .venv && . .venv/bin/activate \
&& pip install --quiet --upgrade pip && pip install --quiet -r requirements.txt \
&& pip install --quiet '$JAX_TPU'"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all \
    --command="$SETUP_COMMAND"
fi

# 4. The same command on all workers.
QUOTED_ARGS="$(printf ' %q' "${TRAIN_ARGS[@]}")"
if [[ -z "$DISTRIBUTED" ]]; then QUOTED_ARGS=" --distributed=on$QUOTED_ARGS"; fi
REMOTE="cd ~/$REMOTE_DIR && . .venv/bin/activate && python $ENTRY$QUOTED_ARGS"
if ((DETACH)); then
  REMOTE="cd ~/$REMOTE_DIR && . .venv/bin/activate && nohup python $ENTRY$QUOTED_ARGS \
> ~/${ENTRY%.py}.log 2>&1 &"
fi
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker=all \
  --command="$REMOTE"

if ((DELETE_AFTER && !DETACH)); then
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION[@]}" --quiet
fi
