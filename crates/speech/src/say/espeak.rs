//! Text to PCM with the `espeak-ng` program: one process per text, the text on its stdin, a
//! WAV on its stdout. Blocking, bounded in time and size; no shell.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use mediagate_audio::Clip;
use mediagate_audio::wav::{self, WavError};

/// The program run when none is configured: found on `PATH`.
pub const DEFAULT_PROGRAM: &str = "espeak-ng";
/// The voice when none is configured.
pub const DEFAULT_VOICE: &str = "en-us";
/// The speed when none is configured, in words per minute (espeak-ng's own default is 175).
pub const DEFAULT_SPEED_WPM: u32 = 160;
/// The speeds espeak-ng accepts, in words per minute.
pub const SPEED_WPM_RANGE: std::ops::RangeInclusive<u32> = 80..=450;
/// The longest text spoken at once, in bytes of UTF-8 (a few minutes of speech).
pub const MAX_TEXT_BYTES: usize = 4_096;

/// A synthesis that takes longer is killed (espeak-ng speaks ~100× faster than real time).
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most WAV bytes read from espeak-ng: ten minutes at 22,050 Hz (more than any text of
/// [`MAX_TEXT_BYTES`] takes to say).
const MAX_OUTPUT_BYTES: u64 = 10 * 60 * 22_050 * 2 + 1_024;
/// The most of espeak-ng's stderr kept for an error message.
const MAX_STDERR_BYTES: u64 = 4_096;

/// Text could not be spoken.
#[derive(Debug, thiserror::Error)]
pub enum SayError {
    /// The program is not there: install it or name it.
    #[error(
        "cannot run `{}`: {source}; install it (`apt-get install espeak-ng`) or set `espeak_ng` \
         to its path",
        program.display()
    )]
    NotInstalled {
        /// The program that was run.
        program: PathBuf,
        /// Why it could not be started.
        source: std::io::Error,
    },
    /// The program ran and failed (an unknown voice, most often).
    #[error("`{}` failed ({status}): {message}", program.display())]
    Failed {
        /// The program that was run.
        program: PathBuf,
        /// Its exit status.
        status: String,
        /// The first line of what it wrote to stderr.
        message: String,
    },
    /// It did not finish in time, or wrote more audio than any text should take: killed.
    #[error("`{}` {reason}: killed", program.display())]
    Runaway {
        /// The program that was run.
        program: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The text cannot be spoken as given (empty, too long, a NUL byte).
    #[error("{0}")]
    Text(String),
    /// The program's output is not the audio expected (mono PCM16 WAV).
    #[error("`{}` wrote no usable audio: {reason}", program.display())]
    Output {
        /// The program that was run.
        program: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Talking to the program failed.
    #[error("`{}`: {source}", program.display())]
    Io {
        /// The program that was run.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How espeak-ng speaks: which voice, how fast, and which program runs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Voice {
    /// An espeak-ng voice (`en-us`, `de`, `en+f3`…; `espeak-ng --voices` lists them).
    pub name: String,
    /// Words per minute, within [`SPEED_WPM_RANGE`].
    pub speed_wpm: u32,
    /// The espeak-ng program: a path, or a name looked up on `PATH`.
    pub program: PathBuf,
}

impl Default for Voice {
    fn default() -> Self {
        Voice::new(DEFAULT_VOICE, DEFAULT_SPEED_WPM)
    }
}

impl Voice {
    /// `name` at `speed_wpm`, spoken by the `espeak-ng` on `PATH`.
    pub fn new(name: &str, speed_wpm: u32) -> Self {
        Voice {
            name: name.to_owned(),
            speed_wpm,
            program: PathBuf::from(DEFAULT_PROGRAM),
        }
    }

    /// The same voice, spoken by `program` (a path to espeak-ng).
    #[must_use]
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Checks the name and speed without running anything; the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_+.".contains(c);
        let starts_well = self.name.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !starts_well || self.name.len() > 64 || !self.name.chars().all(allowed) {
            return Err(format!(
                "voice `{}` is not an espeak-ng voice name (letters, digits, `-_+.`; \
                 `espeak-ng --voices` lists them)",
                self.name
            ));
        }
        if !SPEED_WPM_RANGE.contains(&self.speed_wpm) {
            return Err(format!(
                "speed_wpm {} is outside {}..={}",
                self.speed_wpm,
                SPEED_WPM_RANGE.start(),
                SPEED_WPM_RANGE.end()
            ));
        }
        Ok(())
    }

    /// Speaks `text`: runs espeak-ng once and returns its audio.
    ///
    /// **Blocking**: it waits for a process (a few tens of milliseconds for a sentence, at most
    /// 30 s before the process is killed). Call it from a blocking processor
    /// ([`Execution::Blocking`](mediagate_pipeline::Execution::Blocking)), a thread of your
    /// own or `tokio::task::spawn_blocking`, never on an async runtime thread.
    pub fn synthesize(&self, text: &str) -> Result<Clip, SayError> {
        check_text(text).map_err(SayError::Text)?;
        self.check().map_err(SayError::Text)?;
        let wav = self.run(text)?;
        let output = |reason: String| SayError::Output {
            program: self.program.clone(),
            reason,
        };
        let clip = match wav::parse(Bytes::from(wav), wav::Accept::Pcm16) {
            Err(WavError::Empty) => return Err(output(format!("no samples for {text:?}"))),
            parsed => parsed.map_err(|e| output(e.to_string()))?,
        };
        if clip.format.channels() != 1 {
            return Err(output(format!(
                "{} channels; expected mono 16-bit PCM",
                clip.format.channels()
            )));
        }
        Ok(clip)
    }

    /// Runs espeak-ng on `text` and returns what it wrote to stdout (a WAV).
    fn run(&self, text: &str) -> Result<Vec<u8>, SayError> {
        let io = |source| SayError::Io {
            program: self.program.clone(),
            source,
        };
        let mut command = Command::new(&self.program);
        command
            .args(["--stdout", "--stdin", "-b", "1", "-v", &self.name, "-s"])
            .arg(self.speed_wpm.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A program file that was just written can be "busy" for a moment: another thread's
        // fork may still hold its write descriptor until that child execs. Retry briefly.
        let mut tries = 0;
        let mut child = loop {
            match command.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 10 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                spawned => {
                    break spawned.map_err(|source| SayError::NotInstalled {
                        program: self.program.clone(),
                        source,
                    })?;
                }
            }
        };
        // espeak-ng reads all of stdin before it speaks, and the text is smaller than a pipe's
        // buffer, so this never blocks. A failed write (it exited early) shows in its status.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(text.as_bytes());
        }
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (done, output) = std::sync::mpsc::sync_channel(1);
        let end = |child: &mut std::process::Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        // The reader ends when the process does (its pipes close), killed or not.
        let reader = std::thread::Builder::new()
            .name("espeak-ng-output".to_owned())
            .spawn(move || {
                let _ = done.send(read_output(stdout, stderr));
            });
        if let Err(e) = reader {
            end(&mut child);
            return Err(io(e));
        }
        let runaway = |child: &mut std::process::Child, reason: String| {
            end(child);
            SayError::Runaway {
                program: self.program.clone(),
                reason,
            }
        };
        let (wav, stderr) = match output.recv_timeout(TIMEOUT) {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                end(&mut child);
                return Err(io(e));
            }
            Err(_) => {
                return Err(runaway(
                    &mut child,
                    format!("took more than {} s", TIMEOUT.as_secs()),
                ));
            }
        };
        if wav.len() as u64 > MAX_OUTPUT_BYTES {
            return Err(runaway(
                &mut child,
                format!("wrote more than {MAX_OUTPUT_BYTES} bytes"),
            ));
        }
        let status = child.wait().map_err(io)?;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            let message = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(SayError::Failed {
                program: self.program.clone(),
                status: status.to_string(),
                message: message.trim().to_owned(),
            });
        }
        Ok(wav)
    }
}

