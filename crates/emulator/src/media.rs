//! The media transport: every message pre-encoded into a plan of 20 ms ticks, then sent on a
//! steady clock (or as fast as the socket accepts).

use std::borrow::Cow;

use futures_util::{Sink, SinkExt};
use mediagate_audio::{AudioFormat, FRAME_DURATION_MICROS};
use mediagate_protocol::{
    AudioData, AudioMetadata, DtmfData, InboundMessage, Timestamp, encode_pcm,
};
use tokio::sync::watch;
use tokio::time::{Duration, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::connection::SendEnd;
use crate::track::TrackSet;
use crate::{DtmfEvent, Pacing, SilencePolicy};

/// One tick of the clock.
const TICK: Duration = Duration::from_micros(FRAME_DURATION_MICROS as u64);
/// Fast pacing flushes the socket after this many messages.
const FAST_BATCH: usize = 32;

/// Everything the media transport will send, encoded before the clock starts.
#[derive(Debug)]
pub(crate) struct MediaPlan {
    /// The stream's format (that of the tracks).
    pub(crate) format: AudioFormat,
    /// AudioMetadata, sent before the first tick.
    pub(crate) metadata: Utf8Bytes,
    /// In sending order; ticks never decrease.
    pub(crate) entries: Vec<PlanEntry>,
}

/// Something that happens at one tick.
#[derive(Debug)]
pub(crate) struct PlanEntry {
    /// The tick (20 ms each) from the start of the stream.
    pub(crate) tick: u64,
    /// What happens.
    pub(crate) action: PlanAction,
}

/// What happens at a tick.
#[derive(Debug)]
pub(crate) enum PlanAction {
    /// Send an AudioData carrying `pcm_bytes` bytes of PCM.
    Audio {
        /// The encoded message.
        message: Utf8Bytes,
        /// PCM bytes it carries.
        pcm_bytes: usize,
    },
    /// Send a DtmfData.
    Dtmf(Utf8Bytes),
    /// An all-zero unmixed frame, not sent (counted only).
    SkippedSilent,
}

/// How the tracks become messages.
#[derive(Debug, Clone)]
pub(crate) struct PlanOptions<'a> {
    /// Capture time of tick 0.
    pub(crate) start_time: Timestamp,
    /// One stream per track instead of a mix.
    pub(crate) unmixed: bool,
    /// All-zero unmixed frames: send or skip.
    pub(crate) silence: SilencePolicy,
    /// One per track (unmixed only).
    pub(crate) participant_ids: &'a [String],
    /// DTMF tones, any order.
    pub(crate) dtmf: &'a [DtmfEvent],
    /// The AudioMetadata's subscription id.
    pub(crate) subscription_id: String,
}

/// What the media transport sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct MediaCounts {
    pub(crate) frames_sent: u64,
    pub(crate) frames_skipped_silent: u64,
    pub(crate) audio_bytes_sent: u64,
    pub(crate) dtmf_sent: u64,
    /// When each AudioData was handed to the socket, in sending order.
    pub(crate) sent_at: Vec<Instant>,
}

impl MediaPlan {
    /// Encodes every message of the stream (CPU-bound: run it on a blocking thread for long files).
    pub(crate) fn build(tracks: &TrackSet, options: PlanOptions<'_>) -> Self {
        let format = tracks.format;
        let metadata = InboundMessage::AudioMetadata(AudioMetadata {
            subscription_id: Some(options.subscription_id.clone()),
            encoding: "PCM".to_owned(),
            sample_rate_hz: format.sample_rate_hz(),
            channels: 1,
            frame_bytes_hint: u32::try_from(format.frame_bytes()).ok(),
        });
        let mixed;
        let streams: Vec<(&[i16], Option<&str>)> = if options.unmixed {
            tracks
                .tracks
                .iter()
                .zip(options.participant_ids)
                .map(|(t, id)| (t.samples.as_slice(), Some(id.as_str())))
                .collect()
        } else {
            mixed = tracks.mixed();
            vec![(&*mixed, None)]
        };
        let mut dtmf: Vec<&DtmfEvent> = options.dtmf.iter().collect();
        dtmf.sort_by_key(|e| e.at);
        let mut encoder = FrameEncoder::new(format, options.start_time);
        let mut entries = Vec::new();
        let mut dtmf = dtmf.into_iter().peekable();
        for tick in 0.. {
            let mut any_audio_left = false;
            for &(samples, participant) in &streams {
                let Some(frame) = encoder.frame_at(samples, tick) else {
                    continue;
                };
                any_audio_left = true;
                let silent = frame.iter().all(|&s| s == 0);
                let action = if silent && options.unmixed && options.silence == SilencePolicy::Skip
                {
                    PlanAction::SkippedSilent
                } else {
                    encoder.audio(frame, tick, participant, silent)
                };
                entries.push(PlanEntry { tick, action });
            }
            while let Some(event) = dtmf.next_if(|e| tick_of(e.at) <= tick) {
                let message = InboundMessage::DtmfData(DtmfData {
                    tone: event.tone.clone(),
                })
                .to_json();
                let action = PlanAction::Dtmf(message.into());
                entries.push(PlanEntry { tick, action });
            }
            if !any_audio_left && dtmf.peek().is_none() {
                break;
            }
        }
        MediaPlan {
            format,
            metadata: metadata.to_json().into(),
            entries,
        }
    }
}

