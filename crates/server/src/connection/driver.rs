//! The socket task: a thin driver that feeds the connection's [`Machine`] what the socket, the
//! clock and the shutdown token say, and executes its actions (open the call, push to the
//! pipeline, write the close frame, log), then ends the call in a fixed order whatever ended it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Message;
use futures_util::{FutureExt, Stream, StreamExt};
use mediagate_pipeline::{Dtmf, EVENT_QUEUE, Event, Outgoing};
use mediagate_protocol::Timestamp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::machine::{Action, CallEvent, CallOpening, End, Input, LogLine, Machine, MachineConfig};
use super::text::Escaped;
use super::{ConnectionInfo, read_error_kind};
use crate::AppState;
use crate::live::{LiveTransport, Registered};
use crate::media::{CallPipeline, EndingPipeline, PipelineTarget};
use crate::registry::CallSlot;
use crate::session::{EndReason, EndReport, TransportKind, TransportReport};
use crate::writer::SocketWriter;

/// A text message that makes the driver panic, in this crate's unit tests only: proves a panic
/// in the socket task still ends the call cleanly.
#[cfg(test)]
pub(crate) const TEST_PANIC_TEXT: &str = "mediagate-test: panic in the socket task";

/// Per-connection I/O state. Owned by the connection's task alone.
pub(crate) struct Driver {
    app: Arc<AppState>,
    info: ConnectionInfo,
    machine: Machine,
    /// The call's folder and this transport's place in it; `None` until opened, with recording
    /// off, or when opening failed.
    slot: Option<CallSlot>,
    /// The call's processors (none configured: `None`, and frames are only counted).
    pipeline: Option<CallPipeline>,
    /// Where the processors' outbound audio goes: the socket writer.
    outgoing: mpsc::Sender<Outgoing>,
    /// Cancelled by the operator to end this transport (the admin API).
    hangup: CancellationToken,
    /// Events the control plane hands this call's processors (`acs::ControlPlane::attach`):
    /// only for a call it answered, so other calls hold no queue.
    injected: Option<tokio::sync::mpsc::Receiver<Event>>,
    /// Its entry among the live transports, once the call has opened.
    live: Option<Registered>,
    /// The call's id once it has opened, for the events watchers see.
    call_id: Option<Arc<str>>,
    /// Frames and PCM bytes received and not yet added to the shared counters: they are added
    /// once a second of frames, and at the end, not per frame.
    unpublished: (u64, u64),
}

/// Frames the socket task counts before it adds them to the shared counters.
const PUBLISH_EVERY: u64 = 50;

/// What woke the read loop.
enum Wake {
    Shutdown,
    Hangup,
    Timeout,
    /// A processor emitted an event: every processor gets it now, not with the next frame.
    Emitted(Event),
    /// The control plane has an event for the call's processors (`None`: it has let the
    /// call go, and sends no more).
    Injected(Option<Event>),
    Message(Option<Result<Message, axum::Error>>),
}

impl Driver {
    pub(crate) fn new(
        app: Arc<AppState>,
        info: ConnectionInfo,
        outgoing: mpsc::Sender<Outgoing>,
    ) -> Self {
        let connected_at = Timestamp::now();
        let report = TransportReport::new(
            TransportKind::Media,
            info.id,
            info.remote_addr.map(|a| a.to_string()),
            info.path.clone(),
            info.query.clone(),
            connected_at,
        );
        let machine = Machine::new(
            MachineConfig::from_config(&app.config),
            info.clone(),
            report,
            connected_at,
            Instant::now(),
        );
        Driver {
            app,
            info,
            machine,
            slot: None,
            pipeline: None,
            outgoing,
            hangup: CancellationToken::new(),
            injected: None,
            live: None,
            call_id: None,
            unpublished: (0, 0),
        }
    }

