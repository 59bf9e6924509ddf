#!/usr/bin/env bash
# Train on a lent GPU in one call and hand the weights back while it runs.
#
#   bash model/gpu_train.sh OUT_DIR [train.py arguments...]
#
# Runs train.py (checkpoints every minute) and copies ema_fp16.pt, model_fp16.pt and train.log
# to OUT_DIR every minute and on exit, so a call cut short by its time limit still returns the
# newest weights. Two of these can share one GPU (one folder each). Back on the dev machine, copy
# the .pt files over model/checkpoints/ and run export_onnx.py and eval.py (model/README.md).
set -euo pipefail
cd "$(dirname "$0")"
DEST="${1:?give an out dir}"
shift
RUN="runs/gpu-$(basename "$DEST")-$(date +%Y%m%d-%H%M%S)"
PY="${PYTHON:-python3}"
mkdir -p "$RUN" "$DEST"

copy_back() { cp "$RUN"/ema_fp16.pt "$RUN"/model_fp16.pt "$DEST"/ 2>/dev/null || true; }
( while sleep 60; do copy_back; done ) >/dev/null 2>&1 &
COPIER=$!
trap 'pkill -P $COPIER 2>/dev/null || true; kill $COPIER 2>/dev/null || true; copy_back' EXIT

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU visible: training on the CPU"
PYTHONUNBUFFERED=1 "$PY" train.py --out "$RUN" --ckpt-minutes 1 "$@" 2>&1 | tee "$DEST/train.log"
