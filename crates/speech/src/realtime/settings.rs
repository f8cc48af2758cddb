//! The bridge's settings, and what is checked from them once at start-up: the endpoint (URL,
//! key and its header). The `session.update` they also make is in [`super::events`].

use mediagate_processors::BuildError;
use mediagate_processors::settings::invalid;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};

#[cfg(doc)]
use mediagate_pipeline::Event;

use super::NAME;

/// How the API key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI; Azure with an Entra ID token).
    #[default]
    Bearer,
    /// `api-key: <key>` (Azure OpenAI keys).
    ApiKey,
}

/// Which shape of the event protocol the service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// The GA Realtime API (`session.type = "realtime"`, `audio.input.format`).
    #[default]
    Ga,
    /// The beta interface (`input_audio_format = "pcm16"`, `OpenAI-Beta: realtime=v1`), as
    /// Azure OpenAI's preview API versions speak it.
    Beta,
}

/// Who decides when the caller's turn ends and when they interrupt the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnDetection {
    /// The service's voice activity detection (answers after a pause; `speech_started`).
    #[default]
    ServerVad,
    /// The service's semantic end-of-turn detection.
    SemanticVad,
    /// The call's [`Event::Speech`] events (the `vad` processor): the service's detection is
    /// off, and the bridge commits each utterance and asks for the answer itself.
    GatewayVad,
}

/// `[pipeline.settings.realtime]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeSettings {
    /// The service's WebSocket URL. Default `wss://api.openai.com/v1/realtime`.
    pub url: String,
    /// Appended to the URL as `?model=`; default `gpt-realtime`, unless the URL already names
    /// a `model` or a `deployment` (then this must not be set).
    pub model: Option<String>,
    /// The environment variable holding the API key. Default `OPENAI_API_KEY`.
    pub api_key_env: String,
    /// How the key is sent. Default `bearer`.
    pub auth: Auth,
    /// The event protocol's shape. Default `ga`.
    pub api: Api,
    /// The model's instructions (its system prompt); default: the service's.
    pub instructions: Option<String>,
    /// The model's voice (`marin`, `alloy`…); default: the service's.
    pub voice: Option<String>,
    /// Who detects turns. Default `server_vad`.
    pub turn_detection: TurnDetection,
    /// Longest wait for the TCP, TLS and WebSocket handshakes together. Default 10 s.
    pub connect_timeout_secs: u64,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        RealtimeSettings {
            url: "wss://api.openai.com/v1/realtime".to_owned(),
            model: None,
            api_key_env: "OPENAI_API_KEY".to_owned(),
            auth: Auth::default(),
            api: Api::default(),
            instructions: None,
            voice: None,
            turn_detection: TurnDetection::default(),
            connect_timeout_secs: 10,
        }
    }
}

/// An API key; never printed.
#[derive(Clone, PartialEq, Eq)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// Where and how to connect, checked.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// The URL with the model appended.
    pub(super) url: String,
    key: Option<ApiKey>,
    auth: Auth,
    api: Api,
    pub(super) tls: bool,
}

impl Endpoint {
    /// Checks `settings`; `key` is the value of `api_key_env`, if set.
    pub(super) fn new(
        settings: &RealtimeSettings,
        key: Option<String>,
    ) -> Result<Self, BuildError> {
        let mut url = url::Url::parse(&settings.url)
            .map_err(|e| invalid(NAME, format!("url `{}`: {e}", settings.url)))?;
        let tls = match url.scheme() {
            "wss" => true,
            "ws" if is_loopback(&url) => false,
            "ws" => {
                return Err(invalid(
                    NAME,
                    "url: plain ws:// only to a loopback host (the key and the call's audio \
                     would travel unencrypted); use wss://",
                ));
            }
            other => return Err(invalid(NAME, format!("url: scheme `{other}`, not wss://"))),
        };
        let named = url
            .query_pairs()
            .any(|(name, _)| name == "model" || name == "deployment");
        match (&settings.model, named) {
            (Some(_), true) => {
                return Err(invalid(
                    NAME,
                    "model is given twice: the url names a model or deployment already",
                ));
            }
            (Some(model), false) if model.is_empty() => {
                return Err(invalid(NAME, "model must not be empty"));
            }
            (model, false) => {
                let model = model.as_deref().unwrap_or("gpt-realtime");
                url.query_pairs_mut().append_pair("model", model);
            }
            (None, true) => {}
        }
        let key = key.filter(|k| !k.is_empty());
        if key.is_none() && tls {
            return Err(invalid(
                NAME,
                format!(
                    "the API key: environment variable {} is not set (or empty)",
                    settings.api_key_env
                ),
            ));
        }
        let endpoint = Endpoint {
            url: url.into(),
            key: key.map(ApiKey),
            auth: settings.auth,
            api: settings.api,
            tls,
        };
        endpoint.request()?;
        Ok(endpoint)
    }