    /// Reads until the machine says the connection is over.
    pub(crate) async fn run<S>(&mut self, mut socket: S, writer: &SocketWriter) -> End
    where
        S: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let shutdown = self.app.shutdown.clone();
        let hangup = self.hangup.clone();
        let mut emitted_in_a_row = 0;
        loop {
            while let Some(action) = self.machine.poll_action() {
                // The hot path, a frame, on its own small future: `execute`'s holds every
                // other action's state (opening a call, closing) and would be built per frame.
                let action = match action {
                    Action::PushFrame(frame) => {
                        self.push_frame(frame).await;
                        continue;
                    }
                    action => action,
                };
                if let Some(end) = Box::pin(self.execute(action, writer)).await {
                    return end;
                }
            }
            let deadline = self.machine.poll_timeout();
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let emitted = async {
                match &mut self.pipeline {
                    Some(call) => call.pipeline.next_emitted().await,
                    None => std::future::pending().await,
                }
            };
            let injected = async {
                match &mut self.injected {
                    Some(queue) => queue.recv().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => Wake::Shutdown,
                () = hangup.cancelled() => Wake::Hangup,
                () = timer => Wake::Timeout,
                event = injected => Wake::Injected(event),
                // Events first, but the socket gets its turn after a queue's worth of them in a
                // row: a processor that emits in answer to every event cannot starve it.
                event = emitted, if emitted_in_a_row < EVENT_QUEUE => Wake::Emitted(event),
                message = socket.next() => Wake::Message(message),
            };
            emitted_in_a_row = match wake {
                Wake::Emitted(_) => emitted_in_a_row + 1,
                _ => 0,
            };
            let now = Instant::now();
            match wake {
                Wake::Shutdown => self.machine.handle(Input::Shutdown, now),
                Wake::Hangup => self.machine.handle(Input::Hangup, now),
                Wake::Timeout => self.machine.handle(Input::Timeout, now),
                Wake::Emitted(event) => self.deliver(event),
                // Recorded and shown to watchers by the control plane, once per call.
                Wake::Injected(Some(event)) => {
                    if let Some(call) = &mut self.pipeline {
                        call.pipeline.push_event(event);
                    }
                }
                Wake::Injected(None) => self.injected = None,
                Wake::Message(None) => self.machine.handle(Input::Disconnected, now),
                Wake::Message(Some(Err(e))) => {
                    let detail = e.to_string();
                    let input = Input::ReadError(read_error_kind(&e), &detail);
                    self.machine.handle(input, now);
                }
                Wake::Message(Some(Ok(message))) => {
                    let input = match &message {
                        Message::Text(text) => {
                            #[cfg(test)]
                            if text.as_str() == TEST_PANIC_TEXT {
                                panic!("test panic\nwith a forged log line");
                            }
                            Input::Text(text.as_str())
                        }
                        Message::Binary(data) => Input::Binary(data),
                        Message::Close(frame) => {
                            Input::Close(frame.as_ref().map(|f| (f.code, f.reason.as_str())))
                        }
                        Message::Ping(_) | Message::Pong(_) => Input::Ping,
                    };
                    self.machine.handle(input, now);
                }
            }
        }
    }

    /// Hands a frame to the call's processors.
    async fn push_frame(&mut self, frame: mediagate_audio::AudioFrame) {
        self.unpublished.0 += 1;
        self.unpublished.1 += frame.pcm.len() as u64;
        if self.unpublished.0 >= PUBLISH_EVERY {
            self.publish_frames();
        }
        if let Some(live) = &self.live {
            live.transport().tap(&frame);
        }
        if let Some(call) = &mut self.pipeline {
            call.pipeline.push_frame(&frame).await;
        }
    }

    /// Adds the frames received since the last time to the shared counters.
    fn publish_frames(&mut self) {
        let (frames, bytes) = std::mem::take(&mut self.unpublished);
        if frames > 0 {
            self.app.metrics.frames_received(frames, bytes);
        }
    }

    /// Executes one action; `Some` when the connection is over.
    async fn execute(&mut self, action: Action, writer: &SocketWriter) -> Option<End> {
        match action {
            Action::OpenCall(opening) => return self.open_call(opening, writer).await,
            Action::PushFrame(frame) => self.push_frame(frame).await,
            Action::PushEvent(event) => {
                let position = self.pipeline.as_ref().and_then(|c| c.pipeline.position());
                let event = match event {
                    CallEvent::ParticipantJoined(id) => Event::ParticipantJoined(id),
                    CallEvent::Dtmf(key) => Event::Dtmf(Arc::new(Dtmf {
                        call_offset: position,
                        ..Dtmf::new(key.encode_utf8(&mut [0; 4]))
                    })),
                    CallEvent::Transcript(data) => Event::Transcript(Arc::new(
                        super::actions::transcript_from_acs(data, Timestamp::now()),
                    )),
                };
                self.deliver(event);
            }
            Action::BadMessage(class) => self.app.metrics.bad_message(class),
            Action::Log(line) => log(line),
            Action::FlushCloseReply => writer.flush().await,
            Action::Close { code, reason } => writer.close(code, &reason).await,
            Action::End(end) => {
                if end.reason == EndReason::PolicyClose {
                    self.app.metrics.policy_close();
                }
                return Some(end);
            }
        }
        None
    }

