#!/usr/bin/env bash
# Ingest baseline: CALLS concurrent `mediagate emulate` calls, each streaming a REPEAT×4.6 s spoken
# clip, into one `mediagate serve` with recording on. Prints frames/s, the gateway's CPU time per
# frame and its resident memory (from /proc). Needs sox (to build the long clip) and a release build.
#   CALLS=20 REPEAT=13 bash samples/ingest-baseline.sh                  # as fast as it goes
#   PACING=realtime CALLS=100 REPEAT=3 bash samples/ingest-baseline.sh  # on the 20 ms clock, as ACS
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-20}
REPEAT=${REPEAT:-13}
PORT=${PORT:-18080}
BIN=${BIN:-target/release/mediagate}
PACING=${PACING:-fast}
pace_flag=--fast
[ "$PACING" = realtime ] && pace_flag=
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
    "$BIN" emulate $pace_flag --url "ws://127.0.0.1:$PORT/ws?callId=load-$i" --wav "$work/long.wav" \
        --log warn >/dev/null &
done
# Peak resident memory of the gateway while the calls run.
rss_kib=0
while [ "$(jobs -pr | grep -vc "^$server$")" -gt 0 ]; do
    now=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    [ "$now" -gt "$rss_kib" ] && rss_kib=$now
    sleep 0.05
done
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
echo "gateway peak RSS ${rss_kib} KiB ($(( rss_kib / CALLS )) KiB per call)"
