//! Silent monitoring: `GET /calls/{id}/listen` upgrades to a WebSocket that carries the call's
//! inbound audio as it arrives, as binary messages of PCM16 LE mono at the call's rate, after
//! one text message that says the rate and the source.
//!
//! The call does not notice. Its socket task hands each frame to a bounded broadcast ring only
//! while somebody listens (a refcount and a slot, never a wait); each listener's own task
//! filters (`?source=` one participant) or mixes (an unmixed call's participants, summed) and
//! writes. A listener that falls a second behind, or whose socket takes over a second to accept
//! a frame, is closed with 1008; one whose call ends gets 1000.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mediagate_audio::AudioSource;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::Failure;
use super::guest::Until;
use crate::AppState;
use crate::listener::ConnectionPermit;
use crate::live::Tapped;
use crate::session::TransportKind;

/// Listeners one call may have at once.
pub(super) const MAX_LISTENERS_PER_CALL: usize = 8;
/// How long a listener's socket may take to accept a frame.
const SEND_DEADLINE: Duration = Duration::from_secs(1);

/// Upgrades to a listener of call `call_id`'s audio: all of it (mixed), or `?source=` one
/// participant's.
pub(super) async fn listen(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    uri: Uri,
    permit: Option<Extension<ConnectionPermit>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Failure> {
    upgrade_listener(state, call_id, uri, permit, upgrade, None).await
}

/// Upgrades to a listener of `call_id` (a guest's ends at `until`).
pub(super) async fn upgrade_listener(
    state: Arc<AppState>,
    call_id: String,
    uri: Uri,
    permit: Option<Extension<ConnectionPermit>>,
    upgrade: WebSocketUpgrade,
    until: Option<Until>,
) -> Result<Response, Failure> {
    let source = uri
        .query()
        .and_then(|query| super::form_value(query, "source"));
    let transports = super::live_call(&state, &call_id)?;
    let Some(media) = transports.iter().find(|t| t.kind == TransportKind::Media) else {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            format!("call {call_id:?} has no audio (no media transport)"),
        ));
    };
    let Some((tap, counted)) = media.listen(MAX_LISTENERS_PER_CALL) else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("call {call_id:?} has {MAX_LISTENERS_PER_CALL} listeners already"),
        ));
    };
    let rate = media.format.sample_rate_hz();
    tracing::info!(call_id = %call_id, source = ?source, "a supervisor listens");
    Ok(upgrade
        .max_message_size(4096)
        .on_upgrade(move |socket| async move {
            serve(socket, tap, source, rate, state, until).await;
            drop(counted);
            drop(permit);
        }))
}

/// Why a listener's stream ended.
enum Ending {
    /// The listener went away.
    Gone,
    /// The call ended: 1000.
    CallEnded,
    /// It fell behind: 1008.
    Behind(&'static str),
    /// A guest's link expired or was revoked: 1008.
    LinkEnded,
}

async fn serve(
    socket: WebSocket,
    mut tap: broadcast::Receiver<Tapped>,
    source: Option<String>,
    rate: u32,
    state: Arc<AppState>,
    until: Option<Until>,
) {
    let _listening = Listening::new(Arc::clone(&state));
    let (mut sink, mut incoming) = socket.split();
    let hello = serde_json::json!({
        "sample_rate_hz": rate,
        "channels": 1,
        "source": source.as_deref().unwrap_or("mixed"),
    });
    if sink
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut mixer = Mixer::new(source);
    let ending = loop {
        tokio::select! {
            () = reached(until.as_ref()) => break Ending::LinkEnded,
            message = incoming.next() => match message {
                // Whatever a listener sends is ignored; its close ends it.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break Ending::Gone,
                Some(Ok(_)) => continue,
            },
            tapped = tap.recv() => match tapped {
                Ok(tapped) => {
                    let Some((pcm, arrived)) = mixer.push(&tapped) else {
                        continue;
                    };
                    let sent = tokio::time::timeout(SEND_DEADLINE, sink.send(Message::Binary(pcm)));
                    match sent.await {
                        Ok(Ok(())) => state.metrics.listened(arrived.elapsed().as_secs_f64()),
                        Ok(Err(_)) => break Ending::Gone,
                        Err(_) => break Ending::Behind("listener too slow to take the audio"),
                    }
                }
                Err(RecvError::Lagged(_)) => break Ending::Behind("listener fell behind"),
                Err(RecvError::Closed) => break Ending::CallEnded,
            },
        }
    };
    let close = match ending {
        Ending::Gone => return,
        Ending::CallEnded => (1000, "call ended"),
        Ending::LinkEnded => (1008, "guest link expired or revoked"),
        Ending::Behind(reason) => {
            state.metrics.listener_cut();
            tracing::info!(reason, "a listener was cut off");
            (1008, reason)
        }
    };
    let frame = CloseFrame {
        code: close.0,
        reason: close.1.into(),
    };
    let _ = tokio::time::timeout(SEND_DEADLINE, sink.send(Message::Close(Some(frame)))).await;
}

/// Resolves when `until` is reached; never without one.
async fn reached(until: Option<&Until>) {
    match until {
        Some(until) => until.reached().await,
        None => std::future::pending().await,
    }
}

/// A listener's place in `mediagate_listeners`, left however its stream ends.
struct Listening(Arc<AppState>);

impl Listening {
    fn new(state: Arc<AppState>) -> Self {
        state.metrics.listener_opened();
        Listening(state)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.metrics.listener_closed();
    }
}

/// What a listener hears: one source's frames as they are, or every source summed.
struct Mixer {
    /// `Some`: only this source (`mixed`, or a participant's raw id).
    only: Option<String>,
    /// The frame being mixed: each source at most once, and when its first part arrived.
    pending: Vec<i32>,
    included: HashSet<AudioSource>,
    pending_since: Option<Instant>,
}

impl Mixer {
    fn new(only: Option<String>) -> Self {
        Mixer {
            only,
            pending: Vec::new(),
            included: HashSet::new(),
            pending_since: None,
        }
    }

