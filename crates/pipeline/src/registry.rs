//! Names to factories: `processors = ["wav", "my_vad"]` in the config becomes a [`Plan`], built
//! once per route at start-up, that makes each call's processors.
//!
//! A [`Factory`] is where a processor's heavy state lives: a loaded speech model, a decoded
//! clip, synthesized prompts, a checked set of settings. It is built once, off the async
//! threads, and validates its settings there, so a bad setting stops start-up with an error
//! naming it. Per call, [`Factory::make`] returns a cheap processor: no I/O, no waiting, since
//! it runs on the call's socket task.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use thiserror::Error;

use mediagate_audio::Clip;

use crate::event::CallInfo;
use crate::processor::Processor;

/// Makes one kind of processor, once per call.
///
/// Any `Fn(&CallInfo) -> Box<dyn Processor>` closure is a factory; a struct holding shared
/// state (an `Arc` of a model) implements it to hand each call's processor its share.
pub trait Factory: Send + Sync + 'static {
    /// A processor for `call`. Runs on the call's socket task: cheap, no I/O, never blocking.
    fn make(&self, call: &CallInfo) -> Box<dyn Processor>;
}

impl<F> Factory for F
where
    F: Fn(&CallInfo) -> Box<dyn Processor> + Send + Sync + 'static,
{
    fn make(&self, call: &CallInfo) -> Box<dyn Processor> {
        self(call)
    }
}

/// A factory that clones a prototype for each call: for processors whose fresh state is cheap
/// to copy (checked settings, a clip shared by refcount).
#[derive(Debug, Clone)]
pub struct Prototype<P>(pub P);

impl<P> Factory for Prototype<P>
where
    P: Processor + Clone + Sync,
{
    fn make(&self, _call: &CallInfo) -> Box<dyn Processor> {
        Box::new(self.0.clone())
    }
}

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

/// One processor's settings: the TOML table `[pipeline.settings.NAME]`, as JSON (`null` when
/// absent), with the name errors are reported under.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    name: &'a str,
    value: &'a serde_json::Value,
}

impl<'a> Settings<'a> {
    /// The settings `value` of processor `name`.
    pub fn new(name: &'a str, value: &'a serde_json::Value) -> Self {
        Settings { name, value }
    }

    /// The processor's name in the registry.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The raw value (`null` when the config has no table for it).
    pub fn value(&self) -> &'a serde_json::Value {
        self.value
    }

    /// The settings as `T`; absent settings are `T`'s defaults (`{}`). Errors name the
    /// processor.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, BuildError> {
        parse(self.name, self.value)
    }

    /// For a processor that has no settings: `Ok` when none are given (`null` or `{}`), else
    /// an error naming the first one.
    pub fn none(&self) -> Result<(), BuildError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NoSettings {}
        let NoSettings {} = self.parse()?;
        Ok(())
    }

    /// A [`BuildError::Settings`] for this processor.
    pub fn invalid(&self, reason: impl Into<String>) -> BuildError {
        invalid(self.name, reason)
    }
}

/// Parses `value` into `T`; `null` means "all defaults". Errors name processor `name`.
pub fn parse<T: DeserializeOwned>(name: &str, value: &serde_json::Value) -> Result<T, BuildError> {
    let result = if value.is_null() {
        serde_json::from_value(serde_json::Value::Object(serde_json::Map::new()))
    } else {
        T::deserialize(value)
    };
    result.map_err(|e| invalid(name, e.to_string()))
}

