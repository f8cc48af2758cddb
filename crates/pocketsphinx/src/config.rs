//! Which model files a decoder loads, with which extra arguments, and the cheap checks that
//! run before the C library sees them.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::decoder::{ArgKind, argument_kind};

/// Debian's US English acoustic model directory (`pocketsphinx-en-us`).
pub const DEBIAN_HMM: &str = "/usr/share/pocketsphinx/model/en-us/en-us";
/// Debian's US English language model (`pocketsphinx-en-us`).
pub const DEBIAN_LM: &str = "/usr/share/pocketsphinx/model/en-us/en-us.lm.bin";
/// Debian's US English pronunciation dictionary (`pocketsphinx-en-us`).
pub const DEBIAN_DICT: &str = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict";

/// Files every acoustic model directory has, with the ways each may begin; the mixture
/// weights come as either of [`WEIGHTS`]. The library ends the process (`exit`) on a file it
/// cannot parse, so a file that is not one at all (truncated to nothing, the wrong file) is
/// caught here by its first bytes. Damage further into a file is not.
const HMM_FILES: [(&str, &[&[u8]]); 4] = [
    // Binary, in either byte order, or text (version 0.3).
    ("mdef", &[b"BMDF", b"FDMB", b"0.3"]),
    // SphinxTrain's "s3" parameter files.
    ("means", &[b"s3\n"]),
    ("variances", &[b"s3\n"]),
    ("transition_matrices", &[b"s3\n"]),
];
const WEIGHTS: [&str; 2] = ["sendump", "mixture_weights"];

/// Arguments set otherwise: the model paths are [`Config`]'s fields; logging is off for the
/// whole process (a log file would be reopened under other decoders' feet); the input is
/// always [`SAMPLE_RATE_HZ`](crate::SAMPLE_RATE_HZ); and nothing writes the audio or its
/// features to files of its own, outside the call's folder.
const RESERVED: [(&str, &str); 8] = [
    ("-hmm", "set the acoustic model with `hmm`"),
    ("-lm", "set the language model with `lm`"),
    ("-dict", "set the dictionary with `dict`"),
    ("-logfn", "pocketsphinx's log is off in mediagate"),
    ("-samprate", "the input is always 16 kHz"),
    (
        "-rawlogdir",
        "it would copy every utterance's audio outside the call's folder",
    ),
    (
        "-mfclogdir",
        "it would write every utterance's features outside the call's folder",
    ),
    (
        "-senlogdir",
        "it would write every utterance's scores outside the call's folder",
    ),
];

/// Defaults of this binding that differ from the library's, unless `args` sets them:
/// `-remove_silence no`, because the library's own voice detector drops the frames it thinks
/// silent before the search, which shifts every later word's time (and the caller has cut the
/// utterance already).
pub(crate) const DEFAULTS: [(&str, &str); 1] = [("-remove_silence", "no")];

/// The model set a [`Decoder`](crate::Decoder) loads and its extra arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// The acoustic model directory (`mdef`, `means`, `variances`, …).
    pub hmm: PathBuf,
    /// The language model (`.lm.bin` or ARPA `.lm`).
    pub lm: PathBuf,
    /// The pronunciation dictionary.
    pub dict: PathBuf,
    /// Further decoder arguments, as `pocketsphinx_continuous` takes them: name (`-beam`, or
    /// `beam`) and value (`1e-60`). The binding sets `-remove_silence no` unless they say
    /// otherwise (with the library's default, `yes`, word times are off by the silence it
    /// drops); a few are refused (the model paths, `-logfn`, `-samprate`, the `-*logdir`s).
    /// Front-end arguments that the acoustic model's own `feat.params` sets (`-cmn`,
    /// `-lowerf`, `-upperf`, `-nfilt`, …) are overridden by it: the library reads that file
    /// after the arguments.
    pub args: Vec<(String, String)>,
}

impl Default for Config {
    /// The Debian US English models, no extra arguments.
    fn default() -> Self {
        Config {
            hmm: DEBIAN_HMM.into(),
            lm: DEBIAN_LM.into(),
            dict: DEBIAN_DICT.into(),
            args: Vec::new(),
        }
    }
}

impl Config {
    /// Checks, without loading anything, that every model file is there and readable and
    /// that every extra argument is one the decoder takes, with a value of its type. A few
    /// dozen microseconds: fine at every call's start.
    pub fn check(&self) -> Result<(), Error> {
        self.check_files()?;
        self.arguments().map(drop)
    }

    fn check_files(&self) -> Result<(), Error> {
        let model = |what, path: &Path, reason: String| Error::Model {
            what,
            path: path.to_owned(),
            reason,
        };
        let hmm = "acoustic model";
        if !self.hmm.is_dir() {
            return Err(model(hmm, &self.hmm, "not a directory".into()));
        }
        for (name, headers) in HMM_FILES {
            let path = self.hmm.join(name);
            let start = readable(&path).map_err(|reason| model(hmm, &self.hmm, reason))?;
            if !headers.iter().any(|header| start.starts_with(header)) {
                let reason = format!("{} is not a model file of its kind", path.display());
                return Err(model(hmm, &self.hmm, reason));
            }
        }
        if !WEIGHTS.iter().any(|name| self.hmm.join(name).is_file()) {
            return Err(model(
                hmm,
                &self.hmm,
                "has no sendump or mixture_weights".into(),
            ));
        }
        readable(&self.lm).map_err(|reason| model("language model", &self.lm, reason))?;
        readable(&self.dict).map_err(|reason| model("dictionary", &self.dict, reason))?;
        Ok(())
    }

