//! One played call's task: it feeds the call's [`CallModel`] with the methods the fake accepts,
//! the news of its streams and its timers, and does what the model says: streams the scripted
//! call into the gateway (the emulator's own machinery, one run per transport, each upgrade
//! signed), keeps the timers, and hands callbacks in order to the call's one sender task, which
//! posts them signed, one at a time, and records what each got back.
//!
//! Everything is bounded: the inbox, the callback queue, the timers, the callbacks recorded,
//! and each delivery's time ([`super::client`]). Dropping the [`super::ControlPlane`] ends the
//! task, its streams (close frame 1000) and its sender.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::call::{Action, CallFacts, CallModel, Input, StreamNews, Tag, Timer, Transport};
use super::events::{CallIds, CallbackEvent};
use super::fake::{DeliveredCallback, Shared, lock};
use super::state::AnsweredCall;
use crate::{EmulateConfig, EmulatorError, RunControl, TranscriptIdentity, run_with};

/// Methods and stream news waiting for a call's task.
pub(crate) const INBOX_CAPACITY: usize = 64;
/// Callbacks waiting for the call's sender.
const CALLBACK_QUEUE: usize = 256;
/// Timers one call may have set at once (continuous DTMF sets one per scripted key press).
const MAX_TIMERS: usize = 1024;
/// Callbacks recorded per call for [`super::FakeCall::callbacks`].
const MAX_RECORDED_CALLBACKS: usize = 1000;

/// Plays an answered call until it ends or the fake stops.
///
/// `news` is a sender of `inbox`, for the call's streams to report on.
pub(crate) async fn drive(
    shared: Arc<Shared>,
    call: AnsweredCall,
    inbox: mpsc::Receiver<Input>,
    news: mpsc::Sender<Input>,
) {
    let span = tracing::info_span!("played_call", call = %call.ids.call_connection_id);
    let driver = Driver::new(shared, call, news);
    driver.run(inbox).instrument(span).await;
}

/// One call's task.
struct Driver {
    shared: Arc<Shared>,
    call: AnsweredCall,
    /// The task's own inbox, for its streams' news.
    news: mpsc::Sender<Input>,
    /// When the call connected: time zero of the model.
    start: Instant,
    timers: Timers,
    /// Raised to stop a transport's stream.
    stops: [Option<watch::Sender<bool>>; 2],
    callbacks: Option<mpsc::Sender<(CallbackEvent, Option<String>)>>,
}

