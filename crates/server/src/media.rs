//! A call's processors: the pipeline the config names, its paced outbound queue (bidirectional
//! media only), and the glue between the connection's messages and the pipeline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mediagate_audio::AudioFormat;
use mediagate_pipeline::{
    CallInfo, ConsumerReport, Ending, OutboundQueue, Outgoing, PacerReport, Pipeline, Plan,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::AppState;
use crate::metrics::Metrics;

/// Each pipeline's plan, built once at start-up: `[pipeline]`'s, and each route's by path.
pub(crate) struct Plans {
    default: Plan,
    routes: HashMap<String, Plan>,
}

impl Plans {
    /// From [`Registry::plans`](mediagate_pipeline::Registry::plans) of
    /// [`crate::Config::pipelines`]: `None` is `[pipeline]`, a path a route.
    pub(crate) fn new(plans: Vec<(Option<String>, Plan)>) -> Self {
        let mut default = Plan::default();
        let mut routes = HashMap::new();
        for (route, plan) in plans {
            match route {
                None => default = plan,
                Some(path) => {
                    routes.insert(path, plan);
                }
            }
        }
        Plans { default, routes }
    }

    /// The plan of a call on `path`: its route's ([`crate::Config::route_for`]), else
    /// `[pipeline]`'s.
    fn for_path(&self, config: &crate::Config, path: &str) -> &Plan {
        config
            .route_for(path)
            .and_then(|route| self.routes.get(route))
            .unwrap_or(&self.default)
    }
}

/// The pipeline of one transport of a call, and the pacer task of its outbound queue.
pub(crate) struct CallPipeline {
    pub(crate) pipeline: Pipeline,
    outbound: Option<(OutboundQueue, JoinHandle<()>)>,
    /// The connection's id: its live counters are listed in the metrics under it.
    connection_id: u64,
}

/// Who the pipeline serves.
pub(crate) struct PipelineTarget<'a> {
    pub(crate) call_id: &'a str,
    pub(crate) path: &'a str,
    pub(crate) connection_id: u64,
    pub(crate) format: AudioFormat,
    /// The call's folder; `None` when the gateway keeps no files.
    pub(crate) folder: Option<PathBuf>,
    /// The socket writer, for a media transport (outbound audio); `None` for transcription.
    pub(crate) to_socket: Option<mpsc::Sender<Outgoing>>,
}

impl CallPipeline {
    /// Makes this transport's processors from its route's factories; `None` when none are
    /// configured (then the call costs nothing here).
    pub(crate) fn start(app: &Arc<AppState>, target: PipelineTarget<'_>) -> Option<Self> {
        let plan = app.plans.for_path(&app.config, target.path);
        if plan.is_empty() {
            return None;
        }
        let mut call = CallInfo::new(target.call_id, target.path, target.format);
        call.folder = target.folder;
        // Cheap: each factory hands out a processor; one that panics costs this call that
        // processor, nothing more.
        let processors = plan.processors(&call, |name, message| {
            app.metrics.panicked("factory");
            tracing::error!(
                processor = name,
                panic = %message,
                "processor factory panicked; not started"
            );
        });
        let outbound = target.to_socket.as_ref().map(|to_socket| {
            let max_queue = Duration::from_secs(app.config.outbound.max_queue_secs);
            let queue = OutboundQueue::new(target.format, max_queue, to_socket.clone());
            let pacer = tokio::spawn(queue.clone().run_pacer());
            (queue, pacer)
        });
        let pipeline = Pipeline::start(
            Arc::new(call),
            processors,
            outbound.as_ref().map(|(queue, _)| queue.clone()),
            target.to_socket,
        )
        .with_timeline(app.config.timeline.settings());
        app.metrics
            .pipeline_started(target.connection_id, pipeline.probes());
        Some(CallPipeline {
            pipeline,
            outbound,
            connection_id: target.connection_id,
        })
    }

    /// The connection whose counters the metrics list this pipeline under.
    pub(crate) fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// Ends the call for the processors: each sees `CallEnded` and finishes on its own
    /// ([`Pipeline::end`]). The outbound queue stops: the transport is over.
    pub(crate) fn end(self) -> EndingPipeline {
        let pacing = self.outbound.and_then(|(queue, pacer)| {
            pacer.abort();
            let pacing = queue.pacer_report();
            (pacing.frames > 0).then_some(pacing)
        });
        let timeline = self.pipeline.timeline_report();
        let ending = self.pipeline.end();
        EndingPipeline {
            reports: vec![None; ending.len()],
            ending,
            pacing,
            timeline,
            connection_id: self.connection_id,
        }
    }
}

/// A transport's processors after it ended, while they finish.
pub(crate) struct EndingPipeline {
    ending: Ending,
    /// The reports of those finished, in pipeline order.
    reports: Vec<Option<ConsumerReport>>,
    /// How the pacer kept time (`None` when nothing was played).
    pub(crate) pacing: Option<PacerReport>,
    /// The clock anomalies the call's timeline caught.
    pub(crate) timeline: mediagate_audio::TimelineReport,
    connection_id: u64,
}

impl EndingPipeline {
    /// Waits for processors to finish until every one has, or until `deadline`.
    pub(crate) async fn settle(&mut self, deadline: tokio::time::Instant) {
        while let Ok(Some((at, report))) =
            tokio::time::timeout_at(deadline, self.ending.next()).await
        {
            self.reports[at] = Some(report);
        }
    }

    /// Waits for the next processor to finish; `false` when all have.
    pub(crate) async fn next(&mut self) -> bool {
        match self.ending.next().await {
            Some((at, report)) => {
                self.reports[at] = Some(report);
                true
            }
            None => false,
        }
    }

    /// Releases the processors waiting for the emitters at once ([`Ending::release_now`]):
    /// the gateway is stopping.
    pub(crate) fn release_waiting(&mut self) {
        self.ending.release_now();
    }

    /// Whether every processor has finished.
    pub(crate) fn finished(&self) -> bool {
        self.reports.iter().all(Option::is_some)
    }

    /// Every processor's report in pipeline order: a finished one's, or a snapshot of one
    /// still working (`working: true`).
    pub(crate) fn reports(&self) -> Vec<ConsumerReport> {
        self.reports
            .iter()
            .enumerate()
            .filter_map(|(at, report)| report.clone().or_else(|| self.ending.working_report(at)))
            .collect()
    }

    /// Publishes the final counters (once every processor has finished).
    pub(crate) fn publish(&self, metrics: &Metrics) {
        metrics.pipeline_ended(self.connection_id, &self.reports(), self.pacing.as_ref());
    }
}
