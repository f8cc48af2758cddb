//! The fake's state, and what each accepted method does to it: incoming call contexts used
//! once, calls and their connection state, recordings, the replies kept for repeated requests.
//! Pure: no I/O; a method that a call's driver must hear of comes back as an [`Effect`].

use std::collections::HashMap;
use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::call::Input;
use super::events::CallIds;
use super::fake::{FakeCall, IncomingCall, RecordedRequest};
use super::reference::Operation;
use super::scripted::ScriptedCall;

/// How many calls the fake plays at once; an answer beyond them gets a 503.
pub(crate) const MAX_PLAYED_CALLS: usize = 100;

/// A status and a JSON body (`null` for none).
pub(crate) type Reply = (u16, Value);

/// What an incoming call context was used for.
#[derive(Debug, Clone)]
pub(crate) enum ContextUse {
    /// Not yet answered, rejected or redirected; placed calls carry their script.
    Offered(IncomingCall, Option<Arc<ScriptedCall>>),
    Used(&'static str),
}

/// A call the fake plays: who it is and what it was answered with.
#[derive(Debug, Clone)]
pub(crate) struct AnsweredCall {
    pub(crate) ids: CallIds,
    pub(crate) callback_uri: String,
    pub(crate) from: String,
    pub(crate) to: String,
    /// The answer's body (streaming options, operation context).
    pub(crate) answer: Value,
    pub(crate) script: Arc<ScriptedCall>,
}

/// What a call's driver must be told of, once the state has changed.
#[derive(Debug)]
pub(crate) enum Effect {
    None,
    /// A placed call was answered: play it.
    Answered(AnsweredCall),
    /// A method for a call.
    Method {
        call_id: String,
        input: Input,
    },
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) contexts: HashMap<String, ContextUse>,
    pub(crate) calls: HashMap<String, FakeCall>,
    pub(crate) recordings: HashMap<String, String>,
    /// Responses by repeatability id, replayed when a request is sent again.
    pub(crate) replies: HashMap<String, (u16, Value)>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) throttle: Option<(u16, Option<String>, u32)>,
    /// The inboxes of the calls being played.
    pub(crate) drivers: HashMap<String, mpsc::Sender<Input>>,
    next_id: u64,
}

impl State {
    /// A fresh id, `<prefix>-<pid>-<n>`.
    pub(crate) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:08x}-{:04}", std::process::id(), self.next_id)
    }
}

