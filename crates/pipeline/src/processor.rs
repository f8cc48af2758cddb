//! The extension point: a [`Processor`] consumes a call's frames and events and may play audio
//! into the call and emit events. Recorders, transcript writers, speech engines, echo, VAD and
//! voice bots are all processors.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use mediagate_audio::{AudioFormat, AudioFrame, Clip, FormatError, StreamResampler};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::event::{CallInfo, Event};
use crate::outbound::{BargeIn, OutboundQueue, Outgoing, QueueFull};
use crate::queue::OverflowPolicy;

/// A failure inside a processor. Logged and counted; the processor keeps receiving unless it
/// returns [`ProcessorError::Fatal`].
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// This frame or event could not be handled; go on with the next.
    #[error("{0}")]
    Skip(String),
    /// The processor cannot go on: it is detached from the call.
    #[error("fatal: {0}")]
    Fatal(String),
}

/// Where a processor's callbacks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    /// On the async runtime, in the processor's own task: for cheap, non-blocking work (echo,
    /// VAD, tones). Never block here.
    #[default]
    Inline,
    /// On a blocking thread, in batches (one trip per batch, not per frame): for file I/O and
    /// heavy compute (recorders, speech engines).
    Blocking,
    /// In the call's socket task, inside the pipeline's pushes, with no inbox and no task hop:
    /// for processors whose every callback takes a microsecond or two and never waits (`echo`).
    /// Such a processor shares the socket's time, so a slow one slows the call's reading; the
    /// queue settings and overflow policy do not apply.
    Direct,
}

/// What a processor wants to receive, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Input {
    /// Whether it receives audio at all; `false`: events only (prompts, DTMF menus, transcript
    /// writers), and frames never enter its inbox.
    pub frames: bool,
    /// Frames resampled to this rate (computed once per call and rate, shared by every
    /// processor that asks for it); `None`: the call's own rate.
    pub sample_rate_hz: Option<u32>,
    /// Frames and events that may wait in the processor's inbox.
    pub queue: usize,
    /// Bytes of audio that may wait in the inbox (a few huge frames count like many small
    /// ones); full at `queue` items or at this many bytes, whichever comes first.
    pub queue_bytes: usize,
    /// What happens when the inbox is full.
    pub overflow: OverflowPolicy,
    /// Where the callbacks run.
    pub execution: Execution,
    /// For [`Execution::Blocking`]: once an item is queued, let more gather for up to this many
    /// milliseconds (or until the inbox is half full) before one trip to a blocking thread. A
    /// recorder trades this latency for one trip per ~10 frames; `0`: go at once.
    pub gather_ms: u64,
    /// It emits events others want (a speech engine's transcripts): what it emits while
    /// finishing (the last utterance's transcript) reaches the processors that wait for it
    /// ([`Input::after_emitters`]) before their [`crate::Event::CallEnded`].
    pub emits: bool,
    /// It records what emitters say (the `transcript` writer): at the call's end its
    /// [`crate::Event::CallEnded`] waits until every emitter has finished, so it receives the
    /// last utterance's transcript. Other processors end at once, without waiting for the
    /// emitters (a recording is final while a speech engine still works).
    pub after_emitters: bool,
}

impl Input {
    /// Events only, no audio, on the runtime (prompts, DTMF menus, listeners): the defaults
    /// with `frames: false` and an inbox of 64.
    pub fn events_only() -> Self {
        Input {
            frames: false,
            queue: 64,
            ..Input::default()
        }
    }

    /// The gathering window, as a duration.
    pub fn gather(&self) -> Duration {
        Duration::from_millis(self.gather_ms)
    }
}

impl Default for Input {
    fn default() -> Self {
        Input {
            frames: true,
            sample_rate_hz: None,
            queue: 256,
            queue_bytes: 4 * 1024 * 1024,
            overflow: OverflowPolicy::DropOldest,
            execution: Execution::Inline,
            gather_ms: 0,
            emits: false,
            after_emitters: false,
        }
    }
}