/// Reads stdout to its end (or just past [`MAX_OUTPUT_BYTES`]), then the start of stderr.
fn read_output(
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut wav = Vec::new();
    if let Some(stdout) = stdout {
        stdout.take(MAX_OUTPUT_BYTES + 1).read_to_end(&mut wav)?;
    }
    let mut message = Vec::new();
    if let Some(stderr) = stderr.filter(|_| wav.len() as u64 <= MAX_OUTPUT_BYTES) {
        stderr.take(MAX_STDERR_BYTES).read_to_end(&mut message)?;
    }
    Ok((wav, message))
}

/// Speaks `text` in `voice` at `speed_wpm` with the `espeak-ng` on `PATH`: a shorthand for
/// [`Voice::synthesize`]. **Blocking**, see there.
pub fn synthesize(text: &str, voice: &str, speed_wpm: u32) -> Result<Clip, SayError> {
    Voice::new(voice, speed_wpm).synthesize(text)
}

/// Whether `text` can be handed to espeak-ng.
pub(crate) fn check_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the text to say is empty".to_owned());
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "the text to say is {} bytes long, at most {MAX_TEXT_BYTES}",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err("the text to say contains a NUL character".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    #[test]
    fn texts_and_voices_are_checked_before_anything_runs() {
        for bad in ["", "  \n", "a\0b"] {
            assert!(check_text(bad).is_err(), "{bad:?}");
        }
        assert!(check_text(&"a".repeat(MAX_TEXT_BYTES + 1)).is_err());
        assert!(check_text("Hello.").is_ok());
        for (name, speed) in [("en us", 160), ("-x", 160), ("", 160), ("en-us", 79)] {
            assert!(Voice::new(name, speed).check().is_err(), "{name} {speed}");
        }
        assert!(Voice::new("en+f3", 450).check().is_ok());
    }

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let voice = Voice::default().with_program("/nonexistent/espeak-ng");
        let err = voice.synthesize("Hello.").unwrap_err();
        assert!(matches!(err, SayError::NotInstalled { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("apt-get install espeak-ng") && text.contains("/nonexistent/espeak-ng"),
            "{text}"
        );
    }
}
