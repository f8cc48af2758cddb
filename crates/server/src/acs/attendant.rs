//! The attendant: a call answering and routing bot made of control-plane actions. It greets,
//! takes one key, transfers the call to the key's target, and hangs up on silence (or after
//! `retries` keys that are not on the menu).
//!
//! - `mode = "acs"`: ACS speaks the greeting and collects the key in one `recognize` (the
//!   greeting is its prompt); `RecognizeCompleted` and `RecognizeFailed` drive the rest.
//! - `mode = "gateway"`: this gateway speaks the greeting over the call's bidirectional
//!   audio (the registry's speaker) and takes the key from the media stream's DTMF.

use std::sync::Arc;
use std::time::Duration;

use mediagate_acs::models::{
    DtmfOptions, DtmfTone, PlaySource, RecognizeInputType, RecognizeOptions, RecognizeRequest,
    TransferToParticipantRequest,
};
use serde_json::{Value, json};

use super::config::{AttendantConfig, AttendantMode};
use super::{AcsCall, ControlPlane, control, policy, record};
use crate::AppState;

/// The operation context of the attendant's requests, so its results are told from others'.
const CONTEXT: &str = "mediagate-attendant";

/// Where an attendant is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Not started (or no attendant).
    #[default]
    Idle,
    /// Waiting for a key, after this many wrong ones.
    Listening(u32),
    /// Done: transferred or hung up.
    Done,
}

/// Acts on a callback.
pub(super) async fn on_event(
    app: &Arc<AppState>,
    plane: &Arc<ControlPlane>,
    call: &Arc<AcsCall>,
    kind: &str,
    data: &Value,
) {
    let Some(attendant) = &call.rule.attendant else {
        return;
    };
    let ours = data["operationContext"].as_str() == Some(CONTEXT);
    // Each step once, in order: a callback repeated or out of turn changes nothing.
    let state = call.state().attendant;
    let idle = state == State::Idle;
    let listening = matches!(state, State::Listening(_));
    match (kind, attendant.mode) {
        ("CallConnected", AttendantMode::Acs) if idle => {
            call.state().attendant = State::Listening(0);
            recognize(app, plane, call, attendant).await;
        }
        ("CallConnected", AttendantMode::Gateway) if idle => {
            call.state().attendant = State::Listening(0);
            let (app, plane, call) = (Arc::clone(app), Arc::clone(plane), Arc::clone(call));
            tokio::spawn(async move { gateway_attendant(app, plane, call).await });
        }
        ("RecognizeCompleted", AttendantMode::Acs) if ours && listening => {
            let tone = data["dtmfResult"]["tones"][0].clone();
            let key = serde_json::from_value::<DtmfTone>(tone)
                .ok()
                .map(DtmfTone::key);
            on_key(app, plane, call, attendant, key).await;
        }
        ("RecognizeFailed", AttendantMode::Acs) if ours && listening => {
            hang_up(app, plane, call, "no key before the silence timeout").await;
        }
        ("CallDisconnected", _) => call.state().attendant = State::Done,
        _ => {}
    }
}

/// Asks ACS to play the greeting and collect one key.
async fn recognize(
    app: &Arc<AppState>,
    plane: &ControlPlane,
    call: &Arc<AcsCall>,
    attendant: &AttendantConfig,
) {
    let Some(id) = call.call_connection_id() else {
        return;
    };
    let prompt = match &attendant.greeting_url {
        Some(url) => PlaySource::file(url),
        None => PlaySource::text(&attendant.greeting, attendant.voice.as_deref()),
    };
    let request = RecognizeRequest {
        recognize_input_type: RecognizeInputType::Dtmf,
        play_prompt: Some(prompt),
        play_prompts: Vec::new(),
        interrupt_call_media_operation: Some(true),
        recognize_options: RecognizeOptions {
            interrupt_prompt: Some(true),
            initial_silence_timeout_in_seconds: Some(attendant.silence_timeout_secs),
            target_participant: call.caller.clone(),
            dtmf_options: Some(DtmfOptions {
                inter_tone_timeout_in_seconds: Some(attendant.silence_timeout_secs),
                max_tones_to_collect: Some(1),
                stop_tones: Vec::new(),
            }),
            ..RecognizeOptions::default()
        },
        operation_context: Some(CONTEXT.to_owned()),
        operation_callback_uri: None,
    };
    if let Err(e) = plane.client.recognize(&id, &request).await {
        record(
            app,
            call,
            "mediagate.AttendantFailed",
            "",
            &json!({ "error": e.to_string() }),
        )
        .await;
    }
}

