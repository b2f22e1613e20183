#!/usr/bin/env bash
# Issue 31's measurements in one go, on an idle machine (about 10 min on a 2-core CPU):
# bnbench's loop against the strongest plain loop, the tutorial loop and the same round's
# GEMM; the speed switches (train.fused_optimizer, train.compile) beside the default loop;
# batch 2 on the half-width claims CNN; where a claim sweep's time goes. Every command writes
# its bench.json/bench.csv under $OUT/<name>/ and its table to $OUT/log.txt; what to read
# from them is in docs/performance.md ("Issue 31: to be measured").
#
#   scripts/bench_issue31.sh            # CPU; adds the CUDA runs when a GPU is present
#   OUT=results/bench/mine ROUNDS=9 scripts/bench_issue31.sh
set -euo pipefail

cd "$(dirname "$0")/.."
BNBENCH=${BNBENCH:-.venv/bin/bnbench}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/bench/issue31}
ROUNDS=${ROUNDS:-7}
mkdir -p "$OUT"
LOG="$OUT/log.txt"

{
  echo "# $(date -Is) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (idle: below 0.3)"
} | tee "$LOG"

bench() {  # bench NAME ARGS...: one bnbench bench command, its output in the log
  local name=$1
  shift
  echo "## $name: bnbench bench $*" | tee -a "$LOG"
  "$BNBENCH" bench --out "$OUT/$name" "$@" 2>&1 | tee -a "$LOG"
}

# Targets at batch 128, 1 thread: >= 1.25x the plain loop, >= 55% of the same-round GEMM.
# Both norms, at 1 thread and every core (the bench's default threads).
bench b128 --rounds "$ROUNDS"
# The fused optimizer beside the default loop, at 1 thread (as each sweep worker runs).
bench b128-fused --rounds "$ROUNDS" --threads 1 --norm batch --fused-optimizer
# torch.compile: its compile seconds and the steps that repay them.
bench b128-compile --rounds 3 --threads 1 --norm batch --compile
# Target at batch 2, half-width CNN (claim 7's smallest batch): step time >= 30% lower than
# bnbench_default's, the loop of today.
bench b2-fused --rounds "$ROUNDS" --threads 1 --norm batch --batch-size 2 --widths 16,32,64 \
  --steps 300 --fused-optimizer
bench b2-compile --rounds 3 --threads 1 --norm batch --batch-size 2 --widths 16,32,64 \
  --steps 300 --compile
# Where a claim sweep's time goes (claim 9's sweep at one seed, the old way and the new).
echo "## sweep: bnbench bench --sweep --seeds 1" | tee -a "$LOG"
"$BNBENCH" bench --sweep --seeds 1 --out "$OUT/sweep" 2>&1 | tee -a "$LOG"

if "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  bench cuda-b128 --device cuda --rounds "$ROUNDS" --threads 1 --fused-optimizer
  bench cuda-b2 --device cuda --rounds "$ROUNDS" --threads 1 --norm batch --batch-size 2 \
    --widths 16,32,64 --steps 300 --fused-optimizer
  bench cuda-b128-compile --device cuda --rounds 3 --threads 1 --norm batch --compile
  echo "## cuda-sweep: bnbench bench --sweep --seeds 1 --device cuda" | tee -a "$LOG"
  "$BNBENCH" bench --sweep --seeds 1 --device cuda --out "$OUT/cuda-sweep" 2>&1 | tee -a "$LOG"
fi
echo "# $(date -Is) done; load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
