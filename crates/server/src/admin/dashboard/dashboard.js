// The mediagate dashboard: live calls from GET /calls (polled each second), and what happens in
// them from GET /events (server-sent events), as it happens. Plain JS, no build step: the
// gateway embeds this file. Every request goes to the admin listener that served the page,
// authenticated by its session cookie. A module: strict, and run once the page has loaded.

const calls = new Map(); // call id -> { element, partials: Map(key -> <li>), tones: [], listener }
const ended = new Set(); // ids of calls that have ended
let clipNames = []; // the clips the gateway plays by name ([admin] clips_dir)
const MAX_TRANSCRIPT_LINES = 200;

const $ = (selector, root = document) => root.querySelector(selector);

// A guest link's page shows one call and reads only its routes (the body says which).
const guest = document.body.dataset.guest;
const api = {
  events: guest ? `${guest}/events` : "/events",
  listen: (callId) => (guest ? `${guest}/listen` : `/calls/${encodeURIComponent(callId)}/listen`),
};

function text(element, value) {
  element.textContent = value;
  return element;
}

function seconds(value) {
  const s = Math.floor(value);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

async function post(path, body, type) {
  const init = { method: "POST", headers: {} };
  if (body !== undefined) {
    init.body = body;
    init.headers["content-type"] = type;
  }
  const response = await fetch(path, init);
  let message = "";
  try {
    const json = await response.json();
    message = json.error || JSON.stringify(json);
  } catch (_) {
    message = response.statusText;
  }
  return { ok: response.ok, message };
}

function callElement(callId) {
  const existing = calls.get(callId);
  if (existing) return existing;
  const element = $("#call-template").content.firstElementChild.cloneNode(true);
  element.dataset.callId = callId;
  text($(".call-id", element), callId);
  const path = `/calls/${encodeURIComponent(callId)}`;
  const status = $(".status", element);
  $(".stop-audio", element).addEventListener("click", async () => {
    const r = await post(`${path}/stop-audio`);
    text(status, r.ok ? "audio stopped" : r.message);
  });
  $(".share", element).addEventListener("click", async () => {
    const request = JSON.stringify({ call_id: callId, scope: "watch+listen", ttl_secs: 3600 });
    const response = await fetch("/guest-links", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: request,
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      text(status, body.error || response.statusText);
      return;
    }
    const link = text(document.createElement("a"), "guest link (1 h, watch and listen)");
    link.href = `${location.origin}${body.url}`;
    link.className = "guest-link";
    status.replaceChildren(link);
  });
  $(".hangup", element).addEventListener("click", async () => {
    const r = await post(`${path}/hangup`);
    text(status, r.ok ? "ending…" : r.message);
  });
  const say = $(".say-text", element);
  say.addEventListener("keydown", async (event) => {
    if (event.key !== "Enter" || !say.value.trim()) return;
    const r = await post(`${path}/play`, JSON.stringify({ text: say.value }), "application/json");
    text(status, r.ok ? `saying "${say.value}"` : r.message);
    if (r.ok) say.value = "";
  });
  const clip = $(".clip", element);
  for (const name of clipNames) clip.append(new Option(name, name));
  clip.hidden = clipNames.length === 0;
  clip.addEventListener("change", async () => {
    if (!clip.value) return;
    const r = await post(`${path}/play`, JSON.stringify({ clip: clip.value }), "application/json");
    text(status, r.ok ? `playing ${clip.value}` : r.message);
    clip.value = "";
  });
  $(".play-file", element).addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const r = await post(`${path}/play`, file, "audio/wav");
    text(status, r.ok ? `playing ${file.name}` : r.message);
    event.target.value = "";
  });
  const call = { element, partials: new Map(), finals: new Set(), tones: [], listener: null };
  const listen = $(".listen", element);
  listen.addEventListener("click", () => {
    if (call.listener) {
      call.listener.stop();
      call.listener = null;
      text(listen, "Listen");
    } else {
      call.listener = new Listener(callId, status);
      text(listen, "Stop listening");
    }
  });
  calls.set(callId, call);
  $("#calls").append(element);
  return call;
}

function meter(call, name) {
  const sources = $(".sources", call.element);
  let source = [...sources.children].find((s) => s.dataset.source === name);
  if (!source) {
    source = document.createElement("span");
    source.className = "source";
    source.dataset.source = name;
    source.dataset.level = "-100";
    const label = text(document.createElement("span"), name);
    const bar = document.createElement("span");
    bar.className = "meter";
    bar.append(document.createElement("div"));
    source.append(label, bar);
    sources.append(source);
  }
  return source;
}

