//! The gateway's configuration: one struct tree with defaults, read from TOML, overridden by
//! `MEDIAGATE_*` environment variables, overridden by command-line flags, validated at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Everything `mediagate serve` can be told. Every key is optional; see `samples/mediagate.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket listener binds.
    pub listen: SocketAddr,
    /// Root folder for per-call recordings.
    pub data_dir: PathBuf,
    /// TLS (wss://) termination in the gateway; absent means plain ws:// (put a proxy in front).
    pub tls: Option<TlsConfig>,
    /// Limits that protect the gateway from misbehaving peers.
    pub limits: LimitsConfig,
    /// What to assume before a stream says.
    pub audio: AudioConfig,
    /// What is written per call.
    pub recording: RecordingConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// The processors every call runs, by name (unless a route says otherwise); by default the
    /// recorders `wav`, `transcript` and `dtmf`.
    pub pipeline: PipelineConfig,
    /// Pipelines by WebSocket path: `[routes."/ws/bot"]`. A call takes the route with the longest
    /// path that is a prefix of its own (on `/` boundaries), else `pipeline`.
    pub routes: std::collections::BTreeMap<String, PipelineConfig>,
    /// Audio sent back into calls (bidirectional streaming).
    pub outbound: OutboundConfig,
    /// What of a client's request may be shown in logs and session.json.
    pub redaction: RedactionConfig,
    /// Who may open a WebSocket: ACS's signed token, a shared secret, or (loopback only) anyone.
    pub auth: crate::auth::AuthConfig,
    /// The call's timeline: how far platform timestamps may move it.
    pub timeline: TimelineConfig,
    /// The admin API: live calls, control, drain (its own listener and token).
    pub admin: AdminConfig,
    /// Where `/metrics` is served.
    pub metrics: MetricsConfig,
    /// The Call Automation control plane: answer calls by rule, take ACS's events and
    /// callbacks.
    pub acs: crate::acs::AcsConfig,
}

/// The admin API (`[admin]`): its own listener, for operators, never for the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Whether the admin listener runs at all.
    pub enabled: bool,
    /// Address it binds. Without a `token`, it must be a loopback address, and only loopback
    /// clients are served.
    pub listen: SocketAddr,
    /// The bearer token every request but `/healthz` and `/readyz` must carry
    /// (`Authorization: Bearer <token>`), at least 16 bytes; also `MEDIAGATE_ADMIN__TOKEN`.
    pub token: Option<AdminToken>,
    /// Connections the admin listener holds at once.
    pub max_connections: usize,
    /// Largest request body (an uploaded WAV to play), in bytes.
    pub max_body_bytes: usize,
    /// The key guest links are signed with (HMAC-SHA256), at least 32 bytes; none: no guest
    /// links. Also `MEDIAGATE_ADMIN__GUEST_KEY`. Changing it revokes every link.
    pub guest_key: Option<AdminToken>,
    /// A folder of WAV clips the admin API and the dashboard play by name
    /// (`<clips_dir>/<name>.wav`); none: uploads and text only.
    pub clips_dir: Option<PathBuf>,
    /// TLS (https://, wss://) on the admin listener; absent means plain HTTP, which is for
    /// loopback or behind a proxy that terminates TLS (the token crosses the wire).
    pub tls: Option<TlsConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
            max_connections: 64,
            max_body_bytes: 16 * 1024 * 1024,
            guest_key: None,
            clips_dir: None,
            tls: None,
        }
    }
}

/// The admin token. Never printed: its `Debug` says only that it is there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Where `/metrics` is served (`[metrics]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `main` (the default: beside the WebSocket endpoint) or `admin` (only on the admin
    /// listener, behind its token).
    pub listen: MetricsListener,
}

/// The listener `/metrics` is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsListener {
    /// The main listener (`listen`).
    #[default]
    Main,
    /// The admin listener (`admin.listen`).
    Admin,
}

