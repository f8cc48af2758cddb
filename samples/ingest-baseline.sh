#!/usr/bin/env bash
# Ingest throughput baseline: CALLS concurrent `mediagate emulate --fast` calls, each streaming a
# REPEAT×4.6 s spoken clip, into one `mediagate serve` with recording on. Prints frames/s and the
# gateway's CPU time per frame (from /proc). Needs sox (to build the long clip) and a release build.
#   CALLS=20 REPEAT=13 bash samples/ingest-baseline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-20}
REPEAT=${REPEAT:-13}
PORT=${PORT:-18080}
BIN=${BIN:-target/release/mediagate}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

clips=()
for _ in $(seq "$REPEAT"); do clips+=(samples/hello-16k.wav); done
sox "${clips[@]}" "$work/long.wav"
frames_per_call=$(( ($(soxi -s "$work/long.wav") + 319) / 320 ))

"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$work/data" --log warn &
server=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
cpu0=$(cpu)
t0=$(date +%s.%N)
for i in $(seq "$CALLS"); do
    "$BIN" emulate --fast --url "ws://127.0.0.1:$PORT/ws?callId=load-$i" --wav "$work/long.wav" \
        --log warn >/dev/null &
done
wait $(jobs -p | grep -v "^$server$")
# Wait for every call to be finalized (session.json says ended).
for _ in $(seq 600); do
    ended=$(grep -l '"status": "ended"' "$work"/data/*/session.json 2>/dev/null | wc -l)
    [ "$ended" -ge "$CALLS" ] && break
    sleep 0.05
done
t1=$(date +%s.%N)
cpu1=$(cpu)

# Count what the gateway says it received, not what we meant to send.
frames=$(grep -ho '"frames_received": [0-9]*' "$work"/data/*/session.json | awk '{s += $2} END {print s}')
expected=$(( CALLS * frames_per_call ))
ended=$(grep -l '"status": "ended"' "$work"/data/*/session.json | wc -l)
bytes=$(cat "$work"/data/*/mixed.wav | wc -c)
echo "frames received ${frames} (expected ${expected}), calls ended ${ended}/${CALLS}, WAV bytes ${bytes}"
awk -v f="$frames" -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v tick="$tick" -v calls="$CALLS" 'BEGIN {
    wall = t1 - t0; cpu = (c1 - c0) / tick;
    printf "calls %d, frames %d (%.0f s of audio), wall %.2f s\n", calls, f, f * 0.02, wall;
    printf "ingest %.0f frames/s (%.0fx real time)\n", f / wall, f * 0.02 / wall;
    printf "gateway CPU %.2f s = %.1f us/frame, %.0f%% of one core\n", cpu, cpu * 1e6 / f, 100 * cpu / wall;
}'