/// The caller pressed `key` (or something that is no key): transfer, ask again, or hang up.
async fn on_key(
    app: &Arc<AppState>,
    plane: &Arc<ControlPlane>,
    call: &Arc<AcsCall>,
    attendant: &AttendantConfig,
    key: Option<char>,
) {
    let target = key.and_then(|k| attendant.menu.get(&k.to_string()));
    let Some(target) = target else {
        let tries = match call.state().attendant {
            State::Listening(n) => n + 1,
            _ => return,
        };
        record(
            app,
            call,
            "mediagate.AttendantKey",
            "",
            &json!({ "key": key.map(String::from), "on_menu": false }),
        )
        .await;
        if tries > attendant.retries {
            hang_up(app, plane, call, "no key on the menu").await;
        } else {
            call.state().attendant = State::Listening(tries);
            if attendant.mode == AttendantMode::Acs {
                recognize(app, plane, call, attendant).await;
            }
        }
        return;
    };
    call.state().attendant = State::Done;
    let key = key.map(String::from);
    control(call, |c| {
        c.key = key.clone();
        c.transferred_to = Some(target.clone());
    });
    let Some(id) = call.call_connection_id() else {
        return;
    };
    let request = TransferToParticipantRequest {
        target_participant: policy::target(target),
        operation_context: Some(CONTEXT.to_owned()),
        ..TransferToParticipantRequest::default()
    };
    // Recorded before it is asked for: ACS's answer (CallTransferAccepted) may come before the
    // request's own response does.
    let data = json!({ "key": key, "target": target });
    record(app, call, "mediagate.AttendantTransfer", "", &data).await;
    if let Err(e) = plane.client.transfer(&id, &request).await {
        let data = json!({ "step": "transfer", "error": e.to_string() });
        record(app, call, "mediagate.AttendantFailed", "", &data).await;
        hang_up(app, plane, call, "the transfer failed").await;
    }
}

/// Ends the call for everyone.
async fn hang_up(app: &Arc<AppState>, plane: &ControlPlane, call: &Arc<AcsCall>, why: &str) {
    call.state().attendant = State::Done;
    let Some(id) = call.call_connection_id() else {
        return;
    };
    // Recorded first, as the transfer is: CallDisconnected may come before the response.
    record(
        app,
        call,
        "mediagate.AttendantHangUp",
        "",
        &json!({ "why": why }),
    )
    .await;
    if let Err(e) = plane.client.terminate(&id).await {
        let data = json!({ "step": "hang up", "error": e.to_string() });
        record(app, call, "mediagate.AttendantFailed", "", &data).await;
    }
}

/// How long the gateway attendant waits for the call's media socket, to speak into it.
const MEDIA_WAIT: Duration = Duration::from_secs(10);

/// `mode = "gateway"`: speaks over the call's own audio and listens to its DTMF.
async fn gateway_attendant(app: Arc<AppState>, plane: Arc<ControlPlane>, call: Arc<AcsCall>) {
    let Some(attendant) = call.rule.attendant.clone() else {
        return;
    };
    let call_id: Arc<str> = Arc::from(call.folder.name());
    // Subscribed before the greeting, so no key pressed during it is missed.
    let mut events = app.events.subscribe();
    loop {
        if let Err(why) = say(&app, &call_id, &attendant.greeting).await {
            record(
                &app,
                &call,
                "mediagate.AttendantFailed",
                "",
                &json!({ "error": why }),
            )
            .await;
            hang_up(&app, &plane, &call, "cannot speak into the call").await;
            return;
        }
        let silence = tokio::time::sleep(Duration::from_secs(u64::from(
            attendant.silence_timeout_secs,
        )));
        tokio::pin!(silence);
        let key = loop {
            tokio::select! {
                () = call.released.cancelled() => return,
                () = &mut silence => break None,
                event = events.recv() => match event {
                    Ok(event) if event.kind == "dtmf" && event.call_id == call_id => {
                        let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                        break Some(data["tone"].as_str().and_then(|t| t.chars().next()).unwrap_or('?'));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        };
        match key {
            None => {
                hang_up(&app, &plane, &call, "no key before the silence timeout").await;
                return;
            }
            Some(key) => {
                on_key(&app, &plane, &call, &attendant, Some(key)).await;
                if !matches!(call.state().attendant, State::Listening(_)) {
                    return;
                }
            }
        }
    }
}

/// Speaks `text` into the call's bidirectional audio, once its media socket is there.
async fn say(app: &Arc<AppState>, call_id: &str, text: &str) -> Result<(), String> {
    let speaker = app
        .speaker
        .clone()
        .ok_or("this gateway has no voice (its registry set no speaker)")?;
    let started = tokio::time::Instant::now();
    let transport = loop {
        let found = app
            .live
            .of_call(call_id)
            .into_iter()
            .find(|t| t.playback().is_some());
        match found {
            Some(t) => break t,
            None if started.elapsed() >= MEDIA_WAIT => {
                return Err("no bidirectional media socket".to_owned());
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let rate = transport.format.sample_rate_hz();
    let text = text.to_owned();
    let clip = tokio::task::spawn_blocking(move || {
        speaker(&text).and_then(|clip| clip.at_rate(rate).map_err(|e| e.to_string()))
    })
    .await
    .map_err(|_| "the speaker failed".to_owned())??;
    let mut playback = transport.playback();
    let playback = playback.as_mut().ok_or("the call's audio ended")?;
    playback.play_clip(&clip).map_err(|e| e.to_string())
}
