//! A small safe binding of [CMU PocketSphinx](https://cmusphinx.github.io/), the light
//! speech-to-text engine, as Debian ships it (`libpocketsphinx-dev`, 0.8+5prealpha, with the
//! US English models of `pocketsphinx-en-us`).
//!
//! One [`Decoder`] holds one loaded model set (acoustic model, language model, dictionary:
//! about 0.4 s and 90 MB of memory to load with the Debian models) and decodes one utterance
//! at a time: 16 kHz mono PCM in, a [`Hypothesis`] out (the text, the decoder's posterior
//! probability, and each word with its times), or aligns a known text to it
//! ([`Decoder::align`]: where each word was spoken). Nothing here knows about calls or pipelines;
//! `mediagate-speech` runs it as its `pocketsphinx` engine.
//!
//! ```no_run
//! use mediagate_pocketsphinx::{Config, Decoder};
//!
//! # fn main() -> Result<(), mediagate_pocketsphinx::Error> {
//! let mut decoder = Decoder::new(&Config::default())?; // the Debian model paths
//! let samples: Vec<i16> = vec![0; 16_000]; // one second, 16 kHz mono
//! let hypothesis = decoder.decode(&samples)?;
//! println!("{} ({} words)", hypothesis.text, hypothesis.words.len());
//! # Ok(())
//! # }
//! ```
//!
//! This is the only crate of the workspace with `unsafe` code: the C declarations in `sys`
//! and the calls in `decoder`, each block with the reason it is sound. What the binding
//! guards against, and what it cannot:
//!
//! - Missing or unreadable model files, and acoustic model files that are not model files at
//!   all (empty, garbage, the wrong file: the library would end the process on those), are
//!   found by [`Config::check`] before the C library sees them, with an error naming the path
//!   and the Debian packages. Damage deeper inside an acoustic model file can still make the
//!   library call `exit()` (its `E_FATAL`), which no binding can catch; a bad language model
//!   or dictionary is an [`Error::Load`].
//! - PocketSphinx logs a great deal to stderr; the first [`Decoder::new`] turns its logging
//!   off for the whole process, so its error messages are not seen either: [`Error`] says
//!   what failed, not the library's own reason.
//! - Decoders are independent and may run on different threads at once ([`Decoder`] is
//!   `Send`); loading is serialized inside this crate, because the library sets a global
//!   while loading.

#[allow(unsafe_code)] // C declarations only: the FFI boundary.
mod sys;

#[allow(unsafe_code)] // The calls into the C library, each with its SAFETY comment.
mod decoder;

mod config;

use std::path::PathBuf;

pub use config::{Config, DEBIAN_DICT, DEBIAN_HMM, DEBIAN_LM};
pub use decoder::{Decoder, Hypothesis, Word};

/// The only sample rate the decoder takes (the Debian acoustic model's).
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// What to install on Debian or Ubuntu for the library and its models.
pub const DEBIAN_PACKAGES: &str = "apt-get install libpocketsphinx-dev pocketsphinx-en-us";

/// Setting up or running a decoder failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file or directory is missing or cannot be read.
    #[error("pocketsphinx {what} {path}: {reason} (on Debian: {DEBIAN_PACKAGES})", path = .path.display())]
    Model {
        /// Which part of the model set: `acoustic model`, `language model`, `dictionary`.
        what: &'static str,
        /// The path that is wrong.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An extra decoder argument is unknown, reserved, or its value has the wrong type.
    #[error("pocketsphinx argument `{name}`: {reason}")]
    Argument {
        /// The argument, with its leading dash (`-beam`).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The library refused the model set although every file is present: a corrupt file, or
    /// files that do not belong together (a dictionary whose phones the acoustic model lacks).
    #[error(
        "pocketsphinx cannot load the acoustic model {hmm}, language model {lm} and dictionary {dict} together (a corrupt file, or files that do not belong together)",
        hmm = .hmm.display(),
        lm = .lm.display(),
        dict = .dict.display()
    )]
    Load {
        /// The acoustic model directory.
        hmm: PathBuf,
        /// The language model.
        lm: PathBuf,
        /// The dictionary.
        dict: PathBuf,
    },
    /// A text cannot be aligned ([`Decoder::align`]): a word not in the dictionary, no
    /// words, no audio. The decoder is fine.
    #[error("pocketsphinx cannot align the text: {0}")]
    Align(String),
    /// Decoding one utterance failed; the decoder should be dropped.
    #[error("pocketsphinx: {0}")]
    Decode(&'static str),
}