    /// Takes a frame; the PCM to send now (and when its audio arrived), if any.
    fn push(&mut self, tapped: &Tapped) -> Option<(Bytes, Instant)> {
        let frame = &tapped.frame;
        let name = match &frame.source {
            AudioSource::Mixed => "mixed",
            AudioSource::Participant(id) => id,
        };
        if let Some(only) = &self.only {
            return (only == name).then(|| (frame.pcm.clone(), tapped.arrived));
        }
        if frame.source == AudioSource::Mixed {
            // The platform mixed it already: as it is, by refcount.
            return Some((frame.pcm.clone(), tapped.arrived));
        }
        // An unmixed call: sum each participant's frame into the one being mixed; a second
        // frame of a source already in it (or of another length) starts the next.
        let samples = frame.pcm.len() / 2;
        let flushed = if self.included.contains(&frame.source)
            || (!self.pending.is_empty() && self.pending.len() != samples)
        {
            self.flush()
        } else {
            None
        };
        if self.pending.is_empty() {
            self.pending.resize(samples, 0);
            self.pending_since = Some(tapped.arrived);
        }
        for (sum, bytes) in self.pending.iter_mut().zip(frame.pcm.chunks_exact(2)) {
            *sum += i32::from(i16::from_le_bytes([bytes[0], bytes[1]]));
        }
        self.included.insert(frame.source.clone());
        flushed
    }

    /// The frame mixed so far, clipped to PCM16.
    fn flush(&mut self) -> Option<(Bytes, Instant)> {
        let since = self.pending_since.take()?;
        let pcm: Vec<u8> = self
            .pending
            .drain(..)
            .flat_map(|sum| {
                (sum.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16).to_le_bytes()
            })
            .collect();
        self.included.clear();
        Some((Bytes::from(pcm), since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_audio::{AudioFormat, AudioFrame};

    fn tapped(source: AudioSource, samples: &[i16]) -> Tapped {
        let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        Tapped {
            arrived: Instant::now(),
            frame: AudioFrame {
                pcm: Bytes::from(pcm),
                format: AudioFormat::mono(16_000),
                timestamp: None,
                position: None,
                source,
                silent: false,
            },
        }
    }

    fn samples(pcm: &Bytes) -> Vec<i16> {
        pcm.chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn participants_are_summed_frame_by_frame_and_clipped() {
        let alice = AudioSource::Participant("alice".into());
        let bob = AudioSource::Participant("bob".into());
        let mut mixer = Mixer::new(None);
        assert!(mixer.push(&tapped(alice.clone(), &[100, 30_000])).is_none());
        assert!(mixer.push(&tapped(bob.clone(), &[-50, 10_000])).is_none());
        // Alice's next frame starts the next mix: the first goes out.
        let (first, _) = mixer.push(&tapped(alice.clone(), &[1, 2])).unwrap();
        assert_eq!(samples(&first), [50, i16::MAX]);
        let (second, _) = mixer.push(&tapped(alice, &[3, 4])).unwrap();
        assert_eq!(samples(&second), [1, 2]);
    }

    #[test]
    fn one_source_passes_as_it_is_and_the_others_not_at_all() {
        let alice = AudioSource::Participant("alice".into());
        let bob = AudioSource::Participant("bob".into());
        let mut mixer = Mixer::new(Some("bob".to_owned()));
        assert!(mixer.push(&tapped(alice, &[1, 2])).is_none());
        let (pcm, _) = mixer.push(&tapped(bob, &[5, 6])).unwrap();
        assert_eq!(samples(&pcm), [5, 6]);
        let mut mixed = Mixer::new(None);
        let (pcm, _) = mixed.push(&tapped(AudioSource::Mixed, &[7, 8])).unwrap();
        assert_eq!(samples(&pcm), [7, 8]);
    }
}