/// A call's frames and events in, audio and events out.
///
/// Callbacks run one at a time, in order, on the processor's own task (see [`Execution`]); a
/// slow processor only ever delays itself.
pub trait Processor: Send + 'static {
    /// What it wants to receive. Called once, before the first callback.
    fn input(&self) -> Input {
        Input::default()
    }

    /// One frame of audio (mixed, or one participant's), in the format [`Processor::input`] asked
    /// for. The default ignores audio: processors that only react to events (prompts, DTMF
    /// menus) implement [`Processor::on_event`] alone.
    fn on_frame(&mut self, _frame: &AudioFrame, _ctx: &mut Context) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// Something happened in the call.
    fn on_event(&mut self, _event: &Event, _ctx: &mut Context) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// The inbox is empty after a run of callbacks: a moment to flush buffered output (a
    /// recorder makes its files valid here, so a killed process still leaves playable files).
    fn flush(&mut self, _ctx: &mut Context) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// The call is over and every frame and event has been delivered: finalize.
    fn finish(&mut self, _ctx: &mut Context) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// What it did, for the call's `session.json` (under `processors[].report`). Asked once,
    /// after [`Processor::finish`].
    fn report(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Where a processor's events go: the call's event queue, which the socket task forwards to
/// every processor at once ([`crate::Pipeline::next_emitted`]). Bounded: an event that finds it
/// full is dropped and counted.
#[derive(Clone)]
pub(crate) struct Emitter {
    tx: mpsc::Sender<Event>,
    /// Events this processor emitted that found the queue full (its `emits_dropped`).
    dropped: Arc<AtomicU64>,
}

impl Emitter {
    pub(crate) fn new(tx: mpsc::Sender<Event>, dropped: Arc<AtomicU64>) -> Self {
        Emitter { tx, dropped }
    }

    /// Queues `event`; never waits.
    fn emit(&self, call: &CallInfo, event: Event) {
        if self.tx.try_send(event).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                call_id = &*call.call_id,
                "the call's event queue is full: event dropped (counted in emits_dropped)"
            );
        }
    }
}

/// A processor's handle on its call: who it is, and how to speak into it.
pub struct Context {
    call: Arc<CallInfo>,
    to_socket: Option<mpsc::Sender<Outgoing>>,
    events: Emitter,
    /// Frames sent unpaced ([`Context::send_now`]) that found the socket writer full and were
    /// dropped: counted with the processor's `dropped`.
    unpaced_dropped: Arc<AtomicU64>,
    /// The processor's player: the one way audio goes into the call ([`Playback`]), kept for
    /// the whole call so a stream played in chunks stays continuous. `None` without outbound
    /// audio.
    player: Option<Playback>,
    /// Files made with [`Context::create_file`], in order.
    pub(crate) files: Vec<String>,
}

/// One source format's way into the call: a long-lived resampler to the call's rate, and the
/// bytes it produced that do not make a whole (multi-channel) sample yet.
struct Converter {
    from: AudioFormat,
    resampler: StreamResampler,
    resampled: BytesMut,
}

/// The converters of one [`Playback`], one per source format.
#[derive(Default)]
struct Converters(Vec<Converter>);

impl Converters {
    /// Resamples `pcm` (PCM16 LE in `format`) to `to_rate` and mixes it down to mono: the
    /// samples ready so far (the resampler holds back a partial block).
    fn convert(
        &mut self,
        pcm: &[u8],
        format: AudioFormat,
        to_rate: u32,
    ) -> Result<Vec<i16>, FormatError> {
        let index = match self.0.iter().position(|c| c.from == format) {
            Some(index) => index,
            None => {
                self.0.push(Converter {
                    from: format,
                    resampler: StreamResampler::new(format, to_rate)?,
                    resampled: BytesMut::new(),
                });
                self.0.len() - 1
            }
        };
        let converter = &mut self.0[index];
        converter.resampler.process(pcm, &mut converter.resampled);
        Ok(converter.take_mono())
    }

    /// Ends every stream: what the resamplers still hold, zero-padded to the end of the input,
    /// as mono samples (formats in the order first played). The converters are dropped, so the
    /// next audio starts a fresh stream.
    fn flush(&mut self) -> Vec<i16> {
        let mut samples = Vec::new();
        for mut converter in self.0.drain(..) {
            converter.resampler.flush(&mut converter.resampled);
            samples.extend(converter.take_mono());
        }
        samples
    }
}

impl Converter {
    /// The whole samples resampled so far, mixed down to mono.
    fn take_mono(&mut self) -> Vec<i16> {
        let channels = usize::from(self.from.channels());
        let whole = self.resampled.len() / (2 * channels) * (2 * channels);
        let ready = self.resampled.split_to(whole);
        ready
            .chunks_exact(2 * channels)
            .map(|frame| {
                let sum: i32 = frame
                    .chunks_exact(2)
                    .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])))
                    .sum();
                // The mean of i16 values is an i16.
                (sum / i32::from(self.from.channels())) as i16
            })
            .collect()
    }
}

