//! The mediagate server: the WebSocket endpoint ACS Call Automation streams calls to, recording
//! every call to files, health, and graceful shutdown.
//!
//! ACS opens one WebSocket per call and transport (media or transcription) to the
//! `transportUrl` it was given. Every path under `/ws` is accepted (`/ws`, `/ws/anything`); the
//! path and query string become tags of the session, and a `callId` / `callConnectionId` query
//! parameter names the call. Each call gets a folder under the data dir with its WAV tracks,
//! transcripts, DTMF log and `session.json`.
//!
//! ```no_run
//! use mediagate_server::{Config, Server};
//!
//! # async fn run() -> Result<(), mediagate_server::ServerError> {
//! // The built-in processors; a binary adds its speech engines and its own processors.
//! let registry = mediagate_processors::builtins();
//! let server = Server::bind(Config::default(), registry).await?;
//! println!("listening on {}", server.local_addr());
//! server.run_until(mediagate_server::shutdown_signal()).await
//! # }
//! ```

mod acs;
mod admin;
mod auth;
mod compliance;
mod config;
mod connection;
mod disk;
mod events;
mod listener;
mod live;
mod media;
mod metrics;
mod registry;
mod repair;
mod routes;
mod session;
mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use acs::{
    AcsConfig, AnswerRule, AttendantConfig, AttendantMode, Channels, ControlPlaneError, RuleAction,
};
pub use auth::{AuthConfig, AuthError, AuthMode, system_root_certs};
pub use compliance::{
    ChainFault, FileFault, ManifestFault, Problem, Unsealed, VerifyOptions, VerifyReport,
    verify_dir,
};
pub use config::{
    AdminConfig, AdminToken, AudioConfig, CliOverrides, Config, ConfigError, ENV_PREFIX,
    LimitsConfig, LowDiskPolicy, MetricsConfig, MetricsListener, OutboundConfig, PipelineConfig,
    RecordingConfig, RedactionConfig, ShutdownConfig, TlsConfig,
};
pub use mediagate_pipeline::{Plan, Registry};
pub use metrics::MetricsSnapshot;
pub use repair::{RepairAction, RepairReport, Repaired, WavRepair, repair_dir, repair_wav};

use media::Plans;
use metrics::Metrics;
use registry::CallRegistry;

