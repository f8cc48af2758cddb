//! The load's messages, encoded once before the clock starts: every AudioData message a call
//! will send is one of [`STAMPS`] stamped variants per source, shared by refcount by all calls.
//!
//! The stamp is the first three bytes of each frame's PCM: two marker bytes and a sequence
//! number. A gateway that echoes the audio returns the stamp with it (the first four base64
//! characters of `data`), so each echoed frame is matched to its send time exactly, whatever the
//! gateway does to the JSON around it.

use std::borrow::Cow;
use std::path::Path;

use mediagate_audio::{AudioFormat, wav};
use mediagate_protocol::{
    AudioData, AudioMetadata, InboundMessage, Timestamp, decode_pcm, encode_pcm,
};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::BenchError;

/// Distinct stamps per source: a frame's sequence number modulo this.
pub const STAMPS: usize = 256;

/// The marker before the sequence byte.
const MARKER: [u8; 2] = [0x4d, 0x47];

/// A fixed capture time (2026-11-25T00:00:00Z): the load measures the gateway, not its
/// timeline.
const TIMESTAMP: Timestamp = Timestamp::from_unix_micros(1_795_564_800_000_000);

/// Every message of the load, pre-encoded.
#[derive(Debug)]
pub(crate) struct FrameSet {
    /// The AudioMetadata message.
    pub(crate) metadata: Utf8Bytes,
    /// `audio[source][stamp]`: one source (`mixed`) or one per unmixed participant.
    pub(crate) audio: Vec<Vec<Utf8Bytes>>,
}

impl FrameSet {
    /// Messages at `rate_hz`, mixed (`unmixed == 0`) or from `unmixed` participants, carrying
    /// `wav`'s audio (mono PCM16 at `rate_hz`), else a 440 Hz tone.
    pub(crate) fn build(
        rate_hz: u32,
        unmixed: usize,
        wav: Option<&Path>,
    ) -> Result<FrameSet, BenchError> {
        let frame_samples = rate_hz as usize / 50;
        let samples = match wav {
            Some(path) => load_wav(path, rate_hz)?,
            None => tone(rate_hz, frame_samples * STAMPS),
        };
        let metadata = InboundMessage::AudioMetadata(AudioMetadata {
            subscription_id: Some("mediagate-bench".to_owned()),
            encoding: "PCM".to_owned(),
            sample_rate_hz: rate_hz,
            channels: 1,
            frame_bytes_hint: u32::try_from(frame_samples * 2).ok(),
        })
        .to_json();
        let sources = unmixed.max(1);
        let mut audio = Vec::with_capacity(sources);
        let mut pcm = Vec::with_capacity(frame_samples * 2);
        let mut data = String::new();
        for source in 0..sources {
            let who = (unmixed > 0).then(|| format!("8:acs:mediagate-bench-{}", source + 1));
            let mut messages = Vec::with_capacity(STAMPS);
            for stamp in 0..STAMPS {
                pcm.clear();
                let start = (stamp * frame_samples) % samples.len().max(1);
                pcm.extend(
                    samples
                        .iter()
                        .cycle()
                        .skip(start)
                        .take(frame_samples)
                        .flat_map(|s| s.to_le_bytes()),
                );
                pcm[..2].copy_from_slice(&MARKER);
                pcm[2] = stamp as u8;
                data.clear();
                encode_pcm(&pcm, &mut data);
                let message = InboundMessage::AudioData(AudioData {
                    timestamp: Some(TIMESTAMP),
                    invalid_timestamp: false,
                    participant_raw_id: who.as_deref().map(Cow::Borrowed),
                    data_base64: Cow::Borrowed(&data),
                    silent: false,
                });
                messages.push(Utf8Bytes::from(message.to_json()));
            }
            audio.push(messages);
        }
        Ok(FrameSet {
            metadata: Utf8Bytes::from(metadata),
            audio,
        })
    }
}

/// The stamp of an echoed frame, from its still-encoded `data`: `None` if it carries none (the
/// gateway played something else, or changed the audio). Only the first four characters are
/// decoded, into the reader's `pool` (reused: no allocation per frame).
pub(crate) fn read_stamp(data_base64: &str, pool: &mut bytes::BytesMut) -> Option<u8> {
    let head = data_base64.get(..4)?;
    let pcm = decode_pcm(head, 1, pool).ok()?;
    (pcm.len() == 3 && pcm[..2] == MARKER).then(|| pcm[2])
}

/// The largest WAV file the load reads: 256 MiB (the load cycles through its frames anyway).
const MAX_WAV_BYTES: u64 = 256 << 20;

fn load_wav(path: &Path, rate_hz: u32) -> Result<Vec<i16>, BenchError> {
    let bad = |reason: String| BenchError::Wav {
        path: path.to_owned(),
        reason,
    };
    let clip =
        wav::read(path, MAX_WAV_BYTES, wav::Accept::Pcm16).map_err(|e| bad(e.to_string()))?;
    if clip.format != AudioFormat::mono(rate_hz) {
        return Err(bad(format!(
            "need mono PCM16 at {rate_hz} Hz, found {} channel(s) at {} Hz",
            clip.format.channels(),
            clip.format.sample_rate_hz()
        )));
    }
    if clip.sample_count() < clip.format.frame_samples() {
        return Err(bad("shorter than one 20 ms frame".to_owned()));
    }
    Ok(clip.samples().collect())
}

/// A 440 Hz tone at a third of full scale.
fn tone(rate_hz: u32, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f64 / f64::from(rate_hz);
            ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * 10_000.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_carries_its_stamp() {
        let set = FrameSet::build(16_000, 2, None).unwrap();
        let mut pool = bytes::BytesMut::new();
        assert_eq!(set.audio.len(), 2);
        for source in &set.audio {
            for (stamp, message) in source.iter().enumerate() {
                let text: &str = message;
                let data = text.split(r#""data":""#).nth(1).unwrap();
                assert_eq!(read_stamp(data, &mut pool), Some(stamp as u8));
                let Ok(InboundMessage::AudioData(parsed)) = mediagate_protocol::parse_inbound(text)
                else {
                    panic!("not AudioData: {text}");
                };
                assert_eq!(parsed.timestamp, Some(TIMESTAMP));
                assert_eq!(
                    parsed.timestamp.unwrap().to_string(),
                    "2026-11-25T00:00:00.000Z"
                );
                assert!(parsed.participant_raw_id.is_some());
            }
        }
        let Ok(InboundMessage::AudioMetadata(metadata)) =
            mediagate_protocol::parse_inbound(&set.metadata)
        else {
            panic!("not AudioMetadata: {}", &*set.metadata);
        };
        assert_eq!(
            (metadata.sample_rate_hz, metadata.frame_bytes_hint),
            (16_000, Some(640))
        );
        assert_eq!(read_stamp("AAAA", &mut pool), None);
        assert_eq!(read_stamp("A", &mut pool), None);
    }
}