impl Driver {
    fn new(shared: Arc<Shared>, call: AnsweredCall, news: mpsc::Sender<Input>) -> Driver {
        Driver {
            shared,
            call,
            news,
            start: Instant::now(),
            timers: Timers::default(),
            stops: [None, None],
            callbacks: None,
        }
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        let (callbacks, queue) = mpsc::channel(CALLBACK_QUEUE);
        self.callbacks = Some(callbacks);
        let sender = tokio::spawn(
            send_callbacks(self.shared.clone(), self.call.clone(), queue).in_current_span(),
        );
        let facts = facts(&self.call).await;
        let (mut model, actions) = CallModel::connect(facts);
        self.start = Instant::now();
        self.apply(actions).await;
        let mut stopped = self.shared.stopped.clone();
        while !model.is_ended() {
            let next = self.timers.next_at().map(|at| self.start + at);
            let input = tokio::select! {
                input = inbox.recv() => match input {
                    Some(input) => input,
                    None => break,
                },
                () = sleep_until(next) => match self.timers.pop_due(self.start.elapsed()) {
                    Some(timer) => Input::Due(timer),
                    None => continue,
                },
                _ = stopped.changed() => break,
            };
            let actions = model.handle(input, self.start.elapsed());
            self.apply(actions).await;
        }
        // Streams still running are stopped (their senders dropped); the sender delivers
        // what is queued, then ends.
        self.stops = [None, None];
        self.callbacks = None;
        let _ = sender.await;
        let mut state = lock(&self.shared);
        state.drivers.remove(&self.call.ids.call_connection_id);
        if let Some(call) = state.calls.get_mut(&self.call.ids.call_connection_id) {
            call.state = "disconnected".to_owned();
            call.ended = true;
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Callback { event, uri } => {
                    if let Some(callbacks) = &self.callbacks {
                        // Waits when the queue is full: callbacks stay in order.
                        let _ = callbacks.send((event, uri)).await;
                    }
                }
                Action::Start(transport) => self.start_stream(transport),
                Action::Stop(transport) => {
                    if let Some(stop) = &self.stops[index(transport)] {
                        stop.send_replace(true);
                    }
                }
                Action::Schedule { at, timer } => {
                    if !self.timers.insert(at, timer) {
                        tracing::warn!("too many timers: one is dropped");
                    }
                }
                Action::Cancel(tag) => self.timers.cancel(tag),
                Action::CancelAll => self.timers.clear(),
                Action::End => {
                    // No method is taken from now on, though the last callbacks are still on
                    // their way.
                    let id = &self.call.ids.call_connection_id;
                    if let Some(call) = lock(&self.shared).calls.get_mut(id) {
                        call.state = "disconnected".to_owned();
                    }
                }
            }
        }
    }

    /// Opens a transport and streams the script into it, in a task of its own that reports
    /// [`StreamNews`] to the call's inbox.
    fn start_stream(&mut self, transport: Transport) {
        let (stop, stopped) = watch::channel(false);
        self.stops[index(transport)] = Some(stop);
        let news = self.news.clone();
        let config = match self.stream_config(transport) {
            Ok(config) => config,
            Err(why) => {
                tokio::spawn(async move {
                    let _ = news
                        .send(Input::Stream(transport, StreamNews::Failed(why)))
                        .await;
                });
                return;
            }
        };
        let control = RunControl {
            stop: Some(stopped),
            opened: None,
            hold_open: transport == Transport::Transcription
                || self.call.script.hang_up != super::scripted::CallerHangUp::AfterAudio,
            transcript_identity: Some(TranscriptIdentity {
                call_connection_id: self.call.ids.call_connection_id.clone(),
                correlation_id: self.call.ids.correlation_id.clone(),
                locale: self.call.answer["transcriptionOptions"]["locale"]
                    .as_str()
                    .map(str::to_owned),
            }),
        };
        let shared = self.shared.clone();
        let id = self.call.ids.call_connection_id.clone();
        tokio::spawn(stream(shared, id, transport, config, control, news).in_current_span());
    }

    /// The emulator's configuration for one transport of this call.
    fn stream_config(&self, transport: Transport) -> Result<EmulateConfig, String> {
        let script = &self.call.script;
        let token = self.shared.token()?;
        let (options, url) = match transport {
            Transport::Media => {
                let options = &self.call.answer["mediaStreamingOptions"];
                (
                    options,
                    options["transportUrl"].as_str().unwrap_or_default(),
                )
            }
            Transport::Transcription => {
                let options = &self.call.answer["transcriptionOptions"];
                (
                    options,
                    options["transportUrl"].as_str().unwrap_or_default(),
                )
            }
        };
        let mut config = EmulateConfig::new(url)
            .with_pacing(script.pacing)
            .with_trusted_roots(&self.shared.options.trusted_roots)
            .with_upgrade_header("Authorization", format!("Bearer {token}"));
        match transport {
            Transport::Media => {
                config.wavs.clone_from(&script.wavs);
                config.unmixed = text(&options["audioChannelType"]) == "unmixed";
                config.participant_ids = script.participants();
                config.dtmf.clone_from(&script.dtmf);
                config.sample_rate_hz = Some(match text(&options["audioFormat"]).as_str() {
                    "pcm24kmono" => 24_000,
                    _ => 16_000,
                });
            }
            Transport::Transcription => {
                let Some(transcript) = &script.transcript else {
                    return Err("the scripted call has no transcript to play".to_owned());
                };
                config = config.with_media(false).with_transcript(transcript);
            }
        }
        Ok(config)
    }
}

/// A string option, lowercased (the service compares enums without case).
fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_ascii_lowercase()
}

fn index(transport: Transport) -> usize {
    match transport {
        Transport::Media => 0,
        Transport::Transcription => 1,
    }
}

/// What the model is built from: the answer's options and the script (its WAVs' length read
/// on a blocking thread).
async fn facts(call: &AnsweredCall) -> CallFacts {
    let wavs = call.script.wavs.clone();
    let audio = tokio::task::spawn_blocking(move || audio_length(&wavs))
        .await
        .unwrap_or_default();
    let starts = |options: &Value, flag: &str| {
        options
            .is_object()
            .then(|| options[flag].as_bool() != Some(false))
    };
    let mut participants = call.script.participants();
    if participants.is_empty() {
        participants.push(call.from.clone());
    }
    participants.push(call.to.clone());
    participants.dedup();
    CallFacts {
        caller: call.from.clone(),
        participants,
        dtmf: call.script.dtmf.clone(),
        audio,
        hang_up: call.script.hang_up,
        operation_context: call.answer["operationContext"].as_str().map(str::to_owned),
        media: starts(&call.answer["mediaStreamingOptions"], "startMediaStreaming"),
        transcription: starts(&call.answer["transcriptionOptions"], "startTranscription"),
    }
}

/// The longest WAV's length (0 for files that cannot be read: the stream reports those).
fn audio_length(paths: &[std::path::PathBuf]) -> Duration {
    paths
        .iter()
        .filter_map(|path| {
            let reader = hound::WavReader::open(path).ok()?;
            let rate = reader.spec().sample_rate.max(1);
            Some(Duration::from_secs_f64(
                f64::from(reader.duration()) / f64::from(rate),
            ))
        })
        .max()
        .unwrap_or_default()
}

