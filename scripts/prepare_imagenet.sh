#!/usr/bin/env bash
# Builds the TFDS imagenet2012 dataset from the manually downloaded archives.
#
#   scripts/prepare_imagenet.sh --manual-dir DIR [--data-dir DIR] [--copy-to gs://...]
#
# ImageNet cannot be downloaded automatically: register at
# https://image-net.org/download-images, download ILSVRC2012_img_train.tar
# (about 138 GB) and ILSVRC2012_img_val.tar (about 6.3 GB) into one directory,
# then run this once. It writes the TFRecords (about 150 GB) under
# DATA_DIR/imagenet2012/<version>; point training at them with
# --config.data_dir=DATA_DIR. Building takes a few hours on a many-core machine.
#
# Options:
#   --manual-dir DIR   directory holding the two archives (required)
#   --data-dir DIR     TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)
#   --copy-to URL      afterwards copy DATA_DIR/imagenet2012 there (e.g.
#                      gs://BUCKET/tensorflow_datasets, for TPU pods)
#   --python PYTHON    interpreter with tensorflow-datasets (default: python)
#   --dry-run          check the archives, print the commands, run nothing
#
# The Python API is used rather than `tfds build`, whose command line needs
# apache_beam, which requirements.txt does not install.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "prepare_imagenet.sh: $*" >&2; exit 2; }

MANUAL_DIR="" DATA_DIR="${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}" COPY_TO=""
PYTHON="python" DRY_RUN=0
while (($#)); do
  case "$1" in
    --manual-dir) MANUAL_DIR="${2:?--manual-dir needs a value}"; shift 2 ;;
    --data-dir) DATA_DIR="${2:?--data-dir needs a value}"; shift 2 ;;
    --copy-to) COPY_TO="${2:?--copy-to needs a value}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1; see --help" ;;
  esac
done
[[ -n "$MANUAL_DIR" ]] || die "--manual-dir DIR (holding ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar) is required"

missing=()
for archive in ILSVRC2012_img_train.tar ILSVRC2012_img_val.tar; do
  [[ -f "$MANUAL_DIR/$archive" ]] || missing+=("$archive")
done
if ((${#missing[@]})); then
  message="missing in $MANUAL_DIR: ${missing[*]} (download them from https://image-net.org/download-images)"
  if ((DRY_RUN)); then echo "warning: $message" >&2; else die "$message"; fi
fi

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if ((DRY_RUN == 0)); then "$@"; fi
}

BUILD="import sys, tensorflow_datasets as tfds; \
builder = tfds.builder('imagenet2012', data_dir=sys.argv[1]); \
builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=sys.argv[2])); \
print(builder.info.splits)"
run mkdir -p "$DATA_DIR"
run "$PYTHON" -c "$BUILD" "$DATA_DIR" "$MANUAL_DIR"
if [[ -n "$COPY_TO" ]]; then
  run gcloud storage cp --recursive "$DATA_DIR/imagenet2012" "${COPY_TO%/}/"
fi
((DRY_RUN)) || echo "imagenet2012 is ready in $DATA_DIR; train with --config.data_dir=${COPY_TO:-$DATA_DIR}"
