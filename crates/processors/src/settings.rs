//! Settings helpers (the pipeline crate's, re-exported), and what prompts do when they cannot
//! play.

use mediagate_pipeline::{Context, PlayError, ProcessorError};

pub use mediagate_pipeline::registry::{invalid, parse};

/// What a prompt does when it cannot play: a full queue or a call without outbound audio is
/// skipped (warned about once per processor, then silent); anything else is a skipped item.
pub fn skip_unplayable(
    result: Result<(), PlayError>,
    warned: &mut bool,
    ctx: &Context,
    what: &str,
) -> Result<(), ProcessorError> {
    match result {
        Ok(()) => Ok(()),
        Err(e @ (PlayError::Full(_) | PlayError::NoOutbound)) => {
            if !std::mem::replace(warned, true) {
                tracing::warn!(call_id = &*ctx.call().call_id, error = %e, "{what} skipped");
            }
            Ok(())
        }
        Err(e) => Err(ProcessorError::Skip(e.to_string())),
    }
}