/// The call's one timeline, on which every processor places the call's audio (the recordings'
/// alignment, transcript times, DTMF offsets). A timestamp jump it does not honour is a clock
/// anomaly: counted in session.json (`timeline`), and the call re-anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimelineConfig {
    /// Longest pause in the timestamps honoured (filled with silence by the recorder); a
    /// larger jump is an anomaly.
    pub max_gap_secs: u64,
    /// How far ahead of the real time since the call's first frame a jump may take the
    /// timeline: so the silence recorded in a call is at most its real duration plus this.
    pub max_ahead_secs: u64,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig {
            max_gap_secs: 600,
            max_ahead_secs: 2,
        }
    }
}

impl TimelineConfig {
    /// As the pipeline takes them.
    pub fn settings(&self) -> mediagate_audio::TimelineSettings {
        mediagate_audio::TimelineSettings {
            max_gap: Duration::from_secs(self.max_gap_secs),
            max_ahead: Duration::from_secs(self.max_ahead_secs),
        }
    }
}

/// What of a client's request may be shown. Anything not allowed here is shown as `<redacted>`:
/// applications put API keys and signatures in the `transportUrl`, under names nobody can guess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// Query parameters whose values are shown (case-insensitive); every other value is
    /// replaced by `<redacted>`.
    pub shown_query_keys: Vec<String>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            shown_query_keys: [
                "callId",
                "callConnectionId",
                "serverCallId",
                "correlationId",
                "sampleRate",
                "channels",
                "locale",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

/// The processors of every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Processor names, in order (`["wav", "echo"]`); empty runs none.
    pub processors: Vec<String>,
    /// Per-processor settings, `[pipeline.settings.NAME]`, handed to its factory at start-up.
    pub settings: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Default for PipelineConfig {
    /// The call recorded: its audio (`wav`), transcripts (`transcript`) and keys (`dtmf`).
    /// The gateway library names no speech engine: the `mediagate` binary's defaults
    /// (`mediagate::default_config`) add the embedded one when the build has it.
    fn default() -> Self {
        PipelineConfig {
            processors: ["wav", "transcript", "dtmf"].map(String::from).to_vec(),
            settings: std::collections::BTreeMap::new(),
        }
    }
}

impl PipelineConfig {
    /// The settings of processor `name` (`null` when it has none).
    pub fn settings_of(&self, name: &str) -> serde_json::Value {
        self.settings
            .get(name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Outbound audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// `pascal` (as the ACS documentation and .NET SDK send) or `camel` (the JS SDK's spelling).
    pub dialect: mediagate_protocol::OutboundDialect,
    /// Most audio a call may have queued for playback, in seconds.
    pub max_queue_secs: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            dialect: mediagate_protocol::OutboundDialect::Pascal,
            max_queue_secs: 60,
        }
    }
}

/// Certificate and key for terminating TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Per-connection limits. A peer that crosses one is closed with a WebSocket close code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest WebSocket message accepted (a 20 ms frame is ~1.3 KB); larger closes with 1009.
    pub max_message_bytes: usize,
    /// This many bad messages in a row closes the socket (1007, or 1003 for unsupported data).
    pub max_consecutive_bad_messages: u32,
    /// This many bad messages in one connection closes it (1008), however many good ones came between.
    pub max_bad_messages: u64,
    /// Seconds a new connection may take to send its first valid message (1008 after that).
    pub first_message_timeout_secs: u64,
    /// Seconds without a valid message before the socket is closed (1008); 0 never closes.
    pub idle_timeout_secs: u64,
    /// Distinct participants (unmixed tracks) recorded per call; frames of more are counted, not
    /// recorded. Bounds the files and memory one connection can claim.
    pub max_participants_per_call: usize,
    /// Live calls at once. A WebSocket that would start another is refused with 503 before the
    /// upgrade (one that names a live call in its query may still join it).
    pub max_calls: usize,
    /// Open TCP connections at once (HTTP requests and WebSockets). Past it a new connection is
    /// answered 503 and closed (over TLS: closed before the handshake).
    pub max_connections: usize,
    /// New connections per second from one IP address (an IPv6 /64), refilled continuously;
    /// past it a connection is answered 429 and closed. 0 turns the limit off.
    pub new_connections_per_ip_per_sec: f64,
    /// Connections one address may open at once before its rate applies.
    pub new_connections_burst_per_ip: u32,
    /// Seconds a client may take to send a request's headers (slow or half-sent requests are
    /// dropped after it).
    pub header_read_timeout_secs: u64,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout_secs: u64,
}