/// Why audio could not be played.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlayError {
    /// The platform did not open a bidirectional stream: there is nowhere to play.
    #[error("this call has no outbound audio (enableBidirectional is off)")]
    NoOutbound,
    /// The outbound queue is full.
    #[error(transparent)]
    Full(#[from] QueueFull),
    /// The audio could not be converted to the call's format.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl Context {
    pub(crate) fn new(
        call: Arc<CallInfo>,
        outbound: Option<OutboundQueue>,
        to_socket: Option<mpsc::Sender<Outgoing>>,
        events: Emitter,
        unpaced_dropped: Arc<AtomicU64>,
    ) -> Self {
        let player = outbound.map(|queue| Playback {
            call: Arc::clone(&call),
            queue,
            events: events.clone(),
            converters: Converters::default(),
        });
        Context {
            call,
            to_socket,
            events,
            unpaced_dropped,
            player,
            files: Vec::new(),
        }
    }

    /// The call.
    pub fn call(&self) -> &CallInfo {
        &self.call
    }

    /// Queues mono samples in the call's format for paced playback (20 ms frames on the call's
    /// clock). Audio from several processors plays one after the other, in the order queued.
    pub fn play(&mut self, samples: &[i16]) -> Result<(), PlayError> {
        self.player()?.play(samples)
    }

    /// Queues PCM16 LE audio in any `format` for paced playback: resampled to the call's rate
    /// (and mixed down to mono) on the way, then played like [`Context::play`]. A stream handed
    /// over in chunks (a speech engine's) plays without clicks at the chunk edges; see
    /// [`Playback::play_audio`].
    pub fn play_audio(&mut self, pcm: &[u8], format: AudioFormat) -> Result<(), PlayError> {
        self.player()?.play_audio(pcm, format)
    }

    /// Queues a whole clip for paced playback, at the call's format, from its first sample
    /// to its last ([`Playback::play_clip`]).
    pub fn play_clip(&mut self, clip: &Clip) -> Result<(), PlayError> {
        self.player()?.play_clip(clip)
    }

    /// The player, or [`PlayError::NoOutbound`].
    fn player(&mut self) -> Result<&mut Playback, PlayError> {
        self.player.as_mut().ok_or(PlayError::NoOutbound)
    }

    /// Sends a frame at once, bypassing the pacer: its pacing is the caller's (this is `echo`).
    /// Never waits; if the socket writer is full the frame is dropped and counted (in the
    /// processor's `dropped`).
    pub fn send_now(&mut self, frame: &AudioFrame) -> Result<(), PlayError> {
        let to_socket = self.to_socket.as_ref().ok_or(PlayError::NoOutbound)?;
        if to_socket
            .try_send(Outgoing::Audio(frame.pcm.clone()))
            .is_err()
        {
            self.unpaced_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Barge-in: drops the queued outbound audio and sends StopAudio, at once
    /// ([`Playback::stop_audio`]). `None` without outbound audio.
    pub fn stop_audio(&mut self) -> Option<BargeIn> {
        Some(self.player.as_mut()?.stop_audio())
    }

    /// Outbound audio queued and not yet sent.
    pub fn queued_playback(&self) -> std::time::Duration {
        self.player
            .as_ref()
            .map_or(std::time::Duration::ZERO, Playback::queued)
    }

    /// A handle on the call's outbound audio for a task of the processor's own (a socket to a
    /// voice bot, whose answers arrive while no callback runs): it plays and barges in like
    /// [`Context::play_audio`] and [`Context::stop_audio`], from anywhere. `None` when the call
    /// has no outbound audio. Each call gives a new handle with its own converters.
    pub fn playback(&self) -> Option<Playback> {
        let player = self.player.as_ref()?;
        Some(Playback {
            call: Arc::clone(&self.call),
            queue: player.queue.clone(),
            events: self.events.clone(),
            converters: Converters::default(),
        })
    }

    /// Creates a file in the call's folder: `stem.ext`, or `stem-2.ext`… if that name is taken
    /// (creation is exclusive, so two writers never share a file). `stem` may come from outside
    /// (a participant id): it is made safe first. The name goes into the processor's entry in
    /// `session.json`. Blocking I/O: call it from an [`Execution::Blocking`] processor.
    pub fn create_file(&mut self, stem: &str, ext: &str) -> io::Result<(File, String)> {
        let Some(dir) = &self.call.folder else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "this call keeps no files (recording.enabled = false)",
            ));
        };
        let (file, name) = crate::files::create_unique(dir, stem, ext)?;
        self.files.push(name.clone());
        Ok((file, name))
    }

    /// Tells every processor of the call (including this one) about `event`, at once: the
    /// socket task forwards it within one scheduling hop, whether or not audio is flowing.
    /// Never waits; an event that finds the call's event queue full
    /// ([`crate::pipeline::EVENT_QUEUE`]) is dropped and counted in this processor's
    /// `emits_dropped`.
    pub fn emit(&mut self, event: Event) {
        self.events.emit(&self.call, event);
    }
}

