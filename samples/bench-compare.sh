#!/usr/bin/env bash
# Runs the same load against mediagate (--self, with each pipeline of PIPELINES) and the bare
# reference echo server (unless REFERENCE=0), alternating, ROUNDS times each, and prints each
# run's key figures: frames per second, the gateway's CPU per frame and cores, the echo round
# trip, and whether the run was clean.
#
#   CALLS=500 DURATION=20s ROUNDS=3 PIPELINES="echo echo,wav" MODE=realtime \
#       bash samples/bench-compare.sh
#
# Alternating cancels slow drifts of a shared machine; compare medians, and report the spread.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-500} DURATION=${DURATION:-20s} ROUNDS=${ROUNDS:-3}
PIPELINES=${PIPELINES:-echo} MODE=${MODE:-realtime} REFERENCE=${REFERENCE:-1}
cargo build --release --quiet
bin=target/release/mediagate
run() {
    "$bin" bench "$@" --calls "$CALLS" --duration "$DURATION" --mode "$MODE" 2>/dev/null |
        awk -v who="$LABEL" '
            /^rate/       { fps = $2 }
            /^round trip/ { p50 = $4 " " $5; p99 = $10 " " $11 }
            /^gateway  /  { if ($0 ~ /CPU per frame/) { cores = $2; us = $4 } }
            /^verdict/    { clean = $2; sub(":", "", clean) }
            END { printf "%-20s %8s frames/s  %5s µs/frame  %4s cores  p50 %s  p99 %s  %s\n", who, fps, us, cores, p50, p99, clean }'
}
for round in $(seq 1 "$ROUNDS"); do
    for pipeline in $PIPELINES; do
        LABEL="mediagate $pipeline" run --self --pipeline "$pipeline"
    done
    if [ "$REFERENCE" = 1 ]; then
        LABEL="reference echo" run --reference-echo
    fi
done
