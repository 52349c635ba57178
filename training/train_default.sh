#!/usr/bin/env bash
# Train the package's default model: teacher, then distillation, on MSRS_train + RoadScene_train.
#   bash training/train_default.sh DATA_ROOT RUN_DIR [--set name=value ...]
# DATA_ROOT holds MSRS_train/ and RoadScene_train/ (../shared/data/ivif, or a packed copy).
set -euo pipefail
data=$1; run=$2; shift 2
train() { if command -v lutfuse-train >/dev/null; then lutfuse-train "$@"; else python3 -m lutfuse_training.cli "$@"; fi; }
cfg="$(dirname "$0")/configs/default.yaml"
sets=("$data/MSRS_train" "$data/RoadScene_train")
train teacher --config "$cfg" --data "${sets[@]}" --out "$run" "$@"
train distill --config "$cfg" --teacher "$run/teacher.pt" --data "${sets[@]}" --out "$run" "$@"
