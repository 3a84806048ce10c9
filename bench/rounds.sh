#!/usr/bin/env bash
# Side-by-side rounds for issue 17's bars: each round runs, in one sitting, the study's training steps
# and the stories260K forward, ours at 1 and at 2 wasm threads, each against the PyTorch peer at its
# best thread count (1 or 2). Every record goes, tagged with its round, to bench/records/<name>.jsonl;
# `npx tsx bench/summarize.ts <file>` gives the medians over rounds, best thread count against best.
#   bash bench/rounds.sh [ROUNDS=3] [NAME=study-vs-torch-$(date +%F)]
# Env: BENCH_FILTERS="train/study lm" (which benchmarks), BENCH_QUICK=1 (fewer repetitions, to try the
# script), IS_PEER_QUIET_WAIT=S (the peer waits up to S seconds, default 600, for the cores to go quiet).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
name=${2:-study-vs-torch-$(date +%F)}
out="bench/records/$name.jsonl"
mkdir -p bench/records
for r in $(seq 1 "$rounds"); do
  for threads in 1 2; do
    for filter in ${BENCH_FILTERS:-train/study lm}; do
      echo "round $r: IS_WASM_THREADS=$threads npm run bench -- --filter $filter --torch" >&2
      IS_WASM_THREADS=$threads npx tsx scripts/bench.ts --filter "$filter" --torch ${BENCH_QUICK:+--quick} |
        sed "s/}\$/, \"round\": $r, \"command\": \"IS_WASM_THREADS=$threads npm run bench -- --filter ${filter//\//\\/} --torch\"}/" >>"$out"
    done
  done
done
echo "records: $out" >&2
npx tsx bench/summarize.ts "$out"
