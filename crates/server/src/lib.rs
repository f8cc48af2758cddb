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
//! let server = Server::bind(Config::default()).await?;
//! println!("listening on {}", server.local_addr());
//! server.run_until(mediagate_server::shutdown_signal()).await
//! # }
//! ```

mod config;
mod connection;
mod media;
mod metrics;
mod registry;
mod repair;
mod routes;
mod session;
mod writer;

use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{
    AudioConfig, CliOverrides, Config, ConfigError, ENV_PREFIX, LimitsConfig, OutboundConfig,
    PipelineConfig, RecordingConfig, ShutdownConfig, TlsConfig,
};
pub use mediagate_sinks::Registry;
pub use metrics::MetricsSnapshot;
pub use repair::{RepairAction, RepairReport, Repaired, WavRepair, repair_dir, repair_wav};

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
    /// The config names a processor the registry does not have, or gives it bad settings.
    #[error("invalid configuration: `{key}`: {source}")]
    Processor {
        /// `pipeline`, or `routes."/ws/bot"`.
        key: String,
        /// Which name, and the names that are known.
        source: mediagate_sinks::BuildError,
    },
}

/// State shared by every connection.
pub(crate) struct AppState {
    pub(crate) config: Config,
    /// Builds each call's processors by name.
    pub(crate) processors: Registry,
    pub(crate) registry: Arc<CallRegistry>,
    pub(crate) metrics: Metrics,
    /// Cancelled when live calls must close (drain deadline passed).
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the gateway stops accepting new calls.
    pub(crate) draining: CancellationToken,
    /// Every connection task, so shutdown can wait for their files to be finalized.
    pub(crate) tracker: TaskTracker,
    pub(crate) next_connection_id: AtomicU64,
}

/// A bound, not yet running gateway.
pub struct Server {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    state: Arc<AppState>,
}

impl Server {
    /// Creates the data dir, loads TLS material and binds the listener, with the built-in
    /// processors.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        Server::bind_with(config, mediagate_speech::builtins()).await
    }

    /// Like [`Server::bind`], with the processors of `registry` (register your own there).
    pub async fn bind_with(config: Config, registry: Registry) -> Result<Server, ServerError> {
        // Build every configured processor once: an unknown name or a bad setting stops
        // start-up with an error naming it, rather than failing each call. Off the async
        // threads: a speech engine loads (or first installs) its model here.
        let checked = tokio::task::spawn_blocking(move || {
            for (key, pipeline) in config.pipelines() {
                for name in &pipeline.processors {
                    if let Err(source) = registry.build(name, &pipeline.settings_of(name)) {
                        return Err(ServerError::Processor { key, source });
                    }
                }
            }
            Ok((config, registry))
        })
        .await;
        let (config, registry) = match checked {
            Ok(checked) => checked?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let data_dir = config.data_dir.clone();
        tokio::fs::create_dir_all(&data_dir)
            .await
            .map_err(|source| ServerError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
        let tls = match &config.tls {
            None => None,
            Some(tls) => {
                // One process-wide crypto provider; a second install is harmless.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let loaded =
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                        .await
                        .map_err(|source| ServerError::Tls {
                            cert: tls.cert.clone(),
                            key: tls.key.clone(),
                            source,
                        })?;
                Some(loaded)
            }
        };
        let addr = config.listen;
        let bind_error = |source| ServerError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(bind_error)?;
        let listener = listener.into_std().map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let state = Arc::new(AppState {
            registry: Arc::new(CallRegistry::new(data_dir)),
            config,
            processors: registry,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_connection_id: AtomicU64::new(1),
        });
        Ok(Server {
            listener,
            local_addr,
            tls,
            state,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that reads the gateway's counters while it runs.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.state))
    }

    /// Serves until `signal` resolves, then drains: stops accepting, lets live calls go on for
    /// `shutdown.drain_timeout_secs`, closes the rest with 1001, and waits for every call's
    /// files to be finalized.
    pub async fn run_until<F>(self, signal: F) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = self.state;
        let app =
            routes::router(Arc::clone(&state)).into_make_service_with_connect_info::<SocketAddr>();
        let draining = state.draining.clone();
        let serve = match self.tls {
            None => {
                self.listener
                    .set_nonblocking(true)
                    .map_err(ServerError::Serve)?;
                // 20 ms frames are small writes: Nagle would hold one back until the previous
                // is acknowledged, which on a delayed ACK is tens of milliseconds.
                let listener = tokio::net::TcpListener::from_std(self.listener)
                    .map_err(ServerError::Serve)?
                    .tap_io(|tcp| {
                        if let Err(e) = tcp.set_nodelay(true) {
                            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                        }
                    });
                tracing::info!(addr = %self.local_addr, "listening (ws://)");
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(draining.cancelled_owned())
                        .await
                })
            }
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let stop = handle.clone();
                tokio::spawn(async move {
                    draining.cancelled().await;
                    stop.graceful_shutdown(Some(Duration::from_secs(1)));
                });
                tracing::info!(addr = %self.local_addr, "listening (wss://)");
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                    .acceptor(axum_server::accept::NoDelayAcceptor::new());
                let server = axum_server::from_tcp(self.listener)
                    .map_err(ServerError::Serve)?
                    .acceptor(acceptor)
                    .handle(handle);
                tokio::spawn(async move { server.serve(app).await })
            }
        };
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => {
                // The listener failed on its own: still finalize whatever is live.
                drain(&state, Duration::ZERO).await;
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(ServerError::Serve(e)),
                    Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
                };
            }
            () = signal => {}
        }
        let drain_timeout = Duration::from_secs(state.config.shutdown.drain_timeout_secs);
        tracing::info!(
            live_calls = state.registry.live_calls(),
            drain_timeout_secs = drain_timeout.as_secs(),
            "shutting down: no new calls"
        );
        state.draining.cancel();
        let _ = serve.await;
        drain(&state, drain_timeout).await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Lets live calls finish for `timeout`, then closes them and waits for their files.
async fn drain(state: &AppState, timeout: Duration) {
    state.draining.cancel();
    state.tracker.close();
    if tokio::time::timeout(timeout, state.tracker.wait())
        .await
        .is_err()
    {
        tracing::info!(
            live_calls = state.registry.live_calls(),
            "drain deadline passed: closing live calls"
        );
    }
    state.shutdown.cancel();
    // Finalizing is bounded by the recorders' queues; this is a backstop, not a plan.
    if tokio::time::timeout(Duration::from_secs(30), state.tracker.wait())
        .await
        .is_err()
    {
        tracing::error!("some calls did not finalize within 30 s of shutdown");
    }
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