/// Why the server could not start or run.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `listen`.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data dir could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The path from `data_dir`.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("cannot load TLS certificate {cert} / key {key}: {source}")]
    Tls {
        /// `tls.cert`.
        cert: std::path::PathBuf,
        /// `tls.key`.
        key: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    /// The Call Automation control plane could not start (credentials, secret, keys).
    #[error(transparent)]
    ControlPlane(#[from] acs::ControlPlaneError),
    /// Shutdown ended with calls whose files could not be finalized (`mediagate repair` makes
    /// what they left valid).
    #[error("{calls} call(s) could not be finalized at shutdown")]
    Unfinalized {
        /// Calls still open at the finalize deadline, or whose session.json could not be written.
        calls: u64,
    },
    /// The config names a processor the registry does not have, or gives it bad settings.
    #[error("invalid configuration: `{key}`: {source}")]
    Processor {
        /// `pipeline`, or `routes."/ws/bot"`.
        key: String,
        /// Which name, and the names that are known.
        source: mediagate_pipeline::BuildError,
    },
    /// `[auth]` cannot work: a key, the secret, or the local key set.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// `[admin]` or `[metrics]` cannot work (the same check as [`Config::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// State shared by every connection.
pub(crate) struct AppState {
    pub(crate) config: Config,
    /// Each route's processor factories, built at start-up.
    pub(crate) plans: Plans,
    pub(crate) registry: Arc<CallRegistry>,
    pub(crate) metrics: Metrics,
    /// Decides which upgrades may proceed (`[auth]`).
    pub(crate) auth: auth::Authenticator,
    /// Cancelled when live calls must close (drain deadline passed).
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the gateway stops accepting new calls.
    pub(crate) draining: CancellationToken,
    /// Every connection task, so shutdown can wait for their files to be finalized.
    pub(crate) tracker: TaskTracker,
    pub(crate) next_connection_id: AtomicU64,
    /// TCP connections open now (HTTP requests and upgraded WebSockets), for
    /// `limits.max_connections`.
    pub(crate) open_connections: Arc<AtomicUsize>,
    /// Calls whose files could not be finalized (session.json not written): the exit code says so.
    pub(crate) unfinalized: AtomicU64,
    /// The data dir's free space, read once a second (`recording.min_free_bytes`).
    pub(crate) disk: Arc<disk::DiskWatch>,
    /// Transports that ended while some of their processors still work.
    pub(crate) finishing: Arc<AtomicUsize>,
    /// The transports live now, for the admin API.
    pub(crate) live: Arc<live::LiveTransports>,
    /// What happens in calls, for the admin API's watchers.
    pub(crate) events: events::EventHub,
    /// The dashboard's browser sessions.
    pub(crate) sessions: admin::dashboard::Sessions,
    /// Guest links: their key and revocations.
    pub(crate) guests: admin::guest::Guests,
    /// The registry's voice, for text played into calls (`Registry::set_speaker`).
    pub(crate) speaker: Option<mediagate_pipeline::Speaker>,
    /// The Call Automation control plane (`[acs] enabled`).
    pub(crate) acs: Option<Arc<acs::ControlPlane>>,
    /// The data dir's hash chain: the one writer of its seals and deletions.
    pub(crate) chain: Arc<compliance::chain::Chain>,
}

impl AppState {
    /// Whether the data dir's disk is below `recording.min_free_bytes`.
    pub(crate) fn low_on_disk(&self) -> bool {
        let recording = &self.config.recording;
        recording.enabled
            && recording.min_free_bytes > 0
            && self.disk.free_bytes() < recording.min_free_bytes
    }

    /// Calls live now: the registry's count, or with recording off (no registry), the open
    /// WebSockets; plus transports whose processors still work after they ended (a speech
    /// engine's backlog holds its audio and state, so it counts against `limits.max_calls`
    /// until done, as before processors finished on their own).
    pub(crate) fn live_calls(&self) -> usize {
        let finishing = self.finishing.load(Ordering::Relaxed);
        let live = if self.config.recording.enabled {
            self.registry.live_calls()
        } else {
            self.metrics.websockets_open()
        };
        live.saturating_add(finishing)
    }
}

/// A bound, not yet running gateway.
pub struct Server {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    /// The admin API's listener, its address and its TLS (`[admin]`), unless disabled.
    admin: Option<(
        std::net::TcpListener,
        SocketAddr,
        Option<tokio_rustls::TlsAcceptor>,
    )>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
}

impl Server {
    /// Builds every route's processor factories from `registry`, creates the data dir, loads
    /// TLS material and binds the listener.
    ///
    /// The gateway names no processor itself: `registry` holds what the config may name (the
    /// `mediagate` binary composes the built-ins and the speech engines; register your own
    /// beside them), and the config's `pipeline` is the default every call runs.
    pub async fn bind(config: Config, registry: Registry) -> Result<Server, ServerError> {
        // One factory per route, built once, off the async threads (a speech engine loads, or
        // first installs, its model here): an unknown name or a bad setting stops start-up
        // with an error naming it. Calls then only make cheap processors from these.
        let planned = tokio::task::spawn_blocking(move || {
            let pipelines = config
                .pipelines()
                .map(|(route, pipeline)| {
                    let processors = pipeline
                        .processors
                        .iter()
                        .map(|name| (name.clone(), config.processor_settings(pipeline, name)))
                        .collect();
                    (route.map(str::to_owned), processors)
                })
                .collect::<Vec<_>>();
            let plans =
                registry
                    .plans(pipelines)
                    .map_err(|(route, source)| ServerError::Processor {
                        key: config::pipeline_key(route.as_deref()),
                        source,
                    })?;
            Ok::<_, ServerError>((config, plans, registry))
        })
        .await;
        let (config, plans, registry) = match planned {
            Ok(planned) => planned?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let plans = Plans::new(plans);
        let mut metrics = Metrics::default();
        metrics.extend(|prometheus| registry.metrics(prometheus));
        let speaker = registry.speaker();
        config.validate_admin()?;
        let auth = auth::Authenticator::start(&config.auth, config.listen).await?;
        let data_dir = config.data_dir.clone();
        tokio::fs::create_dir_all(&data_dir)
            .await
            .map_err(|source| ServerError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
        let tls = acceptor(config.tls.as_ref()).await?;
        let (listener, local_addr) = bind_std(config.listen).await?;
        let admin = match config.admin.enabled {
            false => None,
            true => {
                let tls = acceptor(config.admin.tls.as_ref()).await?;
                let (listener, addr) = bind_std(config.admin.listen).await?;
                Some((listener, addr, tls))
            }
        };
        let revocations = data_dir.join(admin::guest::REVOCATIONS_FILE);
        let saved = tokio::fs::read(&revocations).await.ok();
        let guests = admin::guest::Guests::new(
            config.admin.guest_key.as_ref().map(|key| key.0.as_str()),
            revocations,
            saved.as_deref(),
        );
        let acs = match config.acs.enabled {
            true => Some(Arc::new(
                acs::ControlPlane::start(&config.acs, &config.auth).await?,
            )),
            false => None,
        };
        let chain = Arc::new(compliance::chain::Chain::new(&data_dir));
        let state = Arc::new(AppState {
            registry: Arc::new(CallRegistry::new(
                data_dir,
                config.limits.max_calls,
                Arc::clone(&chain),
            )),
            config,
            plans,
            metrics,
            auth,
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_connection_id: AtomicU64::new(1),
            open_connections: Arc::new(AtomicUsize::new(0)),
            unfinalized: AtomicU64::new(0),
            disk: Arc::new(disk::DiskWatch::new()),
            finishing: Arc::new(AtomicUsize::new(0)),
            live: Arc::default(),
            events: events::EventHub::default(),
            sessions: admin::dashboard::Sessions::default(),
            guests,
            speaker,
            acs,
            chain,
        });
        Ok(Server {
            listener,
            local_addr,
            admin,
            tls,
            state,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin API's address (useful with port 0); `None` when `[admin]` is disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, addr, _)| *addr)
    }

    /// A handle that reads the gateway's counters while it runs.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.state))
    }

    /// Serves until `signal` resolves, then drains: stops accepting, lets live calls go on for
    /// `shutdown.drain_timeout_secs`, closes the rest with 1001, and waits up to
    /// `shutdown.finalize_timeout_secs` for every call's files to be finalized.
    ///
    /// Errors with [`ServerError::Unfinalized`] when some call's files could not be finalized.
    pub async fn run_until<F>(self, signal: F) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.run_until_either(signal, std::future::pending()).await
    }

    /// Serves until SIGTERM or SIGINT (Ctrl-C), then drains as [`Server::run_until`] does; a
    /// second signal skips what is left of the drain, closes every call at once and finalizes.
    pub async fn run_until_signalled(self) -> Result<(), ServerError> {
        let (signals, mut count) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                shutdown_signal().await;
                signals.send_modify(|n| *n += 1);
            }
        });
        let mut second = count.clone();
        self.run_until_either(
            async move {
                let _ = count.wait_for(|n| *n >= 1).await;
            },
            async move {
                let _ = second.wait_for(|n| *n >= 2).await;
            },
        )
        .await
    }

    /// Serves until `first`; drains until `second` or the deadline; finalizes.
    async fn run_until_either<F, G>(self, first: F, second: G) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send + 'static,
        G: Future<Output = ()> + Send + 'static,
    {
        let state = self.state;
        let router = routes::router(Arc::clone(&state));
        self.listener
            .set_nonblocking(true)
            .map_err(ServerError::Serve)?;
        let listener =
            tokio::net::TcpListener::from_std(self.listener).map_err(ServerError::Serve)?;
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        tracing::info!(addr = %self.local_addr, "listening ({scheme}://)");
        if state.config.recording.enabled && state.config.recording.min_free_bytes > 0 {
            tokio::spawn(
                Arc::clone(&state.disk).run(state.config.data_dir.clone(), state.shutdown.clone()),
            );
        }
        if let Some(keep) = state
            .config
            .recording
            .retention()
            .filter(|_| state.config.recording.enabled)
        {
            tracing::info!(
                retention_secs = keep.as_secs_f64(),
                "retention: ended calls are deleted after this"
            );
            tokio::spawn(compliance::retention::run(Arc::clone(&state), keep));
        }
        let serve = tokio::spawn(listener::serve(
            listener,
            self.tls,
            router,
            Arc::clone(&state),
            listener::Gate {
                stop: state.draining.clone(),
                open: Arc::clone(&state.open_connections),
                max_open: state.config.limits.max_connections,
            },
        ));
        // The admin API serves through the drain (to watch it), and stops once it is over.
        let admin_stop = CancellationToken::new();
        let _admin_stops = admin_stop.clone().drop_guard();
        if let Some((admin, addr, tls)) = self.admin {
            admin.set_nonblocking(true).map_err(ServerError::Serve)?;
            let admin = tokio::net::TcpListener::from_std(admin).map_err(ServerError::Serve)?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(%addr, "admin API listening ({scheme}://)");
            if tls.is_none() && !addr.ip().is_loopback() {
                tracing::warn!(
                    %addr,
                    "the admin API listens beyond loopback without TLS: its token and guest \
                     links cross the network in the clear unless a proxy terminates TLS \
                     (set [admin] tls)"
                );
            }
            tokio::spawn(listener::serve(
                admin,
                tls,
                admin::router(Arc::clone(&state)),
                Arc::clone(&state),
                listener::Gate {
                    stop: admin_stop,
                    open: Arc::new(AtomicUsize::new(0)),
                    max_open: state.config.admin.max_connections,
                },
            ));
        }
        first.await;
        tracing::info!(
            live_calls = state.registry.live_calls(),
            drain_timeout_secs = state.config.shutdown.drain_timeout_secs,
            "shutting down: no new calls"
        );
        state.draining.cancel();
        let _ = serve.await;
        drain(&state, second).await
    }
}

/// Binds `addr` for a listener started later.
async fn bind_std(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), ServerError> {
    let bind_error = |source| ServerError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?
        .into_std()
        .map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local_addr))
}

