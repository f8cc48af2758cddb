#!/usr/bin/env bash
# Regenerates the spoken clips of references.txt with espeak-ng (Debian's 1.51 made the
# committed ones): 16 kHz mono PCM16, one WAV per line.
# 140 words a minute with a 60 ms gap between words (-g 6): run together at espeak-ng's
# defaults, its words cost Whisper tiny over 25% WER; with the gap about 10%.
# Needs: apt-get install espeak-ng sox
set -euo pipefail
cd "$(dirname "$0")"
while IFS=$'\t' read -r name text; do
  espeak-ng -v en-us -s 140 -g 6 --stdout "$text" | sox -t wav - -r 16000 -c 1 -b 16 "$name.wav"
done < references.txt