/// Audio assumptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Sample rate assumed for audio that arrives before any AudioMetadata (flagged in session.json).
    pub default_sample_rate_hz: u32,
}

/// Recording to files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Keep a folder per call, with session.json and what the recording processors write
    /// (off: no files at all, whatever the pipeline says; calls are only counted).
    pub enabled: bool,
    /// Free bytes the data dir's file system must keep. Below it, new calls are refused or
    /// recorded without audio (`on_low_disk`), and live recordings stop cleanly, each call's
    /// session.json saying why. 0 turns the floor off.
    pub min_free_bytes: u64,
    /// What a new call gets while free disk is below `min_free_bytes`.
    pub on_low_disk: LowDiskPolicy,
    /// Days a call folder is kept after its call ended; then it is deleted, after a `deleted`
    /// entry in the hash chain. Fractions count (`0.5` is twelve hours). None, the default:
    /// kept forever.
    pub retention_days: Option<f64>,
}

impl RecordingConfig {
    /// `retention_days` as a duration; `None` keeps calls forever.
    pub fn retention(&self) -> Option<Duration> {
        self.retention_days
            .and_then(|days| Duration::try_from_secs_f64(days * 86_400.0).ok())
    }
}

/// What a new call gets while the disk is below its floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LowDiskPolicy {
    /// Refuse the WebSocket with 503 before the upgrade: the platform can retry elsewhere.
    #[default]
    Refuse,
    /// Accept the call and run its pipeline, but write no audio (session.json and the small
    /// event logs only).
    NoAudio,
}

/// Graceful shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Seconds live calls may go on after a shutdown signal before they are closed (1001).
    pub drain_timeout_secs: u64,
    /// Seconds closed calls get to finalize their files after that (also after a second
    /// signal, which skips the drain). A call still not final then is counted, and the process
    /// exits non-zero.
    pub finalize_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // Loopback: with `auth.mode = "none"` (the default) nothing else may be bound.
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            tls: None,
            limits: LimitsConfig::default(),
            audio: AudioConfig::default(),
            recording: RecordingConfig::default(),
            shutdown: ShutdownConfig::default(),
            pipeline: PipelineConfig::default(),
            routes: std::collections::BTreeMap::new(),
            outbound: OutboundConfig::default(),
            redaction: RedactionConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            timeline: TimelineConfig::default(),
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            acs: crate::acs::AcsConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 1024 * 1024,
            max_consecutive_bad_messages: 50,
            max_bad_messages: 1_000,
            first_message_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_participants_per_call: 32,
            max_calls: 500,
            max_connections: 1024,
            new_connections_per_ip_per_sec: 50.0,
            new_connections_burst_per_ip: 200,
            header_read_timeout_secs: 10,
            tls_handshake_timeout_secs: 10,
        }
    }
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            default_sample_rate_hz: 16_000,
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            enabled: true,
            min_free_bytes: 512 * 1024 * 1024,
            on_low_disk: LowDiskPolicy::Refuse,
            retention_days: None,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout_secs: 10,
            finalize_timeout_secs: 10,
        }
    }
}

/// Values given on the command line; each `Some` overrides the file and the environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CliOverrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key` (both or neither).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// A configuration that cannot be used. The message names the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A key has the wrong type, an unknown key was given, or a file does not parse.
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    /// A key has a value of the right type that cannot work.
    #[error("invalid configuration: `{key}` {reason}")]
    Invalid {
        /// Dotted key, as in the TOML file.
        key: &'static str,
        /// Why the value cannot work.
        reason: String,
    },
}

/// The longest `recording.retention_days` (a hundred years; leave it out for ever).
const MAX_RETENTION_DAYS: f64 = 36_500.0;

/// The prefix of environment overrides; nested keys use `__`: `MEDIAGATE_LIMITS__MAX_MESSAGE_BYTES`.
pub const ENV_PREFIX: &str = "MEDIAGATE_";

