#!/usr/bin/env bash
# The one device call of a session lent a GPU: four trainings share it, each handing its weights
# back every minute (gpu_train.sh), and the call returns only when all have finished.
#
#   bash model/gpu_session.sh [minutes]          (default 8.5; writes under $OUT; BATCH=64)
#   A dry run here: OUT=/tmp/s PYTHON=/usr/bin/python3 BATCH=2 bash model/gpu_session.sh 0.05
#
# The open gate is the object count, lost from the second generated chunk on, when the model
# conditions on its own frames (model/README.md, "Where the count is lost"). Three runs resume the
# shipped weights with a remedy each; one trains the wider window from scratch:
#   p12ctx:    context noise (conditioning frames noised at t ~ U[0, 200] in training).
#   p12own:    own history (half of each batch conditions chunks 2-3 on the model's own continuation
#              of chunk 0, 8 DDIM steps, targets stay true).
#   p12ownctx: both.
#   p16ctx:    a new model with the wider window (P_max = 16, l = 4) and context noise.
# Back on the dev machine: export_onnx.py, eval.py, the bench (model/README.md, "The next GPU session").
set -uo pipefail
cd "$(dirname "$0")"
MINUTES="${1:-8.5}"
: "${OUT:?set OUT}"
mkdir -p "$OUT"
bash gpu_resume.sh "$MINUTES" "$OUT/p12ctx" --context-noise 200 > "$OUT/p12ctx.out" 2>&1 &
A=$!
bash gpu_resume.sh "$MINUTES" "$OUT/p12own" --own-history 0.5 --own-steps 8 > "$OUT/p12own.out" 2>&1 &
B=$!
bash gpu_resume.sh "$MINUTES" "$OUT/p12ownctx" --own-history 0.5 --own-steps 8 --context-noise 200 \
  > "$OUT/p12ownctx.out" 2>&1 &
C=$!
bash gpu_train.sh "$OUT/p16ctx" --preset small --p-max 16 --chunk 4 --context-noise 200 --batch "${BATCH:-64}" --lr 8e-4 \
  --warmup 300 --minutes "$MINUTES" --log-every 200 --diag-every 2000 --compile > "$OUT/p16ctx.out" 2>&1 &
D=$!
for run in "p12ctx $A" "p12own $B" "p12ownctx $C" "p16ctx $D"; do
  set -- $run; wait "$2"; echo "$1 exit $?"
done
for name in p12ctx p12own p12ownctx p16ctx; do echo "== $name"; tail -n 3 "$OUT/$name/train.log"; done
