#!/usr/bin/env bash
# The one device call of a session lent a GPU: three trainings share it, each handing its weights
# back every minute (gpu_train.sh), and the call returns only when all have finished.
#
#   bash model/gpu_session.sh [minutes]          (default 8.5; writes under $OUT; BATCH=64)
#   A dry run here: OUT=/tmp/s PYTHON=/usr/bin/python3 BATCH=2 bash model/gpu_session.sh 0.05
#
#   p16ctx: a new model with the wider window (P_max = 16, l = 4: over 3x in chunks of 4) and context
#           noise (conditioning frames noised at t ~ U[0, 200] in training) against drift.
#   p16wctx: the shipped weights widened to P_max = 16 (train.py --widen-to: the temporal embedding
#           keeps its harmonics, so training starts near the shipped model), with context noise.
#   p12ctx: the shipped weights, resumed with context noise: the fallback if both P16 runs fall short.
# Back on the dev machine: export_onnx.py, eval.py, the bench (model/README.md, "The next GPU session").
set -uo pipefail
cd "$(dirname "$0")"
MINUTES="${1:-8.5}"
: "${OUT:?set OUT}"
mkdir -p "$OUT"
bash gpu_train.sh "$OUT/p16ctx" --preset small --p-max 16 --chunk 4 --context-noise 200 --batch "${BATCH:-64}" --lr 8e-4 \
  --warmup 300 --minutes "$MINUTES" --log-every 200 --diag-every 2000 --compile > "$OUT/p16ctx.out" 2>&1 &
A=$!
bash gpu_resume.sh "$MINUTES" "$OUT/p16wctx" --widen-to 16 --context-noise 200 > "$OUT/p16wctx.out" 2>&1 &
B=$!
bash gpu_resume.sh "$MINUTES" "$OUT/p12ctx" --context-noise 200 > "$OUT/p12ctx.out" 2>&1 &
C=$!
wait $A; echo "p16ctx exit $?"
wait $B; echo "p16wctx exit $?"
wait $C; echo "p12ctx exit $?"
tail -n 3 "$OUT/p16ctx/train.log" "$OUT/p16wctx/train.log" "$OUT/p12ctx/train.log"