/// The service's error body.
pub(crate) fn error(status: StatusCode, code: &str, message: &str, target: Option<&str>) -> Reply {
    let mut error = json!({ "code": code, "message": message });
    if let Some(target) = target {
        error["target"] = json!(target);
    }
    (status.as_u16(), json!({ "error": error }))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The properties of a call, as answer, create, connect and get return them.
fn properties(call: &FakeCall) -> Value {
    let mut p = json!({
        "callConnectionId": call.id,
        "serverCallId": call.server_call_id,
        "callConnectionState": call.state,
        "callbackUri": call.callback_uri,
        "correlationId": call.correlation_id,
        "targets": [],
    });
    if let Some(options) = &call.media_streaming {
        p["mediaStreamingSubscription"] = json!({
            "id": format!("media-{}", call.id),
            "state": if options["startMediaStreaming"].as_bool() == Some(true) { "active" } else { "inactive" },
            "subscribedContentTypes": ["audio"],
        });
    }
    if let Some(options) = &call.transcription {
        p["transcriptionSubscription"] = json!({
            "id": format!("transcription-{}", call.id),
            "state": if options["startTranscription"].as_bool() == Some(true) { "active" } else { "inactive" },
            "subscribedResultTypes": ["final", "intermediate"],
        });
    }
    p
}

/// Applies a valid, authenticated request to the fake's state: the reference's success status
/// (or the service's error), and what the call's driver must hear of.
pub(crate) fn execute(
    state: &mut State,
    operation: &Operation,
    params: &[(String, String)],
    body: &Value,
) -> (Reply, Effect) {
    let name = operation.name.as_str();
    match name {
        "AnswerCall" | "RejectCall" | "RedirectCall" => use_context(state, operation, body),
        "CreateCall" | "Connect" => {
            let id = state.id("call");
            let call = FakeCall {
                id: id.clone(),
                server_call_id: format!("server-{id}"),
                correlation_id: format!("corr-{id}"),
                state: "connecting".to_owned(),
                callback_uri: body["callbackUri"].as_str().unwrap_or_default().to_owned(),
                media_streaming: body.get("mediaStreamingOptions").cloned(),
                transcription: body.get("transcriptionOptions").cloned(),
                actions: vec![(name.to_owned(), body.clone())],
                ..FakeCall::default()
            };
            let reply = properties(&call);
            state.calls.insert(id, call);
            ((operation.success, reply), Effect::None)
        }
        _ if name.starts_with("CallRecording_") => {
            let reply = recording(state, operation, params);
            // A played call hears of its recording's state, as ACS tells the application.
            let call_id = body["callConnectionId"].as_str().unwrap_or_default();
            let effect = match state.calls.get(call_id) {
                Some(call)
                    if call.played && name == "CallRecording_StartRecording" && reply.0 < 300 =>
                {
                    let mut body = body.clone();
                    body["recordingId"] = reply.1["recordingId"].clone();
                    body["startDateTime"] = Value::from(super::driver::now_rfc3339());
                    Effect::Method {
                        call_id: call_id.to_owned(),
                        input: Input::Method {
                            name: name.to_owned(),
                            body,
                        },
                    }
                }
                _ => Effect::None,
            };
            (reply, effect)
        }
        _ => mid_call(state, operation, params, body),
    }
}

/// Answer, reject or redirect: the context is used once.
fn use_context(state: &mut State, operation: &Operation, body: &Value) -> (Reply, Effect) {
    let name = operation.name.as_str();
    let context = body["incomingCallContext"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (incoming, script) = match state.contexts.get(&context) {
        Some(ContextUse::Offered(incoming, script)) => (incoming.clone(), script.clone()),
        Some(ContextUse::Used(how)) => {
            let message = format!("The incoming call was already {how}");
            let target = Some("incomingCallContext");
            return (
                error(StatusCode::BAD_REQUEST, "BadRequest", &message, target),
                Effect::None,
            );
        }
        None => {
            let reply = error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Invalid incoming call context",
                Some("incomingCallContext"),
            );
            return (reply, Effect::None);
        }
    };
    if name == "AnswerCall" && script.is_some() && state.drivers.len() >= MAX_PLAYED_CALLS {
        let message = format!("The fake plays at most {MAX_PLAYED_CALLS} calls at once");
        let reply = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &message,
            None,
        );
        return (reply, Effect::None);
    }
    let how = match name {
        "AnswerCall" => "answered",
        "RejectCall" => "rejected",
        _ => "redirected",
    };
    state.contexts.insert(context, ContextUse::Used(how));
    if name != "AnswerCall" {
        return ((operation.success, Value::Null), Effect::None);
    }
    let id = state.id("call");
    let call = FakeCall {
        id: id.clone(),
        server_call_id: incoming.server_call_id.clone(),
        correlation_id: incoming.correlation_id.clone(),
        state: "connecting".to_owned(),
        callback_uri: body["callbackUri"].as_str().unwrap_or_default().to_owned(),
        from: incoming.from.clone(),
        to: incoming.to.clone(),
        media_streaming: body.get("mediaStreamingOptions").cloned(),
        transcription: body.get("transcriptionOptions").cloned(),
        actions: vec![(name.to_owned(), body.clone())],
        played: script.is_some(),
        ..FakeCall::default()
    };
    let reply = properties(&call);
    let effect = match script {
        Some(script) => Effect::Answered(AnsweredCall {
            ids: CallIds {
                call_connection_id: id.clone(),
                server_call_id: call.server_call_id.clone(),
                correlation_id: call.correlation_id.clone(),
            },
            callback_uri: call.callback_uri.clone(),
            from: incoming.from,
            to: incoming.to,
            answer: body.clone(),
            script,
        }),
        None => Effect::None,
    };
    state.calls.insert(id, call);
    ((operation.success, reply), effect)
}

