#!/usr/bin/env python3
"""mediagate's embedded Whisper next to faster-whisper, side by side in one run, on the same
clips, the same model directory and the same CPU threads: CPU seconds per second of speech
and word error rate.

Run it with the Python of a virtualenv that has faster-whisper (the one .ci/run makes for the
Wyoming test has it):

    cargo build --release
    ~/.cache/mediagate/wyoming-venv/bin/python samples/speech-compare.py [--threads 1] [--rounds 2]

Each engine transcribes every clip, one at a time, finals only (no partials), beam 5:
- mediagate: `mediagate transcribe --json` per clip, its CPU counted from the child process's
  rusage, less a run on one second of silence (process start and model load);
- faster-whisper: `WhisperModel.transcribe` in this process with its VAD off (mediagate cuts
  utterances itself), CPU counted with `time.process_time()` around each call, model loaded
  before.
Both hypotheses are scored by one normalizer (case, punctuation), word by word against
references.txt, so the WER figures compare like with like. Rounds alternate the engines.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def references(folders):
    clips = []
    for folder in folders:
        with open(os.path.join(folder, "references.txt"), encoding="utf-8") as f:
            for line in f:
                if "\t" in line:
                    name, text = line.rstrip("\n").split("\t", 1)
                    clips.append((os.path.join(folder, name + ".wav"), text))
    return clips


def words(text):
    text = text.lower().replace("o'clock", "oclock")
    return re.sub(r"[^a-z0-9' ]", " ", text).split()


def errors(reference, hypothesis):
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            cur = min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
            prev, row[j] = row[j], cur
    return row[len(hyp)], len(ref)


def speech_secs(path):
    with wave.open(path) as w:
        return w.getnframes() / w.getframerate()


def child_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def mediagate(binary, config, path):
    """The text mediagate hears in `path`, and the CPU seconds the run took."""
    before = child_cpu()
    out = subprocess.run(
        [binary, "transcribe", "--json", "--config", config, path],
        check=True, capture_output=True, text=True,
    ).stdout
    cpu = child_cpu() - before
    text = " ".join(
        json.loads(line)["text"] for line in out.splitlines()
        if line.strip() and "audio_secs" not in line
    )
    return text, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "mediagate"))
    parser.add_argument("--model", default=os.path.expanduser(
        "~/.cache/mediagate/models/whisper-tiny.en"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from faster_whisper import WhisperModel  # the venv's

    clips = references([os.path.join(ROOT, "samples/speech"),
                        os.path.join(ROOT, "samples/speech/librivox")])
    total_speech = sum(speech_secs(p) for p, _ in clips)
    scratch = tempfile.mkdtemp(prefix="speech-compare-")
    config = os.path.join(scratch, "mediagate.toml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(f"""[pipeline.settings.whisper]
model_dir = "{args.model}"
threads = {args.threads}
replicas = 1
beam_size = {args.beam}
[pipeline.settings.whisper.utterances]
partial_interval_ms = 0
""")
    silence = os.path.join(scratch, "silence.wav")
    with wave.open(silence, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)

    model = WhisperModel(args.model, device="cpu", compute_type="int8",
                         cpu_threads=args.threads)
    print(f"{len(clips)} clips, {total_speech:.1f} s of audio; model {args.model}; "
          f"{args.threads} thread(s), beam {args.beam}; {os.cpu_count()} cores", flush=True)
    results = {"mediagate": [], "faster-whisper": []}
    for round_ in range(args.rounds):
        # mediagate: per clip, less what a run on silence costs (start-up, model load).
        _, base = mediagate(args.binary, config, silence)
        errs = ref_words = 0
        cpu = 0.0
        for path, text in clips:
            heard, spent = mediagate(args.binary, config, path)
            cpu += max(spent - base, 0.0)
            e, n = errors(text, heard)
            errs, ref_words = errs + e, ref_words + n
        results["mediagate"].append((cpu, errs / ref_words))
        # faster-whisper, model already loaded.
        errs = ref_words = 0
        cpu = 0.0
        for path, text in clips:
            began = time.process_time()
            segments, _ = model.transcribe(path, beam_size=args.beam, language="en",
                                           vad_filter=False, without_timestamps=True)
            heard = " ".join(s.text for s in segments)
            cpu += time.process_time() - began
            e, n = errors(text, heard)
            errs, ref_words = errs + e, ref_words + n
        results["faster-whisper"].append((cpu, errs / ref_words))
        for name, runs in results.items():
            cpu, wer = runs[-1]
            print(f"round {round_ + 1}  {name:15} CPU {cpu:6.2f} s  "
                  f"{cpu / total_speech:.3f} CPU-s per speech-s  WER {wer * 100:4.1f}%", flush=True)
    best = {name: min(cpu for cpu, _ in runs) for name, runs in results.items()}
    ratio = best["mediagate"] / best["faster-whisper"]
    print(f"best of {args.rounds}: mediagate {best['mediagate'] / total_speech:.3f}, "
          f"faster-whisper {best['faster-whisper'] / total_speech:.3f} CPU-s per speech-s; "
          f"mediagate/faster-whisper = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