function showLevel(call, name, dbfs) {
  const source = meter(call, name);
  source.dataset.level = dbfs.toFixed(1);
  const fraction = Math.min(1, Math.max(0, (dbfs + 60) / 60));
  source.querySelector(".meter > div").style.width = `${(fraction * 100).toFixed(1)}%`;
}

// What makes a final the same one, whether it came from the history or live.
const finalKey = (line) => `${line.source}|${line.start_ms}|${line.text}`;

// The finals the gateway kept, for a page opened while the call goes on.
function backfill(call, lines) {
  const list = $(".transcript", call.element);
  if (call.backfilled || list.children.length > 0) return;
  call.backfilled = true;
  for (const line of lines) {
    call.finals.add(finalKey(line));
    const item = text(document.createElement("li"), `${line.speaker ? `${line.speaker}: ` : ""}${line.text}`);
    item.className = "final";
    list.append(item);
  }
}

function render(view) {
  const call = callElement(view.call_id);
  backfill(call, view.transcript);
  text($(".duration", call.element), seconds(view.duration_secs));
  const rows = [];
  for (const transport of view.transports) {
    for (const source of transport.sources) {
      if (source.rms_dbfs === null || source.rms_dbfs === undefined) meter(call, source.name);
    }
    for (const p of transport.processors) {
      const row = document.createElement("tr");
      for (const value of [`${p.name}${view.transports.length > 1 ? ` (${transport.kind})` : ""}`,
        p.frames, p.events, p.dropped + p.events_dropped, p.errors + p.panics,
        `${(p.busy_seconds * 1000).toFixed(1)} ms`]) {
        row.append(text(document.createElement("td"), value));
      }
      rows.push(row);
    }
  }
  $(".processors tbody", call.element).replaceChildren(...rows);
}

function endCall(callId) {
  const call = calls.get(callId);
  if (!call) return;
  if (call.listener) call.listener.stop();
  call.element.remove();
  calls.delete(callId);
  ended.add(callId);
}

// The calls that ended last (the gateway keeps a hundred), with links to their files.
function renderEnded(views) {
  const items = views.map((view) => {
    ended.add(view.call_id);
    const item = document.createElement("li");
    item.dataset.callId = view.call_id;
    const name = text(document.createElement(view.files ? "a" : "span"), view.call_id);
    if (view.files) name.href = view.files;
    const at = new Date(view.ended_at).toLocaleTimeString();
    item.append(name, text(document.createElement("span"), ` ended ${at}`));
    return item;
  });
  $("#ended").replaceChildren(...items);
}

// A guest's one call: its duration and sources; when the link stops working, why.
async function refreshGuest() {
  const response = await fetch(guest);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    // The call has ended, or the link stopped working: nothing more to ask for.
    clearInterval(polling);
    for (const callId of [...calls.keys()]) endCall(callId);
    const note = $("#no-calls");
    note.hidden = false;
    text(note, body.error || `the call is no longer available (${response.status})`);
    return;
  }
  const call = callElement(body.call_id);
  backfill(call, body.transcript);
  text($(".duration", call.element), seconds(body.duration_secs));
  for (const source of body.sources) {
    if (source.rms_dbfs === null || source.rms_dbfs === undefined) meter(call, source.name);
  }
  $("#no-calls").hidden = true;
}

async function refresh() {
  if (guest) {
    await refreshGuest();
    return;
  }
  try {
    const response = await fetch("/calls");
    if (response.status === 401) {
      window.location.assign("/");
      return;
    }
    const views = await response.json();
    const endedResponse = await fetch("/ended-calls");
    if (endedResponse.ok) renderEnded(await endedResponse.json());
    const live = new Set(views.map((v) => v.call_id));
    for (const view of views) render(view);
    for (const callId of [...calls.keys()]) if (!live.has(callId)) endCall(callId);
    $("#no-calls").hidden = views.length > 0;
    text($("#live-count"), `(${views.length})`);
  } catch (error) {
    text($("#node"), `cannot reach the gateway: ${error}`);
  }
}