/// The tick a time falls in.
fn tick_of(at: Duration) -> u64 {
    u64::try_from(at.as_micros() / TICK.as_micros()).unwrap_or(u64::MAX)
}

/// Encodes frames into AudioData messages, reusing its buffers.
struct FrameEncoder {
    format: AudioFormat,
    start_time: Timestamp,
    pcm: Vec<u8>,
    base64: String,
}

impl FrameEncoder {
    fn new(format: AudioFormat, start_time: Timestamp) -> Self {
        FrameEncoder {
            format,
            start_time,
            pcm: Vec::with_capacity(format.frame_bytes()),
            base64: String::with_capacity(format.frame_bytes().div_ceil(3) * 4),
        }
    }

    /// The samples of frame `tick` of a track: 20 ms, or fewer for the last one (which
    /// [`FrameEncoder::audio`] pads); `None` past the end.
    fn frame_at<'s>(&self, samples: &'s [i16], tick: u64) -> Option<&'s [i16]> {
        let per_frame = self.format.frame_samples();
        let start = usize::try_from(tick).ok()?.checked_mul(per_frame)?;
        let rest = samples.get(start..).filter(|rest| !rest.is_empty())?;
        Some(&rest[..rest.len().min(per_frame)])
    }

    fn audio(
        &mut self,
        frame: &[i16],
        tick: u64,
        participant: Option<&str>,
        silent: bool,
    ) -> PlanAction {
        self.pcm.clear();
        self.pcm.extend(frame.iter().flat_map(|s| s.to_le_bytes()));
        // ACS sends whole 20 ms frames only, as the metadata's `length` says: a track's last,
        // partial frame goes out padded with silence.
        self.pcm.resize(self.format.frame_bytes(), 0);
        self.base64.clear();
        encode_pcm(&self.pcm, &mut self.base64);
        let offset_micros = i64::try_from(tick)
            .unwrap_or(i64::MAX)
            .saturating_mul(FRAME_DURATION_MICROS);
        let message = InboundMessage::AudioData(AudioData {
            timestamp: Some(self.start_time.add_micros(offset_micros)),
            participant_raw_id: participant.map(Cow::Borrowed),
            data_base64: Cow::Borrowed(&self.base64),
            silent,
            invalid_timestamp: false,
        })
        .to_json();
        PlanAction::Audio {
            message: message.into(),
            pcm_bytes: self.pcm.len(),
        }
    }
}

