//! `[acs]`: the Call Automation control plane's configuration, and `[[acs.answer]]`, the answer
//! policy: rules matched in order against each incoming call, the first match deciding.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The environment variable the connection string is read from by default.
pub(crate) const DEFAULT_CONNECTION_STRING_ENV: &str = "ACS_CONNECTION_STRING";
/// The environment variable the Event Grid webhook's secret is read from by default.
pub(crate) const DEFAULT_EVENTS_SECRET_ENV: &str = "MEDIAGATE_ACS_EVENTS_SECRET";

/// `[acs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcsConfig {
    /// Whether the control plane runs: `POST /acs/events` and `/acs/callbacks/{call}` on the
    /// main listener, and calls answered by the rules.
    pub enabled: bool,
    /// Where ACS reaches this gateway: `https://gateway.example.com` (http only on loopback,
    /// for a local emulator). Callback and WebSocket URLs are made from it.
    pub public_url: String,
    /// The environment variable holding `endpoint=…;accesskey=…`.
    pub connection_string_env: String,
    /// A file holding the connection string instead (a mounted secret); wins over the
    /// variable.
    pub connection_string_file: Option<PathBuf>,
    /// With a Microsoft Entra token instead of the access key: the resource's endpoint.
    pub endpoint: Option<String>,
    /// A file holding an Entra token (kept fresh by something else).
    pub entra_token_file: Option<PathBuf>,
    /// A command printing an Entra token (run without a shell).
    pub entra_token_command: Vec<String>,
    /// `api-version` of every request.
    pub api_version: String,
    /// The environment variable holding the secret Event Grid deliveries carry in the
    /// webhook's query (`/acs/events?secret=…`), at least 16 bytes.
    pub events_secret_env: String,
    /// A file holding that secret instead; wins over the variable.
    pub events_secret_file: Option<PathBuf>,
    /// Accept Event Grid deliveries without a secret. Anyone who can reach the gateway could
    /// then make it answer, reject or redirect calls it is told of.
    pub allow_unauthenticated_events: bool,
    /// The `aud` of ACS's callback tokens: the resource's immutable id (a GUID, in the
    /// portal's Properties). Required.
    pub audience: Option<String>,
    /// The OpenID configuration whose issuer and keys callback tokens are checked against.
    pub openid_config_url: String,
    /// A local JWKS file instead of fetching the OpenID configuration (`issuer` required).
    pub jwks_file: Option<PathBuf>,
    /// The expected `iss` (overrides the OpenID configuration's).
    pub issuer: Option<String>,
    /// Incoming calls being decided at once; more are left to ring for someone else.
    pub max_pending: usize,
    /// Rules, in order.
    pub answer: Vec<AnswerRule>,
}

impl Default for AcsConfig {
    fn default() -> Self {
        AcsConfig {
            enabled: false,
            public_url: String::new(),
            connection_string_env: DEFAULT_CONNECTION_STRING_ENV.to_owned(),
            connection_string_file: None,
            endpoint: None,
            entra_token_file: None,
            entra_token_command: Vec::new(),
            api_version: mediagate_acs::DEFAULT_API_VERSION.to_owned(),
            events_secret_env: DEFAULT_EVENTS_SECRET_ENV.to_owned(),
            events_secret_file: None,
            allow_unauthenticated_events: false,
            audience: None,
            openid_config_url: crate::auth::ACS_OPENID_CONFIG_URL.to_owned(),
            jwks_file: None,
            issuer: None,
            max_pending: 32,
            answer: Vec::new(),
        }
    }
}

/// What a rule does with a call it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Answer it, streaming to this gateway.
    #[default]
    Answer,
    /// Refuse it (`reject_reason`).
    Reject,
    /// Send it elsewhere unanswered (`redirect_to`).
    Redirect,
}

/// One `[[acs.answer]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnswerRule {
    /// Its name, in logs and session.json.
    pub name: String,
    /// The caller: a phone number pattern (`+1425*`; `*` any run, `?` one character) or an
    /// ACS raw id (`8:acs:…`). Absent: any caller.
    pub from: Option<String>,
    /// The number or id called, the same way. Absent: any.
    pub to: Option<String>,
    /// `answer`, `reject` or `redirect`.
    pub action: RuleAction,
    /// `reject`: `none`, `busy` or `forbidden`.
    pub reject_reason: String,
    /// `redirect`: a phone number (`+1…`) or raw id.
    pub redirect_to: Option<String>,
    /// `answer`: the route whose pipeline the call's media runs (a `[routes]` path or `/ws`).
    pub route: String,
    /// `answer`: stream the call's audio here.
    pub media: bool,
    /// `answer`: one `mixed` stream or one per participant (`unmixed`).
    pub channels: Channels,
    /// `answer`: 16000 or 24000.
    pub sample_rate: u32,
    /// `answer`: let this gateway play audio into the call.
    pub bidirectional: bool,
    /// `answer`: ACS's real-time transcription, streamed here too.
    pub transcription: bool,
    /// `answer`: the transcription's locale.
    pub locale: String,
    /// `answer`: ACS records the call too (its own recording, `startRecording`), once
    /// connected.
    pub record: bool,
    /// `answer`: the attendant that greets, takes a key and transfers.
    pub attendant: Option<AttendantConfig>,
}

