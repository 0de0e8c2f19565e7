# Sourced by scripts/launch_slurm.sh and scripts/launch_tpu_pod.sh: --help
# from the launcher's header comment, errors, and the option parsing.
#
# A launcher sets VALUE_OPTIONS ("name:VAR ...": `--name VALUE` and
# `--name=VALUE` set VAR, or append to the array VAR with "name:VAR[]") and
# FLAG_OPTIONS ("name:VAR=VALUE ...") and calls `parse_options "$@"`
# (--entry, --dry-run and --help are everyone's). Then TRAIN_ARGS holds the
# arguments after --, and CONFIG, WORKDIR and DISTRIBUTED their --config=,
# --workdir= and --distributed= flags (empty where missing).

REPO="$(cd "$(dirname "$0")/.." && pwd)"
ENTRY="train.py" DRY_RUN=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# Prints what the list $2 ("name:TARGET ...") holds for option $1, or fails.
option_target() {
  local pair
  for pair in $2; do
    if [[ "--${pair%%:*}" == "$1" ]]; then echo "${pair#*:}"; return 0; fi
  done
  return 1
}

parse_options() {
  local target arg
  while (($#)); do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --) shift; break ;;
    esac
    if target="$(option_target "${1%%=*}" "entry:ENTRY $VALUE_OPTIONS")"; then
      if [[ "$1" == *=* ]]; then set -- "${1%%=*}" "${1#*=}" "${@:2}"; fi
      (($# > 1)) || die "$1 needs a value"
      if [[ "$target" == *"[]" ]]; then
        eval "${target%[]}+=(\"\$2\")"
      else
        printf -v "$target" '%s' "$2"
      fi
      shift 2
    elif target="$(option_target "$1" "dry-run:DRY_RUN=1 $FLAG_OPTIONS")"; then
      printf -v "${target%%=*}" '%s' "${target#*=}"
      shift
    else
      die "unknown option $1 (train.py arguments go after --); see --help"
    fi
  done
  TRAIN_ARGS=("$@")
  [[ "$ENTRY" == "train.py" || "$ENTRY" == "eval.py" ]] \
    || die "--entry must be train.py or eval.py, got $ENTRY"
  CONFIG="" WORKDIR="" DISTRIBUTED=""
  for arg in "$@"; do
    case "$arg" in
      --config=*) CONFIG="${arg#--config=}" ;;
      --workdir=*) WORKDIR="${arg#--workdir=}" ;;
      --distributed=*) DISTRIBUTED="$arg" ;;
    esac
  done
  [[ -n "$CONFIG" ]] || die "pass --config=configs/<file>.py after -- (the train.py arguments)"
}
