//! Processor settings from the config: a JSON value (`null` when absent) into a typed struct.

use serde::de::DeserializeOwned;

use crate::BuildError;

/// Parses `value` into `T`; `null` means "all defaults". Errors name the processor.
pub(crate) fn parse<T: DeserializeOwned>(
    name: &str,
    value: &serde_json::Value,
) -> Result<T, BuildError> {
    let result = if value.is_null() {
        serde_json::from_value(serde_json::Value::Object(serde_json::Map::new()))
    } else {
        T::deserialize(value)
    };
    result.map_err(|e| invalid(name, e.to_string()))
}

/// A [`BuildError::Settings`] for `name`.
pub(crate) fn invalid(name: &str, reason: impl Into<String>) -> BuildError {
    BuildError::Settings {
        name: name.to_owned(),
        reason: reason.into(),
    }
}
