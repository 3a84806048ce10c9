#!/usr/bin/env bash
# The training step of two revisions side by side (issue 15, item 9: "nothing slower"): every model and variant at
# S1/S2/S3 (bench/train.bench.ts, B = 256), one process per side and round, in ABBA order (old, new / new, old / …),
# each record tagged with its side, round and revision in bench/records/<name>.jsonl; then the table of
# `npx tsx bench/summarize.ts <file>` (median CPU and wall ms per side, median and IQR of the per-round ratios).
#   bash bench/old-vs-new.sh OLD_WORKTREE [ROUNDS=8] [NAME=step-old-vs-new-$(date +%F)]
# OLD_WORKTREE: a checkout of the old revision with node_modules (e.g. `git worktree add ../old <rev>` and a link
# to this checkout's node_modules). Run it on an idle machine: other load moves a step by ±25%.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bash bench/old-vs-new.sh OLD_WORKTREE [ROUNDS] [NAME]}
rounds=${2:-8}
name=${3:-step-old-vs-new-$(date +%F)}
out="bench/records/$name.jsonl"
new=$(pwd)
run() { # side dir round
  local rev
  rev=$(git -C "$2" rev-parse --short HEAD)
  (cd "$2" && npx tsx -e "require('./bench/train.bench.ts').default((x) => console.log(JSON.stringify(x)), { filter: 'train/S', quick: false })") 2>/dev/null |
    grep '^{' | sed "s/}\$/, \"side\": \"$1\", \"round\": $3, \"revision\": \"$rev\"}/" >>"$out"
}
for r in $(seq 1 "$rounds"); do
  if ((r % 2 == 1)); then run old "$old" "$r"; run new "$new" "$r"; else run new "$new" "$r"; run old "$old" "$r"; fi
  echo "round $r done $(date +%T), load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
npx tsx bench/summarize.ts "$out"
