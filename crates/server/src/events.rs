//! What happens in calls, for watchers (the admin API's `GET /events`): call started and ended,
//! participants joining, DTMF, transcripts, voice activity, barge-in and processors' own events.
//!
//! One bounded broadcast ring for the process. Publishing never waits: each event is encoded to
//! JSON once, and only while somebody watches; a watcher that falls a ring behind is cut off
//! (it is told, then its stream ends), so a slow reader costs nothing but its own stream.

use std::sync::Arc;

use mediagate_audio::AudioSource;
use mediagate_pipeline::Event;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Events a watcher may fall behind by before it is cut off.
pub(crate) const RING: usize = 1024;

/// One event, as watchers receive it.
#[derive(Debug)]
pub(crate) struct Published {
    /// The call it belongs to.
    pub(crate) call_id: Arc<str>,
    /// Its kind: the SSE event name.
    pub(crate) kind: &'static str,
    /// A processor's own kind, for `custom` events (`level`…).
    pub(crate) tag: Option<Arc<str>>,
    /// Its JSON (with `call_id`).
    pub(crate) data: String,
}

/// Where events are published, and watchers subscribe.
pub(crate) struct EventHub {
    tx: broadcast::Sender<Arc<Published>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(RING).0,
        }
    }
}

impl EventHub {
    /// A new watcher's receiver: every event published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    /// Publishes what `describe` says (its kind and its JSON fields), for call `call_id`; it is
    /// not even asked while nobody watches.
    pub(crate) fn publish(
        &self,
        call_id: &Arc<str>,
        describe: impl FnOnce() -> Option<(&'static str, Value)>,
    ) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let Some((kind, mut data)) = describe() else {
            return;
        };
        if let Some(fields) = data.as_object_mut() {
            fields.insert("call_id".to_owned(), Value::from(&**call_id));
        }
        let tag = (kind == "custom")
            .then(|| data["kind"].as_str().map(Arc::from))
            .flatten();
        let published = Published {
            call_id: Arc::clone(call_id),
            kind,
            tag,
            data: data.to_string(),
        };
        // No receiver left since the check: nobody to tell.
        let _ = self.tx.send(Arc::new(published));
    }
}

/// A pipeline event as watchers see it; `None` for those that are not news (the pipeline's own
/// start and end: `call_started` and `call_ended` come from the transport).
pub(crate) fn describe(event: &Event) -> Option<(&'static str, Value)> {
    Some(match event {
        Event::CallStarted(_) | Event::CallEnded => return None,
        Event::ParticipantJoined(id) => ("participant_joined", json!({ "participant": &**id })),
        Event::Dtmf(dtmf) => (
            "dtmf",
            json!({
                "tone": &*dtmf.tone,
                "offset_ms": dtmf.call_offset.map(|o| u64::try_from(o.as_millis()).unwrap_or(u64::MAX)),
            }),
        ),
        Event::Transcript(t) => (
            "transcript",
            json!({
                "source": &*t.source,
                "status": t.status,
                "text": t.text,
                "start_ms": t.start_ms,
                "duration_ms": t.duration_ms,
                "confidence": t.confidence,
                "speaker": t.speaker.as_deref(),
            }),
        ),
        Event::Speech { source, active } => (
            "vad",
            json!({ "source": source_name(source), "active": active }),
        ),
        Event::BargeIn(cut) => (
            "barge_in",
            json!({ "played_ms": cut.played_ms, "cut_ms": cut.cut_ms }),
        ),
        Event::ConsumerDetached(name) => ("processor_detached", json!({ "processor": &**name })),
        Event::Custom(custom) => (
            "custom",
            json!({ "kind": &*custom.kind, "data": custom.data }),
        ),
        // Kinds added to the pipeline later are shown once they are described here.
        _ => return None,
    })
}

fn source_name(source: &AudioSource) -> &str {
    match source {
        AudioSource::Mixed => "mixed",
        AudioSource::Participant(id) => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_encoded_while_nobody_watches_and_each_watcher_gets_each_event() {
        let hub = EventHub::default();
        let call: Arc<str> = "c1".into();
        hub.publish(&call, || panic!("described with nobody watching"));
        let mut first = hub.subscribe();
        let mut second = hub.subscribe();
        hub.publish(&call, || {
            describe(&Event::ParticipantJoined("alice".into()))
        });
        for rx in [&mut first, &mut second] {
            let got = rx.try_recv().unwrap();
            assert_eq!(got.kind, "participant_joined");
            let data: Value = serde_json::from_str(&got.data).unwrap();
            assert_eq!(data, json!({ "participant": "alice", "call_id": "c1" }));
        }
    }

    #[test]
    fn a_watcher_a_ring_behind_is_told_it_lagged() {
        let hub = EventHub::default();
        let call: Arc<str> = "c1".into();
        let mut slow = hub.subscribe();
        for _ in 0..RING + 10 {
            hub.publish(&call, || {
                describe(&Event::CallStarted(Arc::new(
                    mediagate_pipeline::CallInfo::new(
                        "c1",
                        "/ws",
                        mediagate_audio::AudioFormat::mono(16_000),
                    ),
                )))
                .or(Some(("x", json!({}))))
            });
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
    }
}