/// Sends the plan's entries (the metadata is sent by the caller): on the clock that started at
/// `start` for [`Pacing::Realtime`], in batches for [`Pacing::Fast`]. Stops when
/// `gateway_closed` rises.
pub(crate) async fn send_plan<S>(
    sink: &mut S,
    entries: Vec<PlanEntry>,
    pacing: Pacing,
    start: Instant,
    mut gateway_closed: watch::Receiver<bool>,
    counts: &mut MediaCounts,
) -> Result<SendEnd, tungstenite::Error>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    counts.sent_at.reserve(entries.len());
    match pacing {
        Pacing::Fast => {
            let mut unflushed = 0;
            for entry in entries {
                if unflushed == 0 && *gateway_closed.borrow() {
                    return Ok(SendEnd::GatewayClosed);
                }
                if let Some(message) = counts.record(entry.action) {
                    sink.feed(message).await?;
                    unflushed += 1;
                }
                if unflushed >= FAST_BATCH {
                    sink.flush().await?;
                    unflushed = 0;
                }
            }
            sink.flush().await?;
        }
        Pacing::Realtime => {
            let mut clock = tokio::time::interval_at(start, TICK);
            clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut entries = entries.into_iter().peekable();
            let mut tick = 0;
            while entries.peek().is_some() {
                tokio::select! {
                    biased;
                    _ = gateway_closed.wait_for(|closed| *closed) => return Ok(SendEnd::GatewayClosed),
                    _ = clock.tick() => {}
                }
                let mut fed = false;
                while let Some(entry) = entries.next_if(|e| e.tick <= tick) {
                    if let Some(message) = counts.record(entry.action) {
                        sink.feed(message).await?;
                        fed = true;
                    }
                }
                if fed {
                    sink.flush().await?;
                }
                tick += 1;
            }
        }
    }
    Ok(SendEnd::Completed)
}

impl MediaCounts {
    /// Counts an action and returns the message to send, if any.
    fn record(&mut self, action: PlanAction) -> Option<Message> {
        match action {
            PlanAction::Audio { message, pcm_bytes } => {
                // Stamped before it is queued: a round trip is never shorter than the real one.
                self.sent_at.push(Instant::now());
                self.frames_sent += 1;
                self.audio_bytes_sent += pcm_bytes as u64;
                Some(Message::Text(message))
            }
            PlanAction::Dtmf(message) => {
                self.dtmf_sent += 1;
                Some(Message::Text(message))
            }
            PlanAction::SkippedSilent => {
                self.frames_skipped_silent += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::Track;

    fn options<'a>(unmixed: bool, ids: &'a [String], dtmf: &'a [DtmfEvent]) -> PlanOptions<'a> {
        PlanOptions {
            start_time: Timestamp::from_unix_micros(0),
            unmixed,
            silence: SilencePolicy::Skip,
            participant_ids: ids,
            dtmf,
            subscription_id: "sub".to_owned(),
        }
    }

    fn ticks(plan: &MediaPlan) -> Vec<(u64, &'static str)> {
        plan.entries
            .iter()
            .map(|e| {
                let kind = match e.action {
                    PlanAction::Audio { .. } => "audio",
                    PlanAction::Dtmf(_) => "dtmf",
                    PlanAction::SkippedSilent => "skip",
                };
                (e.tick, kind)
            })
            .collect()
    }

    #[test]
    fn last_partial_frame_is_padded_to_20_ms_and_dtmf_outlives_the_audio() {
        let tracks = TrackSet {
            format: AudioFormat::mono(16_000),
            tracks: vec![Track {
                samples: vec![1; 320 + 5],
            }],
        };
        let dtmf = ["1@100ms".parse().unwrap(), "2@0".parse().unwrap()];
        let plan = MediaPlan::build(&tracks, options(false, &[], &dtmf));
        assert_eq!(
            ticks(&plan),
            [(0, "audio"), (0, "dtmf"), (1, "audio"), (5, "dtmf")]
        );
        let PlanAction::Audio { pcm_bytes, message } = &plan.entries[2].action else {
            panic!("audio expected");
        };
        assert_eq!(*pcm_bytes, 640, "5 samples and 315 of silence");
        let mut padded = [1u8, 0].repeat(5);
        padded.resize(640, 0);
        let mut expected = String::new();
        encode_pcm(&padded, &mut expected);
        assert!(message.as_str().contains(&expected));
        assert!(plan.metadata.as_str().contains(r#""length":640"#));
    }

    #[test]
    fn unmixed_silence_is_skipped_per_participant() {
        let tracks = TrackSet {
            format: AudioFormat::mono(16_000),
            tracks: vec![
                Track {
                    samples: [vec![1; 320], vec![0; 320], vec![1; 320]].concat(),
                },
                Track {
                    samples: vec![0; 320],
                },
            ],
        };
        let ids = ["a".to_owned(), "b".to_owned()];
        let plan = MediaPlan::build(&tracks, options(true, &ids, &[]));
        assert_eq!(
            ticks(&plan),
            [(0, "audio"), (0, "skip"), (1, "skip"), (2, "audio")]
        );
    }
}
