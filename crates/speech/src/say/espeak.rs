//! Text to PCM with the `espeak-ng` program: one process per text, the text on its stdin, a
//! WAV on its stdout. Blocking, bounded in time and size; no shell.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use mediagate_audio::AudioFormat;
use mediagate_pipeline::processor::Playback;
use mediagate_pipeline::{Context, PlayError};

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
    pub fn synthesize(&self, text: &str) -> Result<SpokenClip, SayError> {
        check_text(text).map_err(SayError::Text)?;
        self.check().map_err(SayError::Text)?;
        let wav = self.run(text)?;
        let (format, pcm) = parse_wav(&wav).map_err(|reason| SayError::Output {
            program: self.program.clone(),
            reason,
        })?;
        if pcm.is_empty() {
            return Err(SayError::Output {
                program: self.program.clone(),
                reason: format!("no samples for {text:?}"),
            });
        }
        Ok(SpokenClip::new(pcm, format))
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
pub fn synthesize(text: &str, voice: &str, speed_wpm: u32) -> Result<SpokenClip, SayError> {
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

/// The format and PCM bytes of a mono PCM16 WAV. espeak-ng writing to a pipe cannot go back
/// to fill in sizes, so the RIFF and data sizes are not trusted: the data runs to the end.
fn parse_wav(bytes: &[u8]) -> Result<(AudioFormat, &[u8]), String> {
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(format!("not a WAV ({} bytes)", bytes.len()));
    }
    let mut format = None;
    let mut at = 12;
    while let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_at(at + 4)) {
        let body = at + 8;
        if id == b"fmt " {
            let fields = (
                u16_at(body),
                u16_at(body + 2),
                u32_at(body + 4),
                u16_at(body + 14),
            );
            let (Some(tag), Some(channels), Some(rate), Some(bits)) = fields else {
                return Err("short fmt chunk".to_owned());
            };
            if (tag, channels, bits) != (1, 1, 16) {
                return Err(format!(
                    "format {tag}, {channels} channels, {bits} bits; expected mono 16-bit PCM"
                ));
            }
            format = Some(AudioFormat::new(rate, 1).map_err(|e| e.to_string())?);
        } else if id == b"data" {
            let format = format.ok_or("data before fmt")?;
            let data = bytes.get(body..).unwrap_or_default();
            let len = data.len().min(usize::try_from(size).unwrap_or(usize::MAX));
            return Ok((format, &data[..len / 2 * 2]));
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Err("no data chunk".to_owned())
}

/// Spoken audio: PCM16 LE mono at the synthesizer's rate (22,050 Hz for espeak-ng's own
/// voices), padded with silence to whole 20 ms frames so the call's resampler takes all of it
/// in ([`Context::play_audio`]). Cheap to clone (the samples are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpokenClip {
    pcm: Bytes,
    format: AudioFormat,
    /// Samples of speech, before the padding.
    spoken_samples: usize,
}

impl SpokenClip {
    /// A clip of `pcm` (PCM16 LE mono in `format`), padded to whole 20 ms frames.
    fn new(pcm: &[u8], format: AudioFormat) -> Self {
        let frame = format.frame_bytes();
        let mut padded = Vec::with_capacity(pcm.len().div_ceil(frame) * frame);
        padded.extend_from_slice(pcm);
        padded.resize(pcm.len().div_ceil(frame) * frame, 0);
        SpokenClip {
            pcm: Bytes::from(padded),
            format,
            spoken_samples: pcm.len() / 2,
        }
    }

    /// The clip's own format (mono, the synthesizer's rate).
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// PCM16 LE samples, padded with silence to whole 20 ms frames.
    pub fn pcm(&self) -> &Bytes {
        &self.pcm
    }

    /// The samples as spoken, without the padding.
    pub fn samples(&self) -> impl Iterator<Item = i16> + '_ {
        self.pcm
            .chunks_exact(2)
            .take(self.spoken_samples)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
    }

    /// How long the speech lasts (without the padding).
    pub fn duration(&self) -> Duration {
        Duration::from_micros(
            self.format
                .micros_for_samples(self.spoken_samples as u64)
                .unsigned_abs(),
        )
    }

    /// How long it plays: the padded clip, in whole 20 ms frames.
    pub fn padded_duration(&self) -> Duration {
        let frames = self.pcm.len() / self.format.frame_bytes().max(1);
        Duration::from_millis(20 * frames as u64)
    }

    /// Queues the clip into the call, after whatever is queued already: converted to the call's
    /// format by the context, and when it is resampled followed by one frame of silence that
    /// pushes its end out of the resampler.
    pub fn play(&self, ctx: &mut Context) -> Result<(), PlayError> {
        ctx.play_audio(&self.pcm, self.format)?;
        if self.format.sample_rate_hz() != ctx.call().format.sample_rate_hz() {
            ctx.play_audio(&vec![0; self.format.frame_bytes()], self.format)?;
        }
        Ok(())
    }

    /// Queues the clip through a [`Playback`] handle (a processor's own task: a voice bot),
    /// as one whole stream.
    pub fn play_on(&self, playback: &mut Playback) -> Result<(), PlayError> {
        playback.play_audio(&self.pcm, self.format)?;
        playback.end_stream()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    fn wav(rate: u32, data_size: u32, samples: &[i16]) -> Vec<u8> {
        let mut bytes = b"RIFF\xff\xff\xff\x7fWAVE".to_vec();
        bytes.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd size, padded
        bytes.extend_from_slice(b"fmt \x10\0\0\0\x01\0\x01\0");
        bytes.extend_from_slice(&rate.to_le_bytes());
        bytes.extend_from_slice(&(rate * 2).to_le_bytes());
        bytes.extend_from_slice(b"\x02\0\x10\0data");
        bytes.extend_from_slice(&data_size.to_le_bytes());
        bytes.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        bytes
    }

    #[test]
    fn a_piped_wav_runs_to_its_end_whatever_its_sizes_say() {
        let bytes = wav(22_050, 0x7fff_f000, &[1, -2, 3]);
        let (format, pcm) = parse_wav(&bytes).unwrap();
        assert_eq!(format, AudioFormat::mono(22_050));
        assert_eq!(pcm, &[1, 0, 0xfe, 0xff, 3, 0]);
        // A true size is honoured; a dangling half sample is dropped.
        let bytes = wav(16_000, 2, &[7, 8]);
        assert_eq!(parse_wav(&bytes).unwrap().1, &[7, 0]);
        let mut odd = wav(16_000, 0xffff_ffff, &[7]);
        odd.push(1);
        assert_eq!(parse_wav(&odd).unwrap().1, &[7, 0]);
    }

    #[test]
    fn other_audio_and_garbage_are_refused() {
        assert!(parse_wav(b"").is_err());
        assert!(
            parse_wav(b"RIFF\0\0\0\0WAVE")
                .unwrap_err()
                .contains("no data")
        );
        let mut stereo = wav(22_050, 4, &[0, 0]);
        stereo[34] = 2; // channels: after RIFF, a 12-byte LIST chunk, the fmt header, the tag
        assert!(parse_wav(&stereo).unwrap_err().contains("2 channels"));
        let mut truncated = wav(22_050, 4, &[0, 0]);
        truncated.truncate(40);
        assert!(parse_wav(&truncated).is_err());
    }

    #[test]
    fn clips_are_padded_to_whole_frames_and_know_their_length() {
        let pcm: Vec<u8> = (0..500i16).flat_map(|s| s.to_le_bytes()).collect();
        let clip = SpokenClip::new(&pcm, AudioFormat::mono(22_050));
        assert_eq!(clip.pcm().len(), 2 * 441 * 2);
        assert_eq!(clip.samples().count(), 500);
        assert_eq!(clip.samples().last(), Some(499));
        assert_eq!(clip.duration(), Duration::from_micros(22_675));
        assert_eq!(clip.padded_duration(), Duration::from_millis(40));
    }

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