/// One transport's stream: its news to the call's inbox, its report to the call's record.
async fn stream(
    shared: Arc<Shared>,
    call_id: String,
    transport: Transport,
    config: EmulateConfig,
    mut control: RunControl,
    news: mpsc::Sender<Input>,
) {
    let (opened_tx, mut opened) = oneshot::channel();
    control.opened = Some(opened_tx);
    let url = config.url.clone();
    let run = run_with(config, control);
    tokio::pin!(run);
    let mut announced = false;
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            Ok(()) = &mut opened, if !announced => {
                announced = true;
                let _ = news.send(Input::Stream(transport, StreamNews::Opened)).await;
            }
        }
    };
    if !announced && opened.try_recv().is_ok() {
        announced = true;
        let _ = news
            .send(Input::Stream(transport, StreamNews::Opened))
            .await;
    }
    let outcome = result.map_err(|e| describe(&e, &url));
    if let Err(why) = &outcome {
        tracing::info!(?transport, %why, "stream ended in error");
    }
    let message = match (&outcome, announced) {
        (Err(why), false) => StreamNews::Failed(why.clone()),
        _ => StreamNews::Ended,
    };
    {
        let mut state = lock(&shared);
        if let Some(call) = state.calls.get_mut(&call_id) {
            match transport {
                Transport::Media => call.streams.media = Some(outcome),
                Transport::Transcription => call.streams.transcription = Some(outcome),
            }
        }
    }
    let _ = news.send(Input::Stream(transport, message)).await;
}

/// An error and its causes on one line, the URL's query (it may hold a secret) left out.
fn describe(error: &EmulatorError, url: &str) -> String {
    let mut text = error.to_string();
    if let Some((bare, _)) = url.split_once('?') {
        text = text.replace(url, &format!("{bare}?…"));
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Posts the call's callbacks one at a time, in order, each signed with a fresh token, and
/// records what each got back.
async fn send_callbacks(
    shared: Arc<Shared>,
    call: AnsweredCall,
    mut queue: mpsc::Receiver<(CallbackEvent, Option<String>)>,
) {
    let mut stopped = shared.stopped.clone();
    loop {
        let (event, uri) = tokio::select! {
            next = queue.recv() => match next {
                Some(next) => next,
                None => return,
            },
            _ = stopped.changed() => return,
        };
        let uri = uri.unwrap_or_else(|| call.callback_uri.clone());
        let delivered = tokio::select! {
            delivered = post_callback(&shared, &call.ids, &event, &uri) => delivered,
            _ = stopped.changed() => return,
        };
        let mut state = lock(&shared);
        if let Some(record) = state.calls.get_mut(&call.ids.call_connection_id) {
            if record.callbacks.len() < MAX_RECORDED_CALLBACKS {
                record.callbacks.push(delivered);
            }
        }
    }
}

async fn post_callback(
    shared: &Shared,
    ids: &CallIds,
    event: &CallbackEvent,
    uri: &str,
) -> DeliveredCallback {
    let cloud = event.cloud_event(ids, &crate::config::fresh_subscription_id(), &now_rfc3339());
    let mut record = DeliveredCallback {
        event_type: event.event_type(),
        uri: uri.to_owned(),
        event: cloud.clone(),
        status: None,
        error: None,
        attempts: 0,
    };
    let url = match url::Url::parse(uri) {
        Ok(url) => url,
        Err(e) => {
            record.error = Some(format!("the callback URI is not a URL: {e}"));
            return record;
        }
    };
    let token = match shared.token() {
        Ok(token) => token,
        Err(why) => {
            record.error = Some(why);
            return record;
        }
    };
    let headers = [
        (CONTENT_TYPE, "application/json".to_owned()),
        (AUTHORIZATION, format!("Bearer {token}")),
    ];
    let body = Bytes::from(Value::Array(vec![cloud]).to_string());
    let delivered = shared
        .client
        .deliver(Method::POST, &url, &headers, body)
        .await;
    record.status = delivered.status();
    record.error = delivered.error;
    record.attempts = delivered.attempts;
    record
}

/// Now, as RFC 3339 to the microsecond (events' `time`, a recording's `startDateTime`): what
/// the SDKs' datetimes hold, so a time reads back as it was sent.
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.microsecond() * 1_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A call's timers, by call time (ties in the order they were set).
#[derive(Debug, Default)]
struct Timers {
    queue: BTreeMap<(Duration, u64), Timer>,
    set: u64,
}

impl Timers {
    /// Sets a timer; false when [`MAX_TIMERS`] are set already.
    fn insert(&mut self, at: Duration, timer: Timer) -> bool {
        if self.queue.len() >= MAX_TIMERS {
            return false;
        }
        self.set += 1;
        self.queue.insert((at, self.set), timer);
        true
    }

    fn cancel(&mut self, tag: Tag) {
        self.queue.retain(|_, timer| timer.tag() != tag);
    }

    fn clear(&mut self) {
        self.queue.clear();
    }

    fn next_at(&self) -> Option<Duration> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// The first timer, if it is due at `now`.
    fn pop_due(&mut self, now: Duration) -> Option<Timer> {
        let entry = self.queue.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }
}