/// A [`BuildError::Settings`] for processor `name`.
pub fn invalid(name: &str, reason: impl Into<String>) -> BuildError {
    BuildError::Settings {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Builds a factory from its settings. Blocking: it may load a model.
type Builder =
    Box<dyn Fn(&Settings<'_>) -> Result<Arc<dyn Factory>, BuildError> + Send + Sync + 'static>;

/// The processors a gateway can build by name. The binary fills it with the built-ins and the
/// speech engines; library users register their own.
#[derive(Default)]
pub struct Registry {
    builders: BTreeMap<String, Builder>,
    metrics: Vec<MetricsHook>,
    speaker: Option<Speaker>,
}

/// Text to speech for the gateway itself (the admin API's `play` with `text`): a clip of
/// `text` spoken, or why not. Blocking: the gateway calls it off the async threads.
pub type Speaker = Arc<dyn Fn(&str) -> Result<Clip, String> + Send + Sync + 'static>;

/// Adds a processor family's series to the gateway's Prometheus registry.
type MetricsHook = Box<dyn Fn(&mut prometheus_client::registry::Registry) + Send + Sync + 'static>;

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `name`: `build` turns its settings into a factory, once per route at
    /// start-up. A second registration under the same name replaces the first.
    pub fn register<B, F>(&mut self, name: &str, build: B)
    where
        B: Fn(&Settings<'_>) -> Result<F, BuildError> + Send + Sync + 'static,
        F: Factory,
    {
        self.builders.insert(
            name.to_owned(),
            Box::new(move |settings| Ok(Arc::new(build(settings)?) as Arc<dyn Factory>)),
        );
    }

    /// Registers series that registered processors keep (a speech engine's latency
    /// histograms): `register` adds them to the gateway's Prometheus registry (the
    /// `mediagate_` prefix is added) when the gateway binds. Their names must not clash with
    /// another hook's.
    pub fn register_metrics<M>(&mut self, register: M)
    where
        M: Fn(&mut prometheus_client::registry::Registry) + Send + Sync + 'static,
    {
        self.metrics.push(Box::new(register));
    }

    /// Gives the gateway a voice: what speaks text played into a call from outside a pipeline
    /// (the last one set wins).
    pub fn set_speaker(&mut self, speaker: Speaker) {
        self.speaker = Some(speaker);
    }

    /// The voice set with [`Registry::set_speaker`], if any.
    pub fn speaker(&self) -> Option<Speaker> {
        self.speaker.clone()
    }

    /// Adds every hook's series to `registry`.
    pub fn metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        for hook in &self.metrics {
            hook(registry);
        }
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.builders.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.builders.keys().map(String::as_str)
    }

    /// The factory of `name` with `settings`. Blocking (a model may load): call it off the
    /// async threads.
    pub fn factory(
        &self,
        name: &str,
        settings: &serde_json::Value,
    ) -> Result<Arc<dyn Factory>, BuildError> {
        match self.builders.get(name) {
            Some(build) => build(&Settings::new(name, settings)),
            None => Err(BuildError::Unknown {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Builds one [`Plan`] per pipeline, in order. Processors with the same name and settings
    /// share one factory across pipelines (one model loaded, however many routes run it).
    /// Blocking. On failure, the key of the pipeline that failed and why.
    pub fn plans<K>(
        &self,
        pipelines: impl IntoIterator<Item = (K, Vec<(String, serde_json::Value)>)>,
    ) -> Result<Vec<(K, Plan)>, (K, BuildError)> {
        let mut built: Vec<(String, serde_json::Value, Arc<dyn Factory>)> = Vec::new();
        let mut plans = Vec::new();
        for (key, processors) in pipelines {
            let mut stages = Vec::with_capacity(processors.len());
            for (name, settings) in processors {
                let known = built
                    .iter()
                    .find(|(n, s, _)| *n == name && *s == settings)
                    .map(|(_, _, factory)| Arc::clone(factory));
                let factory = match known {
                    Some(factory) => factory,
                    None => match self.factory(&name, &settings) {
                        Ok(factory) => {
                            built.push((name.clone(), settings, Arc::clone(&factory)));
                            factory
                        }
                        Err(e) => return Err((key, e)),
                    },
                };
                stages.push((Arc::from(name), factory));
            }
            plans.push((key, Plan { stages }));
        }
        Ok(plans)
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.builders.keys()).finish()
    }
}

/// A route's processors, ready to make: one factory per name, in pipeline order.
#[derive(Clone, Default)]
pub struct Plan {
    stages: Vec<(Arc<str>, Arc<dyn Factory>)>,
}

impl Plan {
    /// A plan of `stages`, in order (normally built by [`Registry::plans`]).
    pub fn new(stages: Vec<(Arc<str>, Arc<dyn Factory>)>) -> Self {
        Plan { stages }
    }

    /// Whether it runs no processor.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The processors' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|(name, _)| &**name)
    }

    /// The call's processors, one per factory, in order. A factory that panics costs the call
    /// that processor only: it is left out, and `panicked` is told its name and message.
    pub fn processors(
        &self,
        call: &CallInfo,
        mut panicked: impl FnMut(&str, String),
    ) -> Vec<(String, Box<dyn Processor>)> {
        let mut processors = Vec::with_capacity(self.stages.len());
        for (name, factory) in &self.stages {
            match std::panic::catch_unwind(AssertUnwindSafe(|| factory.make(call))) {
                Ok(processor) => processors.push((name.to_string(), processor)),
                Err(payload) => panicked(name, crate::pipeline::panic_message(&*payload)),
            }
        }
        processors
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mediagate_audio::AudioFormat;

    struct Nothing;
    impl Processor for Nothing {}

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Level {
        #[serde(default)]
        level: u8,
    }

    fn registry(built: &Arc<AtomicUsize>) -> Registry {
        let mut registry = Registry::new();
        let built = Arc::clone(built);
        registry.register("level", move |settings| {
            let Level { level } = settings.parse()?;
            if level > 3 {
                return Err(settings.invalid("level must be at most 3"));
            }
            built.fetch_add(1, Ordering::Relaxed);
            Ok(|_: &CallInfo| Box::new(Nothing) as Box<dyn Processor>)
        });
        registry.register("boom", |_| {
            Ok(|_: &CallInfo| -> Box<dyn Processor> { panic!("no processor today") })
        });
        registry
    }

    #[test]
    fn identical_settings_share_one_factory_across_routes() {
        let built = Arc::new(AtomicUsize::new(0));
        let registry = registry(&built);
        let one = vec![("level".to_owned(), serde_json::json!({"level": 1}))];
        let two = vec![("level".to_owned(), serde_json::json!({"level": 2}))];
        let plans = registry
            .plans([("a", one.clone()), ("b", one), ("c", two)])
            .unwrap();
        assert_eq!(plans.len(), 3);
        assert_eq!(built.load(Ordering::Relaxed), 2);
        let call = CallInfo::new("c", "/ws", AudioFormat::mono(16_000));
        let made = plans[0]
            .1
            .processors(&call, |_, _| panic!("no panic expected"));
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].0, "level");
    }

    #[test]
    fn errors_name_the_pipeline_and_the_processor() {
        let registry = registry(&Arc::new(AtomicUsize::new(0)));
        let bad = vec![("level".to_owned(), serde_json::json!({"level": 9}))];
        let Err((key, err)) = registry.plans([("routes./x", bad)]) else {
            panic!("built a bad plan");
        };
        assert_eq!(key, "routes./x");
        assert_eq!(
            err.to_string(),
            "invalid settings for processor `level`: level must be at most 3"
        );
        let typo = vec![("levle".to_owned(), serde_json::Value::Null)];
        let Err((_, err)) = registry.plans([("pipeline", typo)]) else {
            panic!("built an unknown processor");
        };
        assert_eq!(
            err.to_string(),
            "unknown processor `levle` (known: boom, level)"
        );
        let unknown_field = vec![("level".to_owned(), serde_json::json!({"levl": 1}))];
        assert!(matches!(
            registry.plans([("pipeline", unknown_field)]),
            Err((_, BuildError::Settings { .. }))
        ));
    }

    #[test]
    fn a_factory_that_panics_costs_the_call_that_processor_only() {
        let registry = registry(&Arc::new(AtomicUsize::new(0)));
        let stages = vec![
            ("boom".to_owned(), serde_json::Value::Null),
            ("level".to_owned(), serde_json::Value::Null),
        ];
        let plans = registry.plans([((), stages)]).unwrap();
        let call = CallInfo::new("c", "/ws", AudioFormat::mono(16_000));
        let mut panics = Vec::new();
        let made = plans[0].1.processors(&call, |name, message| {
            panics.push((name.to_owned(), message))
        });
        assert_eq!(made.len(), 1);
        assert_eq!(
            panics,
            vec![("boom".to_owned(), "no processor today".to_owned())]
        );
    }
}