/// A player of the call's outbound audio: the one way audio goes into a call. Every
/// [`Context`] plays through one ([`Context::play_audio`]); [`Context::playback`] gives
/// another, `Send`, for a task the processor spawned (a voice bot's socket).
///
/// Audio goes into the call's one paced queue, in the order queued. Each player converts its
/// own stream: [`Playback::play_audio`] keeps one resampler per source format until
/// [`Playback::end_stream`] or [`Playback::stop_audio`] ends the stream.
pub struct Playback {
    call: Arc<CallInfo>,
    queue: OutboundQueue,
    events: Emitter,
    converters: Converters,
}

impl Playback {
    pub(crate) fn new(call: Arc<CallInfo>, queue: OutboundQueue, events: Emitter) -> Self {
        Playback {
            call,
            queue,
            events,
            converters: Converters::default(),
        }
    }

    /// Queues mono samples already in the call's format.
    pub fn play(&mut self, samples: &[i16]) -> Result<(), PlayError> {
        if samples.is_empty() {
            return Ok(());
        }
        self.queue.push(samples).map_err(PlayError::from)
    }

    /// Queues PCM16 LE audio in any `format` for paced playback, resampled to the call's rate
    /// and mixed down to mono on the way.
    ///
    /// One [`StreamResampler`] per source format is kept until the stream ends, so audio
    /// handed over in chunks plays without clicks at the chunk edges. The price is latency:
    /// output lags by the resampler's delay (10 ms at the ACS rates) and input short of a
    /// whole block waits for the next chunk or [`Playback::end_stream`]. At the call's own
    /// rate nothing is held back. On [`PlayError::Full`] the converted chunk is dropped and the
    /// stream goes on.
    pub fn play_audio(&mut self, pcm: &[u8], format: AudioFormat) -> Result<(), PlayError> {
        let samples = self
            .converters
            .convert(pcm, format, self.call.format.sample_rate_hz())?;
        self.play(&samples)
    }

    /// The stream played with [`Playback::play_audio`] is complete: what the resamplers still
    /// hold is queued (zero-padded), and the next chunk starts a new stream.
    pub fn end_stream(&mut self) -> Result<(), PlayError> {
        let samples = self.converters.flush();
        self.play(&samples)
    }

    /// Queues a whole clip, brought to the call's rate by [`Clip::at_rate`]: no start-up
    /// delay, nothing held back at its end, no padding needed. A clip of several channels is
    /// mixed down to mono on the way ([`Playback::play_audio`], then
    /// [`Playback::end_stream`]).
    pub fn play_clip(&mut self, clip: &Clip) -> Result<(), PlayError> {
        if clip.format.channels() != 1 {
            let played = self.play_audio(&clip.pcm, clip.format);
            let ended = self.end_stream();
            return played.and(ended);
        }
        let at_call_rate = clip.at_rate(self.call.format.sample_rate_hz())?;
        let samples: Vec<i16> = at_call_rate.samples().collect();
        self.play(&samples)
    }

    /// Barge-in, as [`Context::stop_audio`]: drops the queued outbound audio (every
    /// processor's) and sends StopAudio at once; also forgets what the converters held, so
    /// nothing of the cut stream leaks into the next one. Every processor is told with
    /// [`Event::BargeIn`], at once.
    pub fn stop_audio(&mut self) -> BargeIn {
        self.converters = Converters::default();
        let cut = self.queue.barge_in();
        self.events.emit(&self.call, Event::BargeIn(cut));
        cut
    }

    /// Outbound audio queued and not yet sent (every processor's).
    pub fn queued(&self) -> Duration {
        self.queue.queued_duration()
    }

