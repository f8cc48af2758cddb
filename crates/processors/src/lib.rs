//! Built-in processors: sources that play into the call, detectors, and the recorders that
//! keep a call's files. [`register`] adds their factories to a
//! [`Registry`](mediagate_pipeline::Registry).
//!
//! - [`Echo`] (`echo`): every inbound frame straight back into the call.
//! - [`Tone`] (`tone`): a sine beep into the call, on DTMF and/or at call start.
//! - [`Play`] (`play`): a WAV file into the call, resampled to the call's rate.
//! - [`Vad`] (`vad`): energy-based voice activity detection per source, with barge-in.
//! - [`Wav`] (`wav`), [`TranscriptWriter`] (`transcript`), [`DtmfWriter`] (`dtmf`): the call
//!   recorded to files in its folder (see [`record`]).
//!
//! ```
//! let registry = mediagate_processors::builtins();
//! assert!(registry.contains("echo") && registry.contains("vad"));
//! ```

mod echo;
mod level;
mod play;
pub mod record;
mod registry;
pub mod settings;
mod tone;
mod vad;

pub use echo::Echo;
pub use level::{FLOOR_DBFS, LEVEL, LevelMeter, LevelMeterSettings};
pub use mediagate_pipeline::BuildError;
pub use play::{Play, PlaySettings, SharedClip, load_clip};
pub use record::{DtmfWriter, TranscriptSettings, TranscriptWriter, Wav, WavSettings};
pub use registry::{builtins, register};
pub use tone::{Tone, ToneSettings};
pub use vad::{Vad, VadSettings};
