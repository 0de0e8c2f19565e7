#!/usr/bin/env bash
# Submits train.py (or eval.py) as a SLURM job on a GPU cluster: one process
# per GPU on every node (jax.distributed finds the others from SLURM's
# variables), the workdir on a file system all nodes share.
#
#   scripts/launch_slurm.sh [options] -- TRAIN_ARGS...
#
# Writes a batch script (printed with --dry-run, which submits nothing) and
# runs `sbatch` on it. The job asks SLURM for SIGTERM 5 minutes before its
# time limit (and before a preemption); the trainer then saves a checkpoint,
# and the same command resumes from it. The job is requeueable (--requeue):
# one preempted or whose node failed goes back in the queue and resumes by
# itself, on any node, once the old trainer's workdir lease runs out; its log
# is appended to, not overwritten.
#
# Options:
#   --nodes N               nodes (default 1)
#   --gpus-per-node G       GPUs per node, one process each (default 8)
#   --cpus-per-task C       CPU cores per process, for the input pipeline (default 8)
#   --mem MEM               memory per node, e.g. 400G (default: SLURM's)
#   --time HH:MM:SS         time limit (default 48:00:00)
#   --partition P           SLURM partition
#   --account A             SLURM account
#   --job-name NAME         job name (default lambda-networks)
#   --venv DIR              Python environment to activate (default REPO/.venv)
#   --entry FILE            train.py (default) or eval.py
#   --script-dir DIR        where the batch script goes (default WORKDIR/slurm,
#                           or REPO/results/slurm for a bucket workdir)
#   --sbatch-arg ARG        extra sbatch option, e.g. --sbatch-arg=--exclusive (repeatable)
#   --dry-run               print the batch script and the sbatch command only
#
# Example (the all-lambda ResNet-50 of Table 3 on 4 nodes × 8 GPUs):
#   scripts/launch_slurm.sh --nodes 4 --gpus-per-node 8 --time 72:00:00 -- \
#     --config=configs/resnet50_90ep.py:resnet50_lambda \
#     --workdir=/shared/runs/resnet50_lambda --config.data_dir=/shared/tensorflow_datasets
set -euo pipefail

. "$(dirname "$0")/launch_common.sh"
NODES=1 GPUS=8 CPUS=8 MEM="" TIME="48:00:00" PARTITION="" ACCOUNT=""
JOB_NAME="lambda-networks" VENV="$REPO/.venv" SCRIPT_DIR="" EXTRA=()
VALUE_OPTIONS="nodes:NODES gpus-per-node:GPUS cpus-per-task:CPUS mem:MEM time:TIME
  partition:PARTITION account:ACCOUNT job-name:JOB_NAME venv:VENV
  script-dir:SCRIPT_DIR sbatch-arg:EXTRA[]"
FLAG_OPTIONS=""
parse_options "$@"

for pair in "nodes:$NODES" "gpus-per-node:$GPUS" "cpus-per-task:$CPUS"; do
  [[ "${pair#*:}" =~ ^[1-9][0-9]*$ ]] || die "--${pair%%:*} must be a positive integer, got ${pair#*:}"
done
[[ -n "$WORKDIR" ]] || die "pass --workdir=DIR after -- (on a file system every node sees)"
if [[ -z "$SCRIPT_DIR" ]]; then
  if [[ "$WORKDIR" == *://* ]]; then SCRIPT_DIR="$REPO/results/slurm"; else SCRIPT_DIR="$WORKDIR/slurm"; fi
fi
SCRIPT="$SCRIPT_DIR/$JOB_NAME.sbatch"

batch_script() {
  echo "#!/usr/bin/env bash"
  echo "#SBATCH --job-name=$JOB_NAME"
  echo "#SBATCH --nodes=$NODES"
  echo "#SBATCH --ntasks-per-node=$GPUS"
  echo "#SBATCH --gpus-per-node=$GPUS"
  echo "#SBATCH --cpus-per-task=$CPUS"
  echo "#SBATCH --time=$TIME"
  echo "#SBATCH --signal=TERM@300"
  echo "#SBATCH --requeue"
  echo "#SBATCH --open-mode=append"
  echo "#SBATCH --output=$SCRIPT_DIR/%x-%j.out"
  [[ -n "$MEM" ]] && echo "#SBATCH --mem=$MEM"
  [[ -n "$PARTITION" ]] && echo "#SBATCH --partition=$PARTITION"
  [[ -n "$ACCOUNT" ]] && echo "#SBATCH --account=$ACCOUNT"
  for extra in "${EXTRA[@]}"; do echo "#SBATCH $extra"; done
  echo "set -euo pipefail"
  echo "cd $(printf '%q' "$REPO")"
  echo ". $(printf '%q' "$VENV")/bin/activate"
  echo "# One process per GPU; every process sees all GPUs of its node and JAX"
  echo "# picks GPU \$SLURM_LOCALID (jax.distributed's SLURM auto-detection)."
  printf 'srun --kill-on-bad-exit=1 --gpu-bind=none python %q --distributed=auto' "$ENTRY"
  printf ' %q' "${TRAIN_ARGS[@]}"
  printf '\n'
}

if ((DRY_RUN)); then
  echo "# batch script $SCRIPT (not written: dry run)"
  batch_script
  printf '+ sbatch %q\n' "$SCRIPT"
  exit 0
fi
mkdir -p "$SCRIPT_DIR"
batch_script > "$SCRIPT"
echo "wrote $SCRIPT"
printf '+ sbatch %q\n' "$SCRIPT"
sbatch "$SCRIPT"
