#!/usr/bin/env bash
# Continue training the shipped weights on a lent GPU, in one call, and hand the weights back.
#
#   bash model/gpu_resume.sh [minutes] [out-dir]      (defaults: 9 minutes, $OUT; BATCH=64)
#
# Resumes from model/checkpoints/{ema,model}_fp16.pt with a fresh optimizer (the raw weights carry
# on training, the EMA continues from the shipped EMA) and copies the fp16 weights and the loss log
# to the out dir every minute, so a call cut short by its time limit still returns the newest
# weights. Back on the dev machine, copy them over model/checkpoints/ and run export_onnx.py and
# eval.py (model/README.md). Runs on torch 2.x with CUDA (bf16 autocast) or torch 1.13 on a CPU.
set -euo pipefail
cd "$(dirname "$0")"
MINUTES="${1:-9}"
DEST="${2:-${OUT:?give an out dir or set OUT}}"
RUN="runs/resume-$(date +%Y%m%d-%H%M%S)"
PY="${PYTHON:-python3}"
mkdir -p "$RUN" "$DEST"

copy_back() { cp "$RUN"/ema_fp16.pt "$RUN"/model_fp16.pt "$RUN"/loss.jsonl "$DEST"/ 2>/dev/null || true; }
( while sleep 60; do copy_back; done ) &
COPIER=$!
trap 'kill $COPIER 2>/dev/null || true; copy_back' EXIT

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU visible: training on the CPU"
PYTHONUNBUFFERED=1 "$PY" train.py \
  --resume checkpoints/ema_fp16.pt --resume-raw checkpoints/model_fp16.pt --fresh-optimizer \
  --batch "${BATCH:-64}" --lr 2.5e-4 --min-lr-frac 0.05 --warmup 100 --minutes "$MINUTES" \
  --ckpt-minutes 1 --log-every 200 --diag-every 2000 --out "$RUN" 2>&1 | tee "$DEST/train.log"
