//! The built-in processors' factories, by name.

use mediagate_pipeline::{CallInfo, Processor, Prototype, Registry};

use crate::{DtmfWriter, Echo, LevelMeter, Play, Tone, TranscriptWriter, Vad, Wav};

/// Adds the built-in processors to `registry`: `echo`, `play`, `tone`, `vad`, `level_meter`,
/// and the recorders `wav`, `transcript` and `dtmf`.
pub fn register(registry: &mut Registry) {
    registry.register("wav", |settings| {
        let settings = Wav::check(settings.parse()?)?;
        Ok(move |_: &CallInfo| Box::new(Wav::fresh(settings.clone())) as Box<dyn Processor>)
    });
    registry.register("transcript", |settings| {
        let settings: crate::TranscriptSettings = settings.parse()?;
        Ok(move |_: &CallInfo| {
            Box::new(TranscriptWriter::new(settings.clone())) as Box<dyn Processor>
        })
    });
    registry.register("dtmf", |settings| {
        DtmfWriter::from_settings(settings.value())?;
        Ok(|_: &CallInfo| Box::new(DtmfWriter::default()) as Box<dyn Processor>)
    });
    registry.register("echo", |settings| {
        settings.none()?;
        Ok(|_: &CallInfo| Box::new(Echo) as Box<dyn Processor>)
    });
    // The clip is read and decoded here, once: each call's `play` shares it by refcount.
    registry.register("play", |settings| {
        Ok(Prototype(Play::from_settings(settings.value())?))
    });
    registry.register("tone", |settings| {
        Ok(Prototype(Tone::from_settings(settings.value())?))
    });
    registry.register("vad", |settings| {
        Ok(Prototype(Vad::from_settings(settings.value())?))
    });
    registry.register("level_meter", |settings| {
        Ok(Prototype(LevelMeter::from_settings(settings.value())?))
    });
}

/// A registry of the built-in processors alone.
pub fn builtins() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry);
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_pipeline::BuildError;

    #[test]
    fn unknown_names_list_what_is_known() {
        let registry = builtins();
        for name in ["echo", "tone", "vad", "wav", "transcript", "dtmf"] {
            assert!(
                registry.factory(name, &serde_json::Value::Null).is_ok(),
                "{name}"
            );
        }
        assert!(matches!(
            registry.factory("play", &serde_json::Value::Null),
            Err(BuildError::Settings { .. })
        ));
        assert!(matches!(
            registry.factory("echo", &serde_json::json!({"loud": true})),
            Err(BuildError::Settings { .. })
        ));
        let Err(err) = registry.factory("ecoh", &serde_json::Value::Null) else {
            panic!("built an unknown processor");
        };
        assert_eq!(
            err.to_string(),
            "unknown processor `ecoh` (known: dtmf, echo, level_meter, play, tone, transcript, vad, wav)"
        );
    }
}