/// Lets live calls finish for `shutdown.drain_timeout_secs` (or until `second`), then closes
/// them and waits up to `shutdown.finalize_timeout_secs` for their files (a `second` that comes
/// then ends the wait).
async fn drain<G>(state: &AppState, second: G) -> Result<(), ServerError>
where
    G: Future<Output = ()>,
{
    state.draining.cancel();
    state.tracker.close();
    tokio::pin!(second);
    let drain_timeout = Duration::from_secs(state.config.shutdown.drain_timeout_secs);
    let mut forced = false;
    tokio::select! {
        waited = tokio::time::timeout(drain_timeout, state.tracker.wait()) => {
            if waited.is_err() {
                tracing::info!(
                    live_calls = state.registry.live_calls(),
                    "drain deadline passed: closing live calls"
                );
            }
        }
        () = &mut second => {
            forced = true;
            tracing::warn!("second signal: closing live calls now");
        }
    }
    state.shutdown.cancel();
    let finalize_timeout = Duration::from_secs(state.config.shutdown.finalize_timeout_secs);
    let finalized = tokio::select! {
        waited = tokio::time::timeout(finalize_timeout, state.tracker.wait()) => waited.is_ok(),
        () = &mut second, if !forced => false,
    };
    let mut unfinalized = state.unfinalized.load(Ordering::Relaxed);
    if !finalized {
        let open = state.tracker.len() as u64;
        tracing::error!(calls = open, "calls not finalized at the shutdown deadline");
        unfinalized += open.max(1);
    }
    if unfinalized > 0 {
        return Err(ServerError::Unfinalized { calls: unfinalized });
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// A listener's TLS acceptor, when it has TLS; an error names the files.
async fn acceptor(
    tls: Option<&TlsConfig>,
) -> Result<Option<tokio_rustls::TlsAcceptor>, ServerError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    load_tls(tls)
        .await
        .map(Some)
        .map_err(|source| ServerError::Tls {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            source,
        })
}

/// The TLS acceptor for `tls`: its certificate chain and key, HTTP/1.1 by ALPN.
async fn load_tls(tls: &TlsConfig) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    // One process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = tokio::fs::read(&tls.cert).await?;
    let key = tokio::fs::read(&tls.key).await?;
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if chain.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no certificate in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Reads the counters of a running gateway.
#[derive(Clone)]
pub struct StatsHandle(Arc<AppState>);

impl StatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.0.metrics.snapshot()
    }

    /// Calls with at least one connected transport.
    pub fn live_calls(&self) -> usize {
        self.0.registry.live_calls()
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
