//! A call's processors: the pipeline the config names, its paced outbound queue, and the glue
//! between the connection's messages and the pipeline's frames and events.

use std::sync::Arc;
use std::time::Duration;

use mediagate_audio::AudioFormat;
use mediagate_pipeline::{
    CallInfo, ConsumerReport, OutboundQueue, Outgoing, PacerReport, Pipeline,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::AppState;

/// The pipeline of one call, and the pacer task of its outbound queue.
pub(crate) struct CallPipeline {
    pub(crate) pipeline: Pipeline,
    outbound: OutboundQueue,
    pacer: JoinHandle<()>,
}

impl CallPipeline {
    /// Builds the configured processors for this call; `None` when none are configured (then
    /// the call costs nothing here).
    pub(crate) fn start(
        app: &AppState,
        call_id: &str,
        path: &str,
        format: AudioFormat,
        to_socket: mpsc::Sender<Outgoing>,
    ) -> Option<Self> {
        let pipeline = app.config.pipeline_for(path);
        let names = &pipeline.processors;
        if names.is_empty() {
            return None;
        }
        let mut processors = Vec::with_capacity(names.len());
        for name in names {
            let settings = pipeline
                .settings
                .get(name)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            match app.processors.build(name, &settings) {
                Ok(processor) => processors.push((name.clone(), processor)),
                // Names were checked at start-up; a constructor may still refuse a call.
                Err(e) => tracing::error!(processor = %name, error = %e, "processor not started"),
            }
        }
        let max_queue = Duration::from_secs(app.config.outbound.max_queue_secs);
        let outbound = OutboundQueue::new(format, max_queue, to_socket.clone());
        let pacer = tokio::spawn(outbound.clone().run_pacer());
        let call = Arc::new(CallInfo {
            call_id: call_id.into(),
            path: path.into(),
            format,
        });
        let pipeline = Pipeline::start(call, processors, Some(outbound.clone()), Some(to_socket));
        Some(CallPipeline {
            pipeline,
            outbound,
            pacer,
        })
    }

    /// Ends the call for the processors: they drain, see `CallEnded` and finish.
    /// Also reports how the pacer kept time (`None` when nothing was played).
    pub(crate) async fn finish(self) -> (Vec<ConsumerReport>, Option<PacerReport>) {
        let reports = self.pipeline.finish().await;
        self.pacer.abort();
        let pacing = self.outbound.pacer_report();
        (reports, (pacing.frames > 0).then_some(pacing))
    }
}
