//! A real gateway for a processor's tests: bound to an ephemeral port on 127.0.0.1, recording
//! into a temporary directory, with your processors beside mediagate's.
//!
//! ```no_run
//! # async fn run() {
//! let mut registry = mediagate::registry();
//! // my_processor::register(&mut registry);
//! let gateway = mediagate::testing::Gateway::start(registry, |config| {
//!     config.pipeline.processors = vec!["echo".to_owned()];
//! })
//! .await;
//! let url = gateway.url("/ws?callId=test");
//! // … stream a call to `url` with `mediagate::emulator::run` …
//! let data = gateway.stop().await; // the call folders, still readable
//! # }
//! ```

use std::net::SocketAddr;

use mediagate_pipeline::Registry;
use mediagate_server::{Config, Server, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A gateway running in the test's runtime until [`Gateway::stop`].
pub struct Gateway {
    addr: SocketAddr,
    data_dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Gateway {
    /// Starts a gateway with `registry`'s processors, on [`Config::default`] adjusted by
    /// `adjust` (set its pipeline there), listening on 127.0.0.1 on a free port and recording
    /// into a new temporary directory. Panics if it cannot start: this is for tests.
    pub async fn start(registry: Registry, adjust: impl FnOnce(&mut Config)) -> Self {
        #[allow(clippy::expect_used)] // a test helper: failing to start fails the test
        let data_dir = tempfile::tempdir().expect("a temporary data dir");
        let mut config = Config {
            data_dir: data_dir.path().to_owned(),
            ..Config::default()
        };
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.admin.listen = config.listen;
        adjust(&mut config);
        #[allow(clippy::expect_used)]
        let server = Server::bind(config, registry)
            .await
            .expect("the test gateway starts");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Gateway {
            addr,
            data_dir,
            stop,
            task,
        }
    }

    /// `ws://127.0.0.1:PORT` followed by `path_and_query` (`/ws?callId=x`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{path_and_query}", self.addr)
    }

    /// Where the call folders are written.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// Stops the gateway (live calls closed), waits for it, and hands back the data dir.
    /// Panics if the gateway failed: this is for tests.
    pub async fn stop(self) -> tempfile::TempDir {
        let _ = self.stop.send(());
        #[allow(clippy::expect_used)]
        self.task
            .await
            .expect("the gateway task ended")
            .expect("the gateway ran without error");
        self.data_dir
    }
}
