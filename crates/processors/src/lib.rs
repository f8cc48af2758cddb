//! Built-in processors, and the [`Registry`] that builds a call's pipeline from names in the
//! config.
//!
//! - [`Echo`] (`echo`): every inbound frame straight back into the call.
//! - [`Tone`] (`tone`): a sine beep into the call, on DTMF and/or at call start.
//! - [`Play`] (`play`): a WAV file into the call, resampled to the call's rate.
//! - [`Vad`] (`vad`): energy-based voice activity detection per source, with barge-in.
//! - [`Wav`] (`wav`), [`TranscriptWriter`] (`transcript`), [`DtmfWriter`] (`dtmf`): the call
//!   recorded to files in its folder (see [`record`]).
//!
//! ```
//! use mediagate_processors::Registry;
//!
//! let registry = Registry::with_builtins();
//! assert!(registry.contains("echo") && registry.contains("vad"));
//! ```

mod echo;
mod play;
pub mod record;
mod registry;
pub mod settings;
mod tone;
mod vad;

pub use echo::Echo;
pub use play::{Play, PlaySettings, load_clip, play_clip};
pub use record::{DtmfWriter, TranscriptSettings, TranscriptWriter, Wav, WavSettings};
pub use registry::{BuildError, Constructor, Registry};
pub use tone::{Tone, ToneSettings};
pub use vad::{Vad, VadSettings};