impl Default for AnswerRule {
    fn default() -> Self {
        AnswerRule {
            name: String::new(),
            from: None,
            to: None,
            action: RuleAction::Answer,
            reject_reason: "none".to_owned(),
            redirect_to: None,
            route: "/ws".to_owned(),
            media: true,
            channels: Channels::Mixed,
            sample_rate: 16_000,
            bidirectional: false,
            transcription: false,
            locale: "en-US".to_owned(),
            record: false,
            attendant: None,
        }
    }
}

/// Mixed or unmixed audio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channels {
    /// One stream of everyone.
    #[default]
    Mixed,
    /// One stream per participant.
    Unmixed,
}

/// `[acs.answer.attendant]`: a call answering and routing bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttendantConfig {
    /// What the caller hears first (spoken by ACS, or by this gateway with `greet_with =
    /// "say"`).
    pub greeting: String,
    /// A WAV at a URL ACS can fetch, played instead of the greeting text by ACS.
    pub greeting_url: Option<String>,
    /// `acs` (ACS plays the prompt and collects the key: `recognize`) or `gateway` (this
    /// gateway speaks over bidirectional audio and takes the key from the media stream's DTMF).
    pub mode: AttendantMode,
    /// Azure voice for ACS's text-to-speech.
    pub voice: Option<String>,
    /// Where each key transfers the call: `"1" = "+14255550123"`, `"2" = "8:acs:…"`.
    pub menu: BTreeMap<String, String>,
    /// Seconds without a key before the attendant hangs up.
    pub silence_timeout_secs: u32,
    /// Tries after a key that is not on the menu (the greeting again), before hanging up.
    pub retries: u32,
}

impl Default for AttendantConfig {
    fn default() -> Self {
        AttendantConfig {
            greeting: String::new(),
            greeting_url: None,
            mode: AttendantMode::Acs,
            voice: None,
            menu: BTreeMap::new(),
            silence_timeout_secs: 10,
            retries: 1,
        }
    }
}

/// Who greets and listens for the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttendantMode {
    /// ACS: `recognize` with the greeting as its prompt.
    #[default]
    Acs,
    /// This gateway: `say` over bidirectional audio, keys from the media stream.
    Gateway,
}

impl AcsConfig {
    /// Checks what can be checked before start.
    pub(crate) fn validate(
        &self,
        routes: &BTreeMap<String, crate::config::PipelineConfig>,
    ) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        let url = match url::Url::parse(&self.public_url) {
            Ok(url) => url,
            Err(e) => {
                return invalid(
                    "acs.public_url",
                    format!("is not a URL ({e}): where ACS reaches this gateway, https://…"),
                );
            }
        };
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return invalid(
                    "acs.public_url",
                    "must be https:// (http:// only on loopback, for a local emulator)".to_owned(),
                );
            }
        }
        if self.audience.as_deref().is_none_or(str::is_empty) {
            return invalid(
                "acs.audience",
                "is required: the ACS resource's immutable id, the `aud` of its callback tokens"
                    .to_owned(),
            );
        }
        if self.jwks_file.is_some() && self.issuer.is_none() {
            return invalid("acs.issuer", "is required with acs.jwks_file".to_owned());
        }
        if self.max_pending == 0 {
            return invalid("acs.max_pending", "must be at least 1".to_owned());
        }
        for rule in &self.answer {
            let key = "acs.answer";
            if rule.action == RuleAction::Redirect && rule.redirect_to.is_none() {
                return invalid(
                    key,
                    format!("rule `{}`: redirect needs redirect_to", rule.name),
                );
            }
            if !["none", "busy", "forbidden"].contains(&rule.reject_reason.as_str()) {
                return invalid(
                    key,
                    format!(
                        "rule `{}`: reject_reason is none, busy or forbidden",
                        rule.name
                    ),
                );
            }
            if ![16_000, 24_000].contains(&rule.sample_rate) {
                return invalid(
                    key,
                    format!("rule `{}`: sample_rate is 16000 or 24000", rule.name),
                );
            }
            if rule.route != "/ws" && !routes.contains_key(&rule.route) {
                return invalid(
                    key,
                    format!(
                        "rule `{}`: route `{}` is neither /ws nor a [routes] path",
                        rule.name, rule.route
                    ),
                );
            }
            if let Some(attendant) = &rule.attendant {
                if attendant.greeting.is_empty() && attendant.greeting_url.is_none() {
                    return invalid(
                        key,
                        format!("rule `{}`: the attendant needs a greeting", rule.name),
                    );
                }
                if attendant.mode == AttendantMode::Gateway && !(rule.media && rule.bidirectional) {
                    return invalid(
                        key,
                        format!(
                            "rule `{}`: a gateway attendant needs media and bidirectional",
                            rule.name
                        ),
                    );
                }
                for k in attendant.menu.keys() {
                    if k.chars().count() != 1
                        || mediagate_acs::models::DtmfTone::from_key(
                            k.chars().next().unwrap_or(' '),
                        )
                        .is_none()
                    {
                        return invalid(
                            key,
                            format!("rule `{}`: menu key `{k}` is not one DTMF key", rule.name),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