    /// Hands `event` to every processor, and to whoever watches the call's events.
    fn deliver(&mut self, event: Event) {
        if let Some(live) = &self.live {
            live.transport().observe(&event);
        }
        if let Some(call_id) = &self.call_id {
            self.app
                .events
                .publish(call_id, || crate::events::describe(&event));
        }
        if let Some(call) = &mut self.pipeline {
            call.pipeline.push_event(event);
        }
    }

    /// Opens the call folder (once: a failure is not retried on every frame) and starts the
    /// pipeline. With recording off, nothing is opened and the call is only counted. `Some`
    /// when the call may not start: `limits.max_calls` were reached after the upgrade was let
    /// through (closed with 1013, try again later).
    async fn open_call(&mut self, opening: CallOpening, writer: &SocketWriter) -> Option<End> {
        let CallOpening {
            kind,
            identity,
            keys,
            format,
        } = opening;
        if !self.app.config.recording.enabled {
            tracing::Span::current().record("call_id", identity.value.as_str());
            self.start_pipeline(kind, &identity.value, format, None);
            return None;
        }
        let registry = Arc::clone(&self.app.registry);
        let report = self.machine.report().clone();
        let opened = tokio::task::spawn_blocking(move || {
            let slot = registry.open(identity, keys, report, Timestamp::now())?;
            if slot.transport_index == 0 {
                if let Err(e) = slot.folder.reserve_space() {
                    tracing::warn!(error = %e, "no room to reserve for the call's last session.json");
                }
            }
            if let Err(e) = slot.folder.write_report() {
                registry.close(&slot, Timestamp::now());
                return Err(e);
            }
            Ok(slot)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let slot = match opened {
            Ok(slot) => slot,
            Err(e) if crate::registry::is_full(&e) => {
                self.app
                    .metrics
                    .connection_refused(crate::metrics::Refusal::MaxCalls);
                let reason = e.to_string();
                tracing::warn!(%reason, "call refused");
                writer
                    .close(super::close_code::TRY_AGAIN_LATER, &reason)
                    .await;
                return Some(End {
                    reason: EndReason::PolicyClose,
                    code: Some(super::close_code::TRY_AGAIN_LATER),
                    detail: reason,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open the call folder; this call is not recorded");
                return None;
            }
        };
        tracing::Span::current().record("call_id", slot.folder.name());
        tracing::info!(folder = %slot.folder.dir().display(), transport = ?kind, "call started");
        let call_id = slot.folder.name().to_owned();
        let folder = slot.folder.dir().to_owned();
        self.slot = Some(slot);
        self.start_pipeline(kind, &call_id, format, Some(folder));
        None
    }

    /// Starts the configured processors: with outbound audio for a media transport, events
    /// only (transcripts) for a transcription transport.
    fn start_pipeline(
        &mut self,
        kind: TransportKind,
        call_id: &str,
        format: mediagate_audio::AudioFormat,
        folder: Option<PathBuf>,
    ) {
        self.pipeline = CallPipeline::start(
            &self.app,
            PipelineTarget {
                call_id,
                path: &self.info.path,
                connection_id: self.info.id,
                format,
                folder,
                to_socket: (kind == TransportKind::Media).then(|| self.outgoing.clone()),
            },
        );
        let pipeline = self.pipeline.as_ref().map(|call| &call.pipeline);
        let call_id: Arc<str> = call_id.into();
        self.call_id = Some(Arc::clone(&call_id));
        self.live = Some(self.app.live.register(LiveTransport {
            connection: self.info.id,
            call_id: Arc::clone(&call_id),
            kind,
            path: self.info.path.clone(),
            remote_addr: self.info.remote_addr,
            format,
            started_at: Timestamp::now(),
            hangup: self.hangup.clone(),
            probes: pipeline.map(|p| p.probes()).unwrap_or_default(),
            playback: std::sync::Mutex::new(pipeline.and_then(|p| p.playback())),
            sources: std::sync::Mutex::default(),
            tap: std::sync::OnceLock::new(),
            listeners: std::sync::atomic::AtomicUsize::new(0),
            transcript: Arc::default(),
        }));
        // The control plane's events of this call so far (callbacks before this socket came),
        // and from now on through `injected`.
        if let (Some(acs), Some(call)) = (&self.app.acs, &mut self.pipeline) {
            if let Some((history, queue)) = acs.attach(&call_id) {
                for event in history {
                    call.pipeline.push_event(event);
                }
                self.injected = Some(queue);
            }
        }
        // Announced once listed: a watcher that asks for the call then finds it.
        self.app.events.publish(&call_id, || {
            Some((
                "call_started",
                serde_json::json!({
                    "connection": self.info.id,
                    "kind": kind.as_str(),
                    "path": self.info.path,
                    "sample_rate_hz": format.sample_rate_hz(),
                    "channels": format.channels(),
                }),
            ))
        });
    }

    /// The fixed teardown order: input has stopped; the processors get `CallEnded`; the
    /// transport's report is written, `ended`, with each processor finished or still working;
    /// then it is updated as each of those finishes. Runs whatever ended the call, a panic in
    /// the read loop included.
    pub(crate) async fn finish(mut self, end: End, writer: SocketWriter) {
        self.publish_frames();
        let Driver {
            app,
            machine,
            slot,
            pipeline,
            live,
            call_id,
            info,
            ..
        } = self;
        // Off the admin API's list before anything else: nobody may play into a call ending.
        drop(live);
        if let Some(call_id) = &call_id {
            app.events.publish(call_id, || {
                Some((
                    "call_ended",
                    serde_json::json!({
                        "connection": info.id,
                        "kind": machine.report().kind.as_str(),
                        "reason": end.reason,
                        "code": end.code,
                    }),
                ))
            });
        }
        let call_opened = machine.call_opened();
        let mut report = machine.into_report();
        let mut end = end;
        // Processors still working after the settle (a speech engine with a backlog) are
        // driven from here on by a task of their own, at once: it keeps forwarding what they
        // emit while the writer closes and session.json is written, and updates session.json
        // as each finishes once the transport's report is in place (`first_write`).
        let (first_write, placed) = tokio::sync::oneshot::channel();
        if let Some(call) = pipeline {
            match end_pipeline(call, &app, &mut report).await {
                Ok(ending) if ending.finished() => ending.publish(&app.metrics),
                Ok(ending) => {
                    let guard = FinishingGuard::new(&app);
                    let tracker = app.tracker.clone();
                    tracker.spawn(
                        finish_in_background(Arc::clone(&app), ending, placed, guard)
                            .instrument(tracing::Span::current()),
                    );
                }
                Err(panic) => {
                    end = End {
                        reason: EndReason::InternalError,
                        code: end.code,
                        detail: format!("panic while finishing: {}", Escaped(&panic)),
                    };
                }
            }
        }
        writer.finish().await;
        let ended_at = Timestamp::now();
        tracing::info!(reason = ?end.reason, code = end.code, detail = %Escaped(&end.detail), "connection ended");
        report.ended_at = Some(ended_at);
        let lasted = ended_at.micros_since(report.connected_at) as f64 / 1e6;
        let kind = call_opened.then_some(report.kind.as_str());
        app.metrics.connection_ended(kind, end.code, lasted);
        report.end = Some(EndReport {
            reason: end.reason,
            code: end.code,
            detail: end.detail,
        });
        let Some(slot) = slot else {
            let _ = first_write.send(None);
            return;
        };
        let place = (Arc::clone(&slot.folder), slot.transport_index);
        let registry = Arc::clone(&app.registry);
        let written = tokio::task::spawn_blocking(move || {
            {
                let mut call_report = slot.folder.report.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(entry) = call_report.transports.get_mut(slot.transport_index) {
                    *entry = report;
                }
            }
            registry.close(&slot, ended_at);
            slot.folder.write_report()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            // The exit code will say so; `mediagate repair` marks the call afterwards.
            app.unfinalized
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "cannot write session.json");
        }
        let _ = first_write.send(Some(place));
    }
}

/// Counts a transport whose processors still work after it ended (`AppState::finishing`):
/// they hold engine state and audio, so they count against `limits.max_calls` until done.
struct FinishingGuard(Arc<std::sync::atomic::AtomicUsize>);

impl FinishingGuard {
    fn new(app: &AppState) -> Self {
        app.finishing
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        FinishingGuard(Arc::clone(&app.finishing))
    }
}

impl Drop for FinishingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long the processors get, after the transport ended, before the transport's report is
/// written with those still working listed as such.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Sends the processors `CallEnded` and waits up to [`SETTLE`] for them, into `report`; `Err`
/// with the panic message if that panicked (counted and logged here; the call still ends).
async fn end_pipeline(
    call: CallPipeline,
    app: &AppState,
    report: &mut TransportReport,
) -> Result<EndingPipeline, String> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    let connection_id = call.connection_id();
    let settled = std::panic::AssertUnwindSafe(async move {
        let mut ending = call.end();
        ending.settle(deadline).await;
        ending
    })
    .catch_unwind()
    .await;
    match settled {
        Ok(ending) => {
            report.processors = ending.reports();
            report.playback_pacing = ending.pacing;
            report.timeline = (ending.timeline.anomalies > 0).then_some(ending.timeline);
            report.files = files_of(&report.processors);
            Ok(ending)
        }
        Err(panic) => {
            let message = super::panic_message(&*panic);
            app.metrics.panicked("connection");
            // Its live counters leave the metrics; what it did is lost with the panic.
            app.metrics.pipeline_ended(connection_id, &[], None);
            tracing::error!(panic = %Escaped(&message), "the call's pipeline panicked while finishing");
            Err(message)
        }
    }
}

/// Every file the processors made, in processor order.
fn files_of(processors: &[mediagate_pipeline::ConsumerReport]) -> Vec<String> {
    processors
        .iter()
        .flat_map(|p| p.files.iter().cloned())
        .collect()
}

/// Where a transport's report lives: the call's folder and the transport's index in it.
type Place = (Arc<crate::session::CallFolder>, usize);

/// Drives the processors still working after the transport ended until each has finished,
/// and updates the transport's report (session.json) as each does, once `placed` says where
/// it is (the first write done; `None`: the call keeps no files). When the gateway stops
/// waiting for calls (`shutdown`), the processors that wait for emitters are released, so
/// their files are finalized with what they have.
async fn finish_in_background(
    app: Arc<AppState>,
    mut ending: EndingPipeline,
    placed: tokio::sync::oneshot::Receiver<Option<Place>>,
    _guard: FinishingGuard,
) {
    let finished = std::panic::AssertUnwindSafe(async {
        let mut placed = Some(placed);
        let mut place: Option<Place> = None;
        // A processor finished that session.json does not show yet.
        let mut unwritten = false;
        let shutdown = app.shutdown.clone();
        let mut released = false;
        loop {
            let more = tokio::select! {
                more = ending.next() => more,
                () = shutdown.cancelled(), if !released => {
                    released = true;
                    ending.release_waiting();
                    continue;
                }
            };
            if let Some(rx) = placed.as_mut() {
                if let Ok(known) = rx.try_recv() {
                    place = known;
                    placed = None;
                }
            }
            if !more {
                break;
            }
            unwritten = true;
            if let Some(place) = &place {
                write_update(&app, place, ending.reports(), ending.finished()).await;
                unwritten = false;
            }
        }
        if let Some(rx) = placed {
            place = rx.await.ok().flatten();
        }
        if let (true, Some(place)) = (unwritten, &place) {
            write_update(&app, place, ending.reports(), true).await;
        }
        ending
    })
    .catch_unwind()
    .await;
    match finished {
        Ok(ending) => ending.publish(&app.metrics),
        Err(panic) => {
            app.metrics.panicked("connection");
            tracing::error!(
                panic = %Escaped(&super::panic_message(&*panic)),
                "a call's processors panicked while finishing"
            );
        }
    }
}

/// Writes the transport's processors as they are now into session.json. A failed last write
/// counts as an unfinalized call (the exit code says so).
async fn write_update(
    app: &AppState,
    place: &Place,
    processors: Vec<mediagate_pipeline::ConsumerReport>,
    last: bool,
) {
    let (folder, index) = (Arc::clone(&place.0), place.1);
    let written = tokio::task::spawn_blocking(move || {
        {
            let mut call_report = folder.report.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = call_report.transports.get_mut(index) {
                entry.files = files_of(&processors);
                entry.processors = processors;
            }
        }
        folder.write_report()
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(e) = written {
        if last {
            app.unfinalized
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::error!(error = %e, "cannot update session.json");
    }
}

/// Writes a log line the machine decided on.
fn log(line: LogLine) {
    match line {
        LogLine::BadMessage {
            class,
            error,
            suppressed,
        } => tracing::warn!(class, error = %error, suppressed, "bad message skipped"),
        LogLine::AudioBeforeMetadata { sample_rate_hz } => tracing::warn!(
            sample_rate_hz,
            "audio before AudioMetadata: assuming the default format"
        ),
        LogLine::InvalidTimestamp => {
            tracing::warn!("a frame's timestamp is not RFC 3339: recorded in arrival order");
        }
        LogLine::ParticipantLimit { limit } => tracing::warn!(
            limit,
            "participant limit reached; frames of new participants are not recorded"
        ),
        LogLine::Closing { code, reason } => {
            tracing::warn!(code, reason = %Escaped(&reason), "closing connection");
        }
    }
}
