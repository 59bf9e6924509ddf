#!/usr/bin/env bash
# Continue training the shipped weights on a lent GPU, in one call, and hand the weights back.
#
#   bash model/gpu_resume.sh [minutes] [out-dir] [more train.py arguments...]
#                                                     (defaults: 9 minutes, $OUT; BATCH=64)
#
# Resumes from model/checkpoints/{ema,model}_fp16.pt with a fresh optimizer (the raw weights carry
# on training, the EMA continues from the shipped EMA); gpu_train.sh copies the fp16 weights and
# the log to the out dir every minute. Runs on torch 2.x with CUDA (bf16, torch.compile) or torch
# 1.13 on a CPU.
set -euo pipefail
cd "$(dirname "$0")"
MINUTES="${1:-9}"
DEST="${2:-${OUT:?give an out dir or set OUT}}"
shift $(( $# < 2 ? $# : 2 ))
exec bash gpu_train.sh "$DEST" \
  --resume checkpoints/ema_fp16.pt --resume-raw checkpoints/model_fp16.pt --fresh-optimizer \
  --batch "${BATCH:-64}" --lr 2.5e-4 --min-lr-frac 0.05 --warmup 100 --minutes "$MINUTES" \
  --log-every 200 --diag-every 2000 --compile "$@"