    /// The handshake request: the URL and the key's header.
    pub(super) fn request(&self) -> Result<Request<()>, BuildError> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| invalid(NAME, format!("url: {e}")))?;
        let headers = request.headers_mut();
        if let Some(ApiKey(key)) = &self.key {
            let (name, value) = match self.auth {
                Auth::Bearer => (
                    HeaderName::from_static("authorization"),
                    format!("Bearer {key}"),
                ),
                Auth::ApiKey => (HeaderName::from_static("api-key"), key.clone()),
            };
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| invalid(NAME, "the API key is not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if self.api == Api::Beta {
            headers.insert("openai-beta", HeaderValue::from_static("realtime=v1"));
        }
        Ok(request)
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use mediagate_processors::settings::parse;
    use serde_json::json;

    use super::*;

    /// `[pipeline.settings.realtime]` from JSON; the other tests of the module use it too.
    pub(in super::super) fn settings(value: serde_json::Value) -> RealtimeSettings {
        parse(NAME, &value).unwrap()
    }

    fn header(request: &Request<()>, name: &str) -> Option<String> {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn openai_gets_the_model_in_the_url_and_a_bearer_key() {
        let endpoint = Endpoint::new(&RealtimeSettings::default(), Some("sk-1".into())).unwrap();
        let request = endpoint.request().unwrap();
        assert_eq!(
            request.uri().to_string(),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(header(&request, "authorization").unwrap(), "Bearer sk-1");
        assert!(request.headers()["authorization"].is_sensitive());
        assert_eq!(header(&request, "openai-beta"), None);
        assert!(!format!("{endpoint:?}").contains("sk-1"));
    }

    #[test]
    fn azure_gets_an_api_key_header_and_keeps_the_deployment_of_the_url() {
        let ga = settings(json!({
            "url": "wss://r.openai.azure.com/openai/v1/realtime",
            "model": "my-deployment",
            "auth": "api-key",
        }));
        let request = Endpoint::new(&ga, Some("k".into()))
            .unwrap()
            .request()
            .unwrap();
        assert_eq!(
            request.uri().to_string(),
            "wss://r.openai.azure.com/openai/v1/realtime?model=my-deployment"
        );
        assert_eq!(header(&request, "api-key").unwrap(), "k");
        assert_eq!(header(&request, "authorization"), None);

        let preview = settings(json!({
            "url": "wss://r.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=d",
            "auth": "api-key",
            "api": "beta",
        }));
        let request = Endpoint::new(&preview, Some("k".into()))
            .unwrap()
            .request()
            .unwrap();
        assert_eq!(
            request.uri().query(),
            Some("api-version=2025-04-01-preview&deployment=d")
        );
        assert_eq!(header(&request, "openai-beta").unwrap(), "realtime=v1");

        let twice = RealtimeSettings {
            model: Some("m".into()),
            ..preview
        };
        let err = Endpoint::new(&twice, Some("k".into())).unwrap_err();
        assert!(err.to_string().contains("model is given twice"), "{err}");
    }

    #[test]
    fn without_a_key_only_a_loopback_service_is_reached() {
        // A local service needs none; a remote one over plain ws:// is refused.
        for url in [
            "ws://127.0.0.1:9/",
            "ws://localhost:9/v1/realtime",
            "ws://[::1]:9/",
        ] {
            let local = settings(json!({ "url": url }));
            let endpoint = Endpoint::new(&local, None).unwrap();
            assert!(header(&endpoint.request().unwrap(), "authorization").is_none());
        }
        let remote = settings(json!({ "url": "ws://example.com/v1/realtime" }));
        let err = Endpoint::new(&remote, Some("k".into())).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let https = settings(json!({ "url": "https://api.openai.com/v1/realtime" }));
        assert!(Endpoint::new(&https, Some("k".into())).is_err());
    }
}