impl Config {
    /// Loads defaults ← `file` ← `MEDIAGATE_*` environment ← `cli`, then validates.
    pub fn load(file: Option<&Path>, cli: &CliOverrides) -> Result<Config, ConfigError> {
        Config::load_over(Config::default(), file, cli)
    }

    /// Like [`Config::load`], over `defaults` rather than [`Config::default`]: a binary that
    /// composes more processors (a speech engine) gives its own default pipeline here.
    pub fn load_over(
        defaults: Config,
        file: Option<&Path>,
        cli: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .split("__")
                    // Variables that belong to the command line or the speech models, not to
                    // this tree.
                    .ignore(&[
                        "config",
                        "log",
                        "log_format",
                        "models_dir",
                        "pypi_url",
                        "wyoming_venv",
                        "wyoming_uri",
                        // `[auth] secret_env`'s default: the secret, not a key.
                        "auth_secret",
                        // `[acs] events_secret_env`'s default, likewise.
                        "acs_events_secret",
                    ]),
            )
            .merge(Serialized::defaults(cli))
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that have the right type but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        self.acs.validate(&self.routes)?;
        if self.timeline.max_ahead_secs > 3_600 {
            return invalid("timeline.max_ahead_secs", "must be at most 3600");
        }
        if self.timeline.max_gap_secs == 0 {
            return invalid("timeline.max_gap_secs", "must be at least 1");
        }
        if self.limits.max_message_bytes < 1024 {
            return invalid(
                "limits.max_message_bytes",
                "must be at least 1024 (one 20 ms frame at 24 kHz is ~1.3 KB)",
            );
        }
        if self.limits.max_consecutive_bad_messages == 0 {
            return invalid("limits.max_consecutive_bad_messages", "must be at least 1");
        }
        if self.limits.max_bad_messages == 0 {
            return invalid("limits.max_bad_messages", "must be at least 1");
        }
        if self.limits.first_message_timeout_secs == 0 {
            return invalid("limits.first_message_timeout_secs", "must be at least 1");
        }
        if self.limits.max_participants_per_call == 0 {
            return invalid("limits.max_participants_per_call", "must be at least 1");
        }
        if mediagate_audio::AudioFormat::new(self.audio.default_sample_rate_hz, 1).is_err()
            || self.audio.default_sample_rate_hz < 1_000
        {
            return invalid(
                "audio.default_sample_rate_hz",
                "must be a sample rate between 1000 and 384000",
            );
        }
        if self.limits.max_calls == 0 {
            return invalid("limits.max_calls", "must be at least 1");
        }
        if self.limits.max_connections == 0 {
            return invalid("limits.max_connections", "must be at least 1");
        }
        let rate = self.limits.new_connections_per_ip_per_sec;
        if !rate.is_finite() || rate < 0.0 {
            return invalid(
                "limits.new_connections_per_ip_per_sec",
                "must be a number of at least 0 (0: no limit)",
            );
        }
        if rate > 0.0 && self.limits.new_connections_burst_per_ip == 0 {
            return invalid("limits.new_connections_burst_per_ip", "must be at least 1");
        }
        if self.limits.header_read_timeout_secs == 0 {
            return invalid("limits.header_read_timeout_secs", "must be at least 1");
        }
        if self.limits.tls_handshake_timeout_secs == 0 {
            return invalid("limits.tls_handshake_timeout_secs", "must be at least 1");
        }
        if self.shutdown.finalize_timeout_secs == 0 {
            return invalid("shutdown.finalize_timeout_secs", "must be at least 1");
        }
        if self.outbound.max_queue_secs == 0 {
            return invalid("outbound.max_queue_secs", "must be at least 1");
        }
        if let Some(days) = self.recording.retention_days {
            if !(days.is_finite() && days > 0.0 && days <= MAX_RETENTION_DAYS) {
                return invalid(
                    "recording.retention_days",
                    "must be a number of days above 0 and at most 36500 (leave it out to keep \
                     calls forever)",
                );
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        self.auth.validate(self.listen)?;
        self.validate_admin()
    }

    pub(crate) fn validate_admin(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        let admin = &self.admin;
        if self.metrics.listen == MetricsListener::Admin && !admin.enabled {
            return invalid(
                "metrics.listen",
                "is \"admin\" but [admin] is not enabled".to_owned(),
            );
        }
        if !admin.enabled {
            return Ok(());
        }
        if admin
            .guest_key
            .as_ref()
            .is_some_and(|key| key.0.trim().len() < 32)
        {
            return invalid(
                "admin.guest_key",
                "is shorter than 32 bytes (e.g. `openssl rand -hex 32`)".to_owned(),
            );
        }
        match &admin.token {
            Some(token) if token.0.trim().len() < crate::auth::MIN_SECRET_BYTES => invalid(
                "admin.token",
                format!(
                    "is shorter than {} bytes (e.g. `openssl rand -hex 32`)",
                    crate::auth::MIN_SECRET_BYTES
                ),
            ),
            None if !admin.listen.ip().is_loopback() => invalid(
                "admin.token",
                format!(
                    "is required: `admin.listen` = {} is not a loopback address, and the admin \
                     API can end calls and listen to them",
                    admin.listen
                ),
            ),
            _ if admin.max_connections == 0 => {
                invalid("admin.max_connections", "must be at least 1".to_owned())
            }
            _ if admin.listen.port() != 0 && admin.listen == self.listen => invalid(
                "admin.listen",
                format!("is {}, the same address as `listen`", self.listen),
            ),
            _ => Ok(()),
        }
    }

    /// The settings processor `name` of `pipeline` is built with: its own, and for the `wav`
    /// recorder the gateway's free-disk floor (`recording.min_free_bytes`) unless the pipeline
    /// sets one of its own.
    pub fn processor_settings(&self, pipeline: &PipelineConfig, name: &str) -> serde_json::Value {
        let mut settings = pipeline.settings_of(name);
        if name == "wav" && self.recording.min_free_bytes > 0 {
            if settings.is_null() {
                settings = serde_json::Value::Object(serde_json::Map::new());
            }
            if let Some(table) = settings.as_object_mut() {
                table
                    .entry("min_free_bytes")
                    .or_insert(self.recording.min_free_bytes.into());
            }
        }
        settings
    }

    /// `limits.first_message_timeout_secs` as a duration.
    pub fn first_message_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.first_message_timeout_secs)
    }

    /// The pipeline for a call on `path`: the longest matching route, else `pipeline`.
    pub fn pipeline_for(&self, path: &str) -> &PipelineConfig {
        self.route_for(path)
            .map_or(&self.pipeline, |route| &self.routes[route])
    }

    /// The route a call on `path` takes: the longest matching one; `None`: `pipeline`.
    pub fn route_for(&self, path: &str) -> Option<&str> {
        self.routes
            .keys()
            .filter(|route| {
                let route = route.trim_end_matches('/');
                path == route
                    || (path.starts_with(route) && path.as_bytes().get(route.len()) == Some(&b'/'))
            })
            .max_by_key(|route| route.trim_end_matches('/').len())
            .map(String::as_str)
    }

    /// Every pipeline the config defines: `[pipeline]` (`None`), then each route (its path).
    pub fn pipelines(&self) -> impl Iterator<Item = (Option<&str>, &PipelineConfig)> {
        std::iter::once((None, &self.pipeline))
            .chain(self.routes.iter().map(|(path, p)| (Some(path.as_str()), p)))
    }

    /// `limits.idle_timeout_secs` as a duration, `None` when disabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.limits.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(self.limits.idle_timeout_secs))
    }
}