fn recording(state: &mut State, operation: &Operation, params: &[(String, String)]) -> Reply {
    let ok = operation.success;
    let name = operation.name.as_str();
    if name == "CallRecording_StartRecording" {
        let id = state.id("recording");
        state.recordings.insert(id.clone(), "active".to_owned());
        return (
            ok,
            json!({"recordingId": id, "recordingState": "active", "recordingKind": "azureCommunicationServices"}),
        );
    }
    let id = param(params, "recordingId").to_owned();
    let Some(current) = state.recordings.get(&id).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "Recording not found",
            Some("recordingId"),
        );
    };
    let new = match name {
        "CallRecording_PauseRecording" => "inactive",
        "CallRecording_ResumeRecording" => "active",
        "CallRecording_StopRecording" => {
            state.recordings.remove(&id);
            return (ok, Value::Null);
        }
        _ => current.as_str(),
    }
    .to_owned();
    state.recordings.insert(id.clone(), new.clone());
    let reply = json!({"recordingId": id, "recordingState": new, "recordingKind": "azureCommunicationServices"});
    (ok, if ok == 200 { reply } else { Value::Null })
}

/// A method on a call connection: the call must be live.
fn mid_call(
    state: &mut State,
    operation: &Operation,
    params: &[(String, String)],
    body: &Value,
) -> (Reply, Effect) {
    let name = operation.name.as_str();
    let id = param(params, "callConnectionId");
    let Some(call) = state.calls.get_mut(id) else {
        let reply = error(
            StatusCode::NOT_FOUND,
            "8522",
            "Call not found",
            Some("callConnectionId"),
        );
        return (reply, Effect::None);
    };
    if call.state == "disconnected" {
        let reply = error(
            StatusCode::BAD_REQUEST,
            "8501",
            "Action is invalid when call is not in Established state",
            None,
        );
        return (reply, Effect::None);
    }
    call.actions.push((name.to_owned(), body.clone()));
    if call.state == "connecting" {
        call.state = "connected".to_owned();
    }
    let context = || json!({"operationContext": body["operationContext"]});
    let reply = match name {
        "CallConnection_GetCall" => properties(call),
        "CallConnection_HangupCall" | "CallConnection_TerminateCall" => {
            call.state = "disconnected".to_owned();
            Value::Null
        }
        "CallConnection_TransferToParticipant" => {
            call.state = "transferring".to_owned();
            context()
        }
        "CallConnection_GetParticipants" => json!({"value": [], "nextLink": null}),
        "CallConnection_AddParticipant" => json!({
            "participant": {"identifier": body["participantToAdd"], "isMuted": false, "isOnHold": false},
            "operationContext": body["operationContext"],
            "invitationId": format!("invitation-{id}"),
        }),
        "CallConnection_GetParticipant" => {
            json!({"identifier": {"rawId": param(params, "participantRawId")}, "isMuted": false, "isOnHold": false})
        }
        "CallConnection_CancelAddParticipant" => {
            json!({"invitationId": body["invitationId"], "operationContext": body["operationContext"]})
        }
        "CallConnection_RemoveParticipant" | "CallConnection_Mute" | "CallMedia_SendDtmfTones" => {
            context()
        }
        _ => Value::Null,
    };
    let effect = if call.played && !name.starts_with("CallConnection_Get") {
        Effect::Method {
            call_id: id.to_owned(),
            input: Input::Method {
                name: name.to_owned(),
                body: body.clone(),
            },
        }
    } else {
        Effect::None
    };
    ((operation.success, reply), effect)
}
