#!/usr/bin/env bash
# Runs one bench scenario against two builds of roam, alternating them
# (A B A B ...), so that a refactor can be checked for a change in what it
# measures on a shared, noisy machine. Each argument build is a checkout with
# dist/ and native/build/ built. Prints a summary (bench/compare-builds.mjs)
# and keeps every run's JSON under OUT.
#   bench/compare-builds.sh OLD_DIR NEW_DIR SCENARIO ROUNDS OUT [--quick]
set -euo pipefail
old=$1 new=$2 scenario=$3 rounds=$4 out=$5 quick=${6:-}
mkdir -p "$out"
for ((r = 1; r <= rounds; r++)); do
  for build in old new; do
    dir=$old
    [ "$build" = new ] && dir=$new
    echo "compare-builds: round $r, $build ($dir), $scenario" >&2
    (cd "$dir" && node dist/bench/run.js "$scenario" $quick >/dev/null)
    cp "$dir/bench/results/$scenario.json" "$out/$scenario-$build-$r.json"
  done
done
node "$(dirname "$0")/compare-builds.mjs" "$out" "$scenario"