function transcript(call, data) {
  const list = $(".transcript", call.element);
  const key = `${data.source}/${data.speaker ?? ""}`;
  let line = call.partials.get(key);
  if (data.status === "final" && call.finals.has(finalKey(data))) {
    // Already shown from the history: the partial it replaces goes.
    if (line) line.remove();
    call.partials.delete(key);
    return;
  }
  if (data.status === "final") call.finals.add(finalKey(data));
  if (!line) {
    line = document.createElement("li");
    list.append(line);
  }
  const who = data.speaker ? `${data.speaker}: ` : "";
  text(line, `${who}${data.text}`);
  if (data.status === "final") {
    line.className = "final";
    call.partials.delete(key);
  } else {
    line.className = "partial";
    call.partials.set(key, line);
  }
  while (list.children.length > MAX_TRANSCRIPT_LINES) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function listen() {
  const badge = $("#stream");
  const events = new EventSource(api.events);
  events.onopen = () => {
    text(badge, "live");
    badge.className = "badge live";
  };
  events.onerror = () => {
    text(badge, "reconnecting…");
    badge.className = "badge";
  };
  const on = (kind, handle) =>
    events.addEventListener(kind, (message) => {
      const data = JSON.parse(message.data);
      // A late event of a call that has left the list does not bring it back.
      if (!calls.has(data.call_id) && ended.has(data.call_id)) return;
      handle(data, callElement(data.call_id));
    });
  on("call_started", () => refresh());
  on("call_ended", () => setTimeout(refresh, 200));
  on("transcript", (data, call) => transcript(call, data));
  on("dtmf", (data, call) => {
    call.tones.push(data.tone);
    text($(".dtmf", call.element), call.tones.join(" "));
  });
  on("custom", (data, call) => {
    if (data.kind === "level" && typeof data.data.rms_dbfs === "number") {
      showLevel(call, data.data.source ?? "mixed", data.data.rms_dbfs);
    }
  });
  on("barge_in", (data, call) => text($(".status", call.element), `barge-in: ${data.cut_ms} ms cut`));
  events.addEventListener("lagged", () => text(badge, "fell behind; reconnecting…"));
}

// Silent monitoring: the call's audio over a WebSocket, as PCM16 at the call's rate, played
// through a jitter buffer on the audio thread (listen-worklet.js). An analyser after it
// measures what is played: window.mediagateListening[call id] holds the figures.
window.mediagateListening = {};

class Listener {
  constructor(callId, status) {
    this.stats = { frames: 0, samples: 0, rms_dbfs: -100, max_rms_dbfs: -100, underruns: 0 };
    window.mediagateListening[callId] = this.stats;
    this.status = status;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.socket = new WebSocket(`${scheme}://${location.host}${api.listen(callId)}`);
    this.socket.binaryType = "arraybuffer";
    this.pending = [];
    this.socket.onmessage = (message) => this.receive(message.data);
    this.socket.onclose = (event) => {
      text(this.status, `listening ended: ${event.reason || event.code}`);
      this.stop();
    };
  }

  async receive(data) {
    if (typeof data === "string") {
      const hello = JSON.parse(data);
      await this.start(hello.sample_rate_hz);
      return;
    }
    const pcm = new Int16Array(data);
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
    this.stats.frames += 1;
    this.stats.samples += samples.length;
    if (this.node) this.node.port.postMessage(samples, [samples.buffer]);
    else this.pending.push(samples);
  }

  async start(rate) {
    this.context = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
    await this.context.audioWorklet.addModule("/listen-worklet.js");
    this.node = new AudioWorkletNode(this.context, "jitter-buffer", { outputChannelCount: [1] });
    this.node.port.onmessage = (event) => { this.stats.underruns = event.data.underruns; };
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 2048;
    this.node.connect(this.analyser);
    this.analyser.connect(this.context.destination);
    for (const samples of this.pending) this.node.port.postMessage(samples, [samples.buffer]);
    this.pending = [];
    await this.context.resume();
    text(this.status, `listening (${rate} Hz)`);
    const window_ = new Float32Array(this.analyser.fftSize);
    this.meter = setInterval(() => {
      this.analyser.getFloatTimeDomainData(window_);
      let sum = 0;
      for (const v of window_) sum += v * v;
      const rms = Math.sqrt(sum / window_.length);
      const dbfs = rms > 0 ? Math.max(-100, 20 * Math.log10(rms)) : -100;
      this.stats.rms_dbfs = dbfs;
      this.stats.max_rms_dbfs = Math.max(this.stats.max_rms_dbfs, dbfs);
    }, 100);
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.meter);
    if (this.socket.readyState <= WebSocket.OPEN) this.socket.close();
    if (this.context) this.context.close();
  }
}

async function node() {
  const response = await fetch("/healthz");
  const health = await response.json();
  text($("#node"), `v${health.version} · ${health.status}`);
}

async function loadClips() {
  const response = await fetch("/clips");
  if (response.ok) clipNames = await response.json();
}

if (!guest) {
  node();
  await loadClips().catch(() => {});
}
refresh();
const polling = setInterval(refresh, 1000);
listen();