    /// The call: its format is what the audio is converted to.
    pub fn call(&self) -> &CallInfo {
        &self.call
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: AudioFormat = AudioFormat::mono(16_000);
    const BOT: AudioFormat = AudioFormat::mono(24_000);

    /// 24 kHz PCM16 LE of a 500 Hz tone.
    fn tone_24k(samples: usize) -> Vec<u8> {
        (0..samples)
            .flat_map(|i| {
                let t = i as f64 / 24_000.0;
                ((8_000.0 * (2.0 * std::f64::consts::PI * 500.0 * t).sin()) as i16).to_le_bytes()
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn playback_plays_and_barges_in_from_another_task() {
        let (to_socket, mut socket) = mpsc::channel(64);
        let (events_tx, mut events) = mpsc::channel(8);
        let queue = OutboundQueue::new(CALL, Duration::from_secs(10), to_socket.clone());
        tokio::spawn(queue.clone().run_pacer());
        let ctx = Context::new(
            Arc::new(CallInfo::new("c", "/ws", CALL)),
            Some(queue),
            Some(to_socket),
            Emitter::new(events_tx, Arc::default()),
            Arc::default(),
        );
        let mut playback = ctx.playback().unwrap();
        // A bot's answer: 1 s at 24 kHz in 100 ms chunks, then its end, from a spawned task.
        let played = tokio::spawn(async move {
            let pcm = tone_24k(24_000);
            for chunk in pcm.chunks(4_800) {
                playback.play_audio(chunk, BOT).unwrap();
            }
            playback.end_stream().unwrap();
            playback
        })
        .await
        .unwrap();
        // 1 s at 16 kHz plus the resampler's 10 ms delay, all queued (the pacer may have
        // sent the first frame already).
        let mut sent = 0;
        while let Ok(message) = socket.try_recv() {
            assert!(matches!(message, Outgoing::Audio(f) if f.len() == 640));
            sent += 1;
        }
        assert_eq!(
            played.queued() + Duration::from_millis(20) * sent,
            Duration::from_millis(1_010)
        );
        for _ in sent..10 {
            assert!(matches!(socket.recv().await, Some(Outgoing::Audio(f)) if f.len() == 640));
        }
        // Barge-in from another task: the queue is cut, StopAudio goes out, the call hears of it.
        let mut playback = played;
        let cut = tokio::spawn(async move { playback.stop_audio() })
            .await
            .unwrap();
        assert_eq!(cut.played_ms, 200);
        assert_eq!(cut.cut_ms, 810);
        let mut after = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(100), socket.recv()).await
        {
            after.push(m);
        }
        let stop = after
            .iter()
            .position(|m| *m == Outgoing::StopAudio)
            .unwrap();
        assert!(stop <= 1 && after.len() == stop + 1, "{after:?}");
        assert_eq!(events.try_recv().unwrap(), Event::BargeIn(cut));
    }

    #[tokio::test]
    async fn a_clip_plays_to_its_last_sample_without_padding() {
        let (to_socket, _socket) = mpsc::channel(64);
        let (events_tx, _events) = mpsc::channel(8);
        // No pacer runs: everything stays queued, to be measured.
        let queue = OutboundQueue::new(CALL, Duration::from_secs(10), to_socket.clone());
        let mut ctx = Context::new(
            Arc::new(CallInfo::new("c", "/ws", CALL)),
            Some(queue),
            Some(to_socket),
            Emitter::new(events_tx, Arc::default()),
            Arc::default(),
        );
        // 0.9979 s at 24 kHz: not a whole number of 20 ms frames of either rate.
        let clip = Clip::new(BOT, bytes::Bytes::from(tone_24k(23_950)));
        ctx.play_clip(&clip).unwrap();
        // All of it, and nothing more: ceil(23,950 × 2/3) = 15,967 samples at 16 kHz.
        assert_eq!(
            ctx.queued_playback(),
            Duration::from_micros(15_967 * 1_000 / 16)
        );
    }

    #[tokio::test]
    async fn a_call_without_outbound_audio_has_no_playback() {
        let (events_tx, _events) = mpsc::channel(8);
        let ctx = Context::new(
            Arc::new(CallInfo::new("c", "/ws", CALL)),
            None,
            None,
            Emitter::new(events_tx, Arc::default()),
            Arc::default(),
        );
        assert!(ctx.playback().is_none());
        let mut ctx = ctx;
        assert_eq!(ctx.play(&[0; 320]), Err(PlayError::NoOutbound));
        assert!(ctx.stop_audio().is_none());
    }
}
