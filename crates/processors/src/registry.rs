//! Names to constructors: `processors = ["echo", "my_vad"]` in the config builds a pipeline.

use std::collections::BTreeMap;

use mediagate_pipeline::Processor;
use thiserror::Error;

/// Builds a processor from its settings (the TOML table `[processor.NAME]`, as JSON; `null`
/// when absent).
pub type Constructor =
    Box<dyn Fn(&serde_json::Value) -> Result<Box<dyn Processor>, BuildError> + Send + Sync>;

/// A processor could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildError {
    /// No processor is registered under this name.
    #[error("unknown processor `{name}` (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The settings do not fit the processor.
    #[error("invalid settings for processor `{name}`: {reason}")]
    Settings {
        /// The processor.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// The processors a gateway can build by name. Library users register their own.
pub struct Registry {
    constructors: BTreeMap<String, Constructor>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Registry {
            constructors: BTreeMap::new(),
        }
    }

    /// The built-in processors (`echo`, `play`, `tone`, `vad`, and the recorders `wav`,
    /// `transcript`, `dtmf`).
    pub fn with_builtins() -> Self {
        let mut registry = Registry::empty();
        registry.register("wav", |settings| {
            Ok(Box::new(crate::Wav::from_settings(settings)?))
        });
        registry.register("transcript", |settings| {
            Ok(Box::new(crate::TranscriptWriter::from_settings(settings)?))
        });
        registry.register("dtmf", |settings| {
            Ok(Box::new(crate::DtmfWriter::from_settings(settings)?))
        });
        registry.register("echo", |_| Ok(Box::new(crate::Echo)));
        registry.register("play", |settings| {
            Ok(Box::new(crate::Play::from_settings(settings)?))
        });
        registry.register("tone", |settings| {
            Ok(Box::new(crate::Tone::from_settings(settings)?))
        });
        registry.register("vad", |settings| {
            Ok(Box::new(crate::Vad::from_settings(settings)?))
        });
        registry
    }

    /// Registers `name`; a second registration under the same name replaces the first.
    pub fn register<F>(&mut self, name: &str, constructor: F)
    where
        F: Fn(&serde_json::Value) -> Result<Box<dyn Processor>, BuildError> + Send + Sync + 'static,
    {
        self.constructors
            .insert(name.to_owned(), Box::new(constructor));
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.constructors.contains_key(name)
    }

    /// Builds the processor registered as `name`.
    pub fn build(
        &self,
        name: &str,
        settings: &serde_json::Value,
    ) -> Result<Box<dyn Processor>, BuildError> {
        match self.constructors.get(name) {
            Some(constructor) => constructor(settings),
            None => Err(BuildError::Unknown {
                name: name.to_owned(),
                known: self
                    .constructors
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.constructors.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_what_is_known() {
        let registry = Registry::with_builtins();
        for name in ["echo", "tone", "vad"] {
            assert!(
                registry.build(name, &serde_json::Value::Null).is_ok(),
                "{name}"
            );
        }
        assert!(matches!(
            registry.build("play", &serde_json::Value::Null),
            Err(BuildError::Settings { .. })
        ));
        let Err(err) = registry.build("ecoh", &serde_json::Value::Null) else {
            panic!("built an unknown processor");
        };
        assert_eq!(
            err.to_string(),
            "unknown processor `ecoh` (known: dtmf, echo, play, tone, transcript, vad, wav)"
        );
    }
}
