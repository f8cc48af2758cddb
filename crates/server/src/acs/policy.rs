//! The answer policy: which rule an incoming call matches, and the request that carries out
//! the rule's decision.

use mediagate_acs::models::{
    AnswerCallRequest, AudioChannelType, AudioFormat, CallRejectReason, CommunicationIdentifier,
    MediaStreamingContentType, MediaStreamingOptions, StreamingTransportType, TranscriptionOptions,
};

use super::config::{AnswerRule, Channels};

/// Whether `pattern` matches `value`: `*` any run of characters, `?` any one, the rest
/// literally. Iterative, linear in practice (a pattern has few stars).
pub(crate) fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether an identifier matches a rule's `from` or `to`: its phone number, or its raw id.
fn matches(pattern: Option<&str>, who: &CommunicationIdentifier) -> bool {
    let Some(pattern) = pattern else {
        return true;
    };
    who.phone_number().is_some_and(|n| glob(pattern, n))
        || who.raw().is_some_and(|raw| glob(pattern, &raw))
}

/// The first rule that matches a call from `from` to `to`.
pub(crate) fn choose<'r>(
    rules: &'r [AnswerRule],
    from: &CommunicationIdentifier,
    to: &CommunicationIdentifier,
) -> Option<(usize, &'r AnswerRule)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, rule)| matches(rule.from.as_deref(), from) && matches(rule.to.as_deref(), to))
}

/// `reject_reason` as the API spells it.
pub(crate) fn reject_reason(rule: &AnswerRule) -> CallRejectReason {
    match rule.reject_reason.as_str() {
        "busy" => CallRejectReason::Busy,
        "forbidden" => CallRejectReason::Forbidden,
        _ => CallRejectReason::None,
    }
}

/// The answer for `rule`: callbacks to `callback_uri`, media and transcription to
/// `transport_url` (this gateway's route, with the call's id).
pub(crate) fn answer_request(
    rule: &AnswerRule,
    incoming_call_context: &str,
    callback_uri: String,
    transport_url: &str,
    operation_context: &str,
) -> AnswerCallRequest {
    AnswerCallRequest {
        incoming_call_context: incoming_call_context.to_owned(),
        callback_uri,
        operation_context: Some(operation_context.to_owned()),
        media_streaming_options: rule.media.then(|| MediaStreamingOptions {
            transport_url: transport_url.to_owned(),
            transport_type: StreamingTransportType::Websocket,
            content_type: MediaStreamingContentType::Audio,
            audio_channel_type: match rule.channels {
                Channels::Mixed => AudioChannelType::Mixed,
                Channels::Unmixed => AudioChannelType::Unmixed,
            },
            start_media_streaming: Some(true),
            enable_bidirectional: Some(rule.bidirectional),
            audio_format: Some(if rule.sample_rate == 24_000 {
                AudioFormat::Pcm24KMono
            } else {
                AudioFormat::Pcm16KMono
            }),
        }),
        transcription_options: rule.transcription.then(|| TranscriptionOptions {
            transport_url: transport_url.to_owned(),
            transport_type: StreamingTransportType::Websocket,
            locale: rule.locale.clone(),
            speech_recognition_model_endpoint_id: None,
            start_transcription: Some(true),
            enable_intermediate_results: Some(true),
        }),
        ..AnswerCallRequest::default()
    }
}

/// A phone number (`+…`) or a raw id, as an identifier.
pub(crate) fn target(spec: &str) -> CommunicationIdentifier {
    if spec.starts_with('+') {
        CommunicationIdentifier::phone(spec)
    } else {
        CommunicationIdentifier::from_raw_id(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_numbers_and_ids() {
        assert!(glob("+1425*", "+14255550100"));
        assert!(glob("*", ""));
        assert!(glob("+1425555010?", "+14255550101"));
        assert!(!glob("+1425555010?", "+142555501011"));
        assert!(glob("8:acs:*", "8:acs:abc_def"));
        assert!(!glob("+1206*", "+14255550100"));
        assert!(glob("*0100", "+14255550100"));
        assert!(glob("+1*5*0", "+14255550100"));
    }

    #[test]
    fn the_first_matching_rule_wins_and_an_empty_rule_matches_all() {
        let rules = vec![
            AnswerRule {
                name: "blocked".into(),
                from: Some("+1900*".into()),
                ..AnswerRule::default()
            },
            AnswerRule {
                name: "support".into(),
                to: Some("+14255550199".into()),
                ..AnswerRule::default()
            },
            AnswerRule {
                name: "rest".into(),
                ..AnswerRule::default()
            },
        ];
        let from = CommunicationIdentifier::phone("+19005550100");
        let to = CommunicationIdentifier::phone("+14255550199");
        assert_eq!(choose(&rules, &from, &to).unwrap().1.name, "blocked");
        let from = CommunicationIdentifier::user("8:acs:someone");
        assert_eq!(choose(&rules, &from, &to).unwrap().1.name, "support");
        let to = CommunicationIdentifier::user("8:acs:bot");
        assert_eq!(choose(&rules, &from, &to).unwrap().1.name, "rest");
        assert!(choose(&rules[..2], &from, &to).is_none());
    }
}
