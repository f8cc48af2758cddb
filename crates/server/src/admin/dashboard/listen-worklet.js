// The listener's jitter buffer, on the audio thread: PCM arrives from the page in frames of
// 20 ms (posted as Float32Array); playback starts once PREBUFFER of it is queued, pauses (and
// fills up again) when the queue runs dry, and drops the oldest audio past MAX_QUEUED, so the
// delay stays bounded whatever the network does.
"use strict";

const PREBUFFER_SECONDS = 0.12;
const MAX_QUEUED_SECONDS = 0.5;

class JitterBuffer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = [];
    this.offset = 0; // read position in chunks[0]
    this.queued = 0; // samples queued
    this.playing = false;
    this.underruns = 0;
    this.dropped = 0;
    this.port.onmessage = (event) => {
      const chunk = event.data;
      this.chunks.push(chunk);
      this.queued += chunk.length;
      const max = Math.round(MAX_QUEUED_SECONDS * sampleRate);
      while (this.queued - this.offset > max && this.chunks.length > 1) {
        const old = this.chunks.shift();
        this.queued -= old.length;
        this.dropped += old.length - this.offset;
        this.offset = 0;
      }
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const available = this.queued - this.offset;
    if (!this.playing && available >= Math.round(PREBUFFER_SECONDS * sampleRate)) {
      this.playing = true;
    }
    let i = 0;
    while (this.playing && i < out.length && this.chunks.length > 0) {
      const chunk = this.chunks[0];
      const n = Math.min(out.length - i, chunk.length - this.offset);
      out.set(chunk.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      if (this.offset === chunk.length) {
        this.chunks.shift();
        this.queued -= chunk.length;
        this.offset = 0;
      }
    }
    if (i < out.length) {
      out.fill(0, i);
      if (this.playing) {
        this.playing = false;
        this.underruns += 1;
        this.port.postMessage({ underruns: this.underruns, dropped: this.dropped });
      }
    }
    return true;
  }
}

registerProcessor("jitter-buffer", JitterBuffer);
