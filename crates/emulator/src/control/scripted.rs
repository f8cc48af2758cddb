//! What a placed call is: who calls whom, what the caller's side sounds like, the keys the
//! caller presses and when the caller hangs up.

use std::path::PathBuf;
use std::time::Duration;

use crate::{DtmfEvent, Pacing};

/// A call the fake places ([`super::ControlPlane::place_call`]) and plays once it is answered.
///
/// Times (DTMF, the transcript's results, [`CallerHangUp::After`]) count from the moment the
/// call is connected (the answer), which is also when the media stream starts.
#[derive(Debug, Clone)]
pub struct ScriptedCall {
    /// The caller's raw id (`4:+14255550100`, `8:acs:…`).
    pub from: String,
    /// The callee's raw id: the number or user the application answers for.
    pub to: String,
    /// `callerDisplayName` of the IncomingCall event.
    pub caller_display_name: String,
    /// What the call sounds like: one WAV per participant (PCM16 mono, any rate: resampled to
    /// the rate the answer asks for). Mixed audio sums them.
    pub wavs: Vec<PathBuf>,
    /// Raw ids of the WAVs' participants (unmixed audio), in order; missing ones default to
    /// the caller ([`ScriptedCall::from`]) for the first WAV and `8:acs:emulated-participant-<n>`
    /// for the others.
    pub participant_ids: Vec<String>,
    /// Keys the caller presses: sent as DtmfData on the media stream, recognized by
    /// `recognize` and continuous DTMF recognition.
    pub dtmf: Vec<DtmfEvent>,
    /// A transcript script (the emulator's JSON format) played on the transcription transport
    /// when the answer asks for transcription.
    pub transcript: Option<PathBuf>,
    /// Real time or as fast as the socket accepts (media and transcript).
    pub pacing: Pacing,
    /// When the caller hangs up.
    pub hang_up: CallerHangUp,
}

/// When the caller of a [`ScriptedCall`] hangs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallerHangUp {
    /// When the audio ends: the media stream's last frame (with fast pacing, almost at once),
    /// or the longest WAV's length when media is not streamed.
    #[default]
    AfterAudio,
    /// This long after the call connected; the media socket stays open after the audio until
    /// then, carrying the gateway's playback.
    After(Duration),
    /// Never: the application ends the call (hang up, terminate, transfer).
    Never,
}

/// How Event Grid delivers to the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventSchema {
    /// The Event Grid schema: `aeg-event-type` headers, `eventType`, `eventTime`,
    /// `SubscriptionValidationEvent` handshake.
    #[default]
    EventGrid,
    /// CloudEvents 1.0 (`application/cloudevents-batch+json`), with the OPTIONS abuse-protection
    /// handshake.
    CloudEvents,
}

impl ScriptedCall {
    /// A call from `from` to `to` (raw ids) with no audio yet, real-time pacing, no DTMF, no
    /// transcript, and a caller who hangs up when the audio ends.
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        ScriptedCall {
            from: from.into(),
            to: to.into(),
            caller_display_name: String::new(),
            wavs: Vec::new(),
            participant_ids: Vec::new(),
            dtmf: Vec::new(),
            transcript: None,
            pacing: Pacing::Realtime,
            hang_up: CallerHangUp::default(),
        }
    }

    /// Adds a WAV file (a participant's audio).
    pub fn with_wav(mut self, path: impl Into<PathBuf>) -> Self {
        self.wavs.push(path.into());
        self
    }

    /// Adds the raw id of the next WAV's participant.
    pub fn with_participant_id(mut self, id: impl Into<String>) -> Self {
        self.participant_ids.push(id.into());
        self
    }

    /// Adds a key press.
    pub fn with_dtmf(mut self, event: DtmfEvent) -> Self {
        self.dtmf.push(event);
        self
    }

    /// Plays a transcript script when transcription is asked for.
    pub fn with_transcript(mut self, path: impl Into<PathBuf>) -> Self {
        self.transcript = Some(path.into());
        self
    }

    /// Sets the pacing.
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Sets when the caller hangs up.
    pub fn with_hang_up(mut self, hang_up: CallerHangUp) -> Self {
        self.hang_up = hang_up;
        self
    }

    /// Sets the caller's display name.
    pub fn with_caller_display_name(mut self, name: impl Into<String>) -> Self {
        self.caller_display_name = name.into();
        self
    }

    /// The participant ids of the WAVs, defaults filled in.
    pub(crate) fn participants(&self) -> Vec<String> {
        (0..self.wavs.len())
            .map(|i| match self.participant_ids.get(i) {
                Some(id) => id.clone(),
                None if i == 0 => self.from.clone(),
                None => crate::config::default_participant_id(i),
            })
            .collect()
    }
}