/// The config key of a pipeline, for messages: `pipeline`, or `routes."/ws/bot"` for a route.
pub(crate) fn pipeline_key(route: Option<&str>) -> String {
    match route {
        None => "pipeline".to_owned(),
        Some(path) => format!("routes.\"{path}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by every test that reads the environment while one test sets `MEDIAGATE_*`
    /// variables (in a figment jail): they would see its values.
    static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn environment() -> std::sync::MutexGuard<'static, ()> {
        ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load(file: Option<&Path>, cli: &CliOverrides) -> Result<Config, ConfigError> {
        let _environment = environment();
        Config::load(file, cli)
    }

    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mediagate.toml");
        std::fs::write(&path, text).unwrap();
        load(Some(&path), &CliOverrides::default())
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own (large) error type
    fn environment_overrides_the_file_and_cli_overrides_both() {
        let _environment = environment();
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "m.toml",
                "listen = \"127.0.0.1:9000\"\n[limits]\nidle_timeout_secs = 5\n",
            )?;
            jail.set_env("MEDIAGATE_LIMITS__IDLE_TIMEOUT_SECS", "7");
            jail.set_env("MEDIAGATE_DATA_DIR", "/srv/calls");
            // The speech models' variables are not config keys.
            jail.set_env("MEDIAGATE_MODELS_DIR", "/srv/models");
            jail.set_env("MEDIAGATE_WYOMING_VENV", "/srv/venv");
            let config = Config::load(Some(Path::new("m.toml")), &CliOverrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(config.limits.idle_timeout_secs, 7);
            assert_eq!(config.data_dir, PathBuf::from("/srv/calls"));
            assert_eq!(config.listen.port(), 9000);
            let cli = CliOverrides {
                data_dir: Some(PathBuf::from("/tmp/x")),
                ..CliOverrides::default()
            };
            let config =
                Config::load(Some(Path::new("m.toml")), &cli).map_err(|e| e.to_string())?;
            assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
            jail.set_env("MEDIAGATE_LIMITS__MAX_MESSAGE_BYTES", "lots");
            let err = Config::load(None, &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.to_uppercase().contains("MAX_MESSAGE_BYTES"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn file_then_cli_take_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[limits]\nidle_timeout_secs = 5\n",
        )
        .unwrap();
        let config = load(Some(&path), &CliOverrides::default()).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.idle_timeout_secs, 5);
        let cli = CliOverrides {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..CliOverrides::default()
        };
        assert_eq!(load(Some(&path), &cli).unwrap().listen.port(), 9001);
    }

    #[test]
    fn errors_name_the_key() {
        let err = load_toml("[limits]\nmax_message_bytes = \"lots\"\n").unwrap_err();
        assert!(err.to_string().contains("max_message_bytes"), "{err}");
        let err = load_toml("[limits]\nmax_mesage_bytes = 5\n").unwrap_err();
        assert!(err.to_string().contains("max_mesage_bytes"), "{err}");
        let err = load_toml("[limits]\nmax_message_bytes = 10\n").unwrap_err();
        assert!(
            err.to_string().contains("limits.max_message_bytes"),
            "{err}"
        );
        let err = load_toml("[audio]\ndefault_sample_rate_hz = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("audio.default_sample_rate_hz"),
            "{err}"
        );
        for days in ["0", "-1", "40000", "nan"] {
            let err = load_toml(&format!("[recording]\nretention_days = {days}\n")).unwrap_err();
            assert!(
                err.to_string().contains("recording.retention_days"),
                "{days}: {err}"
            );
        }
    }

    #[test]
    fn retention_is_forever_unless_given_in_days_or_fractions() {
        assert_eq!(Config::default().recording.retention(), None);
        let config = load_toml("[recording]\nretention_days = 0.5\n").unwrap();
        assert_eq!(
            config.recording.retention(),
            Some(Duration::from_secs(43_200))
        );
    }

    #[test]
    fn routes_pick_the_longest_matching_path() {
        let config = load_toml(
            "[pipeline]\nprocessors = [\"echo\"]\n\
             [routes.\"/ws/bot\"]\nprocessors = [\"play\", \"vad\"]\n\
             [routes.\"/ws/bot/quiet\"]\nprocessors = []\n",
        )
        .unwrap();
        let names = |path: &str| config.pipeline_for(path).processors.clone();
        assert_eq!(names("/ws"), ["echo"]);
        assert_eq!(
            names("/ws/bother"),
            ["echo"],
            "prefixes match on / boundaries only"
        );
        assert_eq!(names("/ws/bot"), ["play", "vad"]);
        assert_eq!(names("/ws/bot/sales"), ["play", "vad"]);
        assert!(names("/ws/bot/quiet/x").is_empty());
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load(
            Some(Path::new("/nonexistent/m.toml")),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }
}
