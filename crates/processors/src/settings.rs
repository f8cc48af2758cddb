//! Processor settings from the config: a JSON value (`null` when absent) into a typed struct;
//! and what prompts do when they cannot play.

use mediagate_pipeline::{Context, PlayError, ProcessorError};
use serde::de::DeserializeOwned;

use crate::BuildError;

/// Parses `value` into `T`; `null` means "all defaults". Errors name the processor.
pub fn parse<T: DeserializeOwned>(name: &str, value: &serde_json::Value) -> Result<T, BuildError> {
    let result = if value.is_null() {
        serde_json::from_value(serde_json::Value::Object(serde_json::Map::new()))
    } else {
        T::deserialize(value)
    };
    result.map_err(|e| invalid(name, e.to_string()))
}

/// A [`BuildError::Settings`] for `name`.
pub fn invalid(name: &str, reason: impl Into<String>) -> BuildError {
    BuildError::Settings {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

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
