//! `echo`: every inbound frame straight back into the call, as it arrives.

use mediagate_audio::AudioFrame;
use mediagate_pipeline::{Context, Execution, Input, Processor, ProcessorError};

/// Sends each inbound frame back at once, in order, bypassing the pacer: its pacing is the
/// caller's, so it keeps up with any inbound rate. The latency and throughput benchmarks'
/// reference. In an unmixed call every participant's frames come back, interleaved as they
/// arrived. It runs [`Execution::Direct`]: a refcount clone into the socket writer's queue per
/// frame, with no task of its own to wake.
#[derive(Debug, Default)]
pub struct Echo;

impl Processor for Echo {
    fn input(&self) -> Input {
        Input {
            execution: Execution::Direct,
            ..Input::default()
        }
    }

    fn on_frame(&mut self, frame: &AudioFrame, ctx: &mut Context) -> Result<(), ProcessorError> {
        if frame.format != ctx.call().format {
            return Err(ProcessorError::Skip(
                "frame not in the call's format; echo does not resample".to_owned(),
            ));
        }
        ctx.send_now(frame)
            .map_err(|e| ProcessorError::Fatal(e.to_string()))
    }
}