    /// The extra arguments, names with their dash, each checked.
    pub(crate) fn arguments(&self) -> Result<Vec<(String, &str)>, Error> {
        let mut checked: Vec<(String, &str)> = Vec::with_capacity(self.args.len());
        for (name, value) in &self.args {
            let name = if name.starts_with('-') {
                name.clone()
            } else {
                format!("-{name}")
            };
            let refused = |reason: String| Error::Argument {
                name: name.clone(),
                reason,
            };
            if let Some((_, why)) = RESERVED.iter().find(|(reserved, _)| *reserved == name) {
                return Err(refused((*why).to_owned()));
            }
            if checked.iter().any(|(seen, _)| *seen == name) {
                return Err(refused("given twice".into()));
            }
            let Some(kind) = argument_kind(&name) else {
                return Err(refused(
                    "unknown (see `pocketsphinx_continuous -help` for the arguments)".into(),
                ));
            };
            kind.check(value).map_err(refused)?;
            checked.push((name, value));
        }
        Ok(checked)
    }
}

impl ArgKind {
    /// Whether `value` is one the library would parse as this kind (a little stricter than
    /// its `sscanf`, which takes a leading number and ignores the rest).
    fn check(self, value: &str) -> Result<(), String> {
        let ok = match self {
            ArgKind::Integer => value.trim().parse::<i64>().is_ok(),
            ArgKind::Float => value.trim().parse::<f64>().is_ok(),
            ArgKind::Boolean => ["yes", "no", "true", "false", "1", "0"]
                .iter()
                .any(|b| value.trim().eq_ignore_ascii_case(b)),
            ArgKind::Text => !value.contains('\0'),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("`{value}` is not {}", self.describe()))
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ArgKind::Integer => "an integer",
            ArgKind::Float => "a number",
            ArgKind::Boolean => "yes or no",
            ArgKind::Text => "text without NUL",
        }
    }
}

/// The first bytes of `path`, if it is a file this process can read.
fn readable(path: &Path) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    let mut start = Vec::with_capacity(4);
    file.take(4)
        .read_to_end(&mut start)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(start)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    fn with_args(args: &[(&str, &str)]) -> Config {
        Config {
            args: args
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            ..Config::default()
        }
    }

    #[test]
    fn the_debian_models_pass_the_check() {
        Config::default().check().unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_missing_file_is_named_with_the_packages_to_install() {
        let config = Config {
            lm: "/nonexistent/en-us.lm.bin".into(),
            ..Config::default()
        };
        let message = config
            .check()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("language model /nonexistent/en-us.lm.bin"),
            "{message}"
        );
        assert!(message.contains("apt-get install libpocketsphinx-dev pocketsphinx-en-us"));

        let config = Config {
            hmm: std::env::temp_dir(),
            ..Config::default()
        };
        let message = config
            .check()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("acoustic model"), "{message}");
        assert!(message.contains("mdef"), "{message}");
    }

    #[test]
    fn a_model_file_of_the_wrong_kind_is_refused_before_the_library_sees_it() {
        // The library would end the whole process on this mdef.
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(DEBIAN_HMM).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let config = Config {
            hmm: dir.path().to_owned(),
            ..Config::default()
        };
        assert!(config.check().is_ok());
        std::fs::write(dir.path().join("mdef"), "garbage\n").unwrap();
        let message = config.check().unwrap_err().to_string();
        assert!(message.contains("mdef is not a model file"), "{message}");
        let message = crate::Decoder::new(&config).unwrap_err().to_string();
        assert!(message.contains("mdef is not a model file"), "{message}");
    }

    #[test]
    fn arguments_are_checked_by_name_and_type() {
        let good = with_args(&[
            ("-beam", "1e-60"),
            ("lw", "7"),
            ("bestpath", "no"),
            ("-maxwpf", "10"),
        ]);
        let names: Vec<String> = good
            .arguments()
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["-beam", "-lw", "-bestpath", "-maxwpf"]);
        for (bad, expected) in [
            (("-no_such_thing", "1"), "unknown"),
            (("-maxwpf", "ten"), "not an integer"),
            (("-beam", ""), "not a number"),
            (("-bestpath", "maybe"), "not yes or no"),
            (("-logfn", "/tmp/x"), "log is off"),
            (("hmm", "/tmp"), "`hmm`"),
            (("-samprate", "8000"), "16 kHz"),
            (("rawlogdir", "/tmp"), "outside the call's folder"),
        ] {
            let message = with_args(&[bad])
                .arguments()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(expected), "{bad:?}: {message}");
        }
        let twice = with_args(&[("beam", "1e-50"), ("-beam", "1e-60")]);
        assert!(twice.arguments().is_err());
    }
}
