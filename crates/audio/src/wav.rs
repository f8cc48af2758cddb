//! The one WAV reader: a RIFF/WAVE file or buffer into a [`Clip`] of PCM16.
//!
//! [`read`] takes a file, refusing one larger than a bound the caller gives before reading it;
//! [`parse`] takes bytes already in memory (a synthesizer's output). Either reads PCM16 only
//! ([`Accept::Pcm16`]), or also converts 8-, 24- and 32-bit integer and 32-bit float samples
//! to PCM16 ([`Accept::AnyToPcm16`]). Any channel count and rate an [`AudioFormat`] allows.
//!
//! The sizes in the header are not trusted beyond what is there: a data chunk that is shorter
//! than it says (a file cut short, or a WAV written to a pipe, whose writer could not go back to
//! fill in the sizes) is read to its end, in whole samples. Blocking: call [`read`] off async
//! threads.
//!
//! ```
//! use mediagate_audio::{AudioFormat, wav};
//!
//! # let dir = std::env::temp_dir().join(format!("mediagate-wav-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("prompt.wav");
//! # let mut bytes = b"RIFF\x28\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\x04\0\0\0".to_vec();
//! # bytes.extend_from_slice(&[1, 0, 2, 0]);
//! # std::fs::write(&path, bytes)?;
//! let clip = wav::read(&path, 64 << 20, wav::Accept::Pcm16)?;
//! assert_eq!(clip.format, AudioFormat::mono(16_000));
//! assert_eq!(clip.samples().collect::<Vec<_>>(), [1, 2]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use thiserror::Error;

use crate::{AudioFormat, Clip, FormatError};

/// `WAVE_FORMAT_PCM`: integer samples.
const TAG_PCM: u16 = 1;
/// `WAVE_FORMAT_IEEE_FLOAT`: float samples.
const TAG_FLOAT: u16 = 3;
/// `WAVE_FORMAT_EXTENSIBLE`: the real tag is the first two bytes of the sub-format GUID.
const TAG_EXTENSIBLE: u16 = 0xfffe;

/// Which sample encodings a read takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// 16-bit integer PCM only; anything else is [`WavError::NotPcm16`].
    Pcm16,
    /// 8-, 16-, 24- or 32-bit integer PCM, or 32-bit float, converted to PCM16 (the top 16
    /// bits of wider integers; floats scaled, rounded and clamped).
    AnyToPcm16,
}

/// A WAV that cannot be read into a [`Clip`]. The caller names the file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WavError {
    /// The file could not be opened or read.
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    /// The file is larger than the caller allows: refused before it is read.
    #[error("it is {bytes} bytes long, more than the {max_bytes} allowed")]
    TooLong {
        /// The file's size (or, when it does not say, a lower bound).
        bytes: u64,
        /// The bound given to [`read`].
        max_bytes: u64,
    },
    /// Not a RIFF/WAVE file at all.
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    /// A RIFF/WAVE file whose chunks are not usable.
    #[error("malformed WAV: {0}")]
    Malformed(&'static str),
    /// Samples other than 16-bit integer PCM, read with [`Accept::Pcm16`].
    #[error("{found} samples; only 16-bit integer PCM is read")]
    NotPcm16 {
        /// What the file holds (`24-bit integer PCM`, `32-bit float`…).
        found: String,
    },
    /// Samples this reader cannot convert.
    #[error(
        "{found} samples are not supported (8-, 16-, 24- or 32-bit integer PCM, or 32-bit float)"
    )]
    Unsupported {
        /// What the file holds.
        found: String,
    },
    /// A sample rate or channel count outside what an [`AudioFormat`] allows.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The data chunk holds no whole sample.
    #[error("it holds no samples")]
    Empty,
}

/// Reads the WAV file at `path` into a clip, refusing one larger than `max_bytes` (by its size
/// on disk, before reading it, and again while reading in case the size was not known).
///
/// **Blocking** file I/O.
pub fn read(path: &Path, max_bytes: u64, accept: Accept) -> Result<Clip, WavError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > max_bytes {
        return Err(WavError::TooLong {
            bytes: size,
            max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(WavError::TooLong {
            bytes: bytes.len() as u64,
            max_bytes,
        });
    }
    parse(Bytes::from(bytes), accept)
}

/// The clip as a whole PCM16 WAV file: a 44-byte header, then its samples. `None` when the
/// clip is too long for a WAV's 32-bit sizes.
pub fn encode(clip: &Clip) -> Option<Vec<u8>> {
    let data = u32::try_from(clip.pcm.len()).ok()?;
    let riff = data.checked_add(36)?;
    let channels = clip.format.channels();
    let rate = clip.format.sample_rate_hz();
    let block = 2 * u32::from(channels);
    let mut wav = Vec::with_capacity(44 + clip.pcm.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&riff.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * block).to_le_bytes());
    wav.extend_from_slice(&(block as u16).to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data.to_le_bytes());
    wav.extend_from_slice(&clip.pcm);
    Some(wav)
}

/// Writes the clip to `path` as a PCM16 WAV ([`encode`]). **Blocking** file I/O.
pub fn write(path: &Path, clip: &Clip) -> std::io::Result<()> {
    let wav = encode(clip)
        .ok_or_else(|| std::io::Error::other("the clip is too long for a WAV file (4 GiB)"))?;
    std::fs::write(path, wav)
}

/// Parses a whole WAV held in memory. PCM16 samples are shared with `bytes`, not copied.
pub fn parse(bytes: Bytes, accept: Accept) -> Result<Clip, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWav);
    }
    let mut fmt = None;
    let mut at = 12usize;
    while let (Some(id), Some(size)) = (bytes.get(at..at + 4), u32_at(&bytes, at + 4)) {
        let body = at + 8;
        if id == b"fmt " {
            fmt = Some(Fmt::parse(bytes.get(body..).unwrap_or_default())?);
        } else if id == b"data" {
            let fmt = fmt.ok_or(WavError::Malformed("data chunk before the fmt chunk"))?;
            let end = body.saturating_add(size as usize).min(bytes.len());
            return fmt.decode(bytes.slice(body.min(end)..end), accept);
        }
        at = body
            .saturating_add(size as usize)
            .saturating_add(size as usize & 1);
    }
    Err(WavError::Malformed("no data chunk"))
}

/// How samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Integer PCM of this many bits (8 is unsigned, the rest signed).
    Int(u16),
    /// IEEE float of this many bits.
    Float(u16),
    /// Another format tag.
    Other(u16),
}

/// What the fmt chunk says.
#[derive(Debug, Clone, Copy)]
struct Fmt {
    encoding: Encoding,
    format: AudioFormat,
}

impl Fmt {
    fn parse(body: &[u8]) -> Result<Fmt, WavError> {
        let short = WavError::Malformed("short fmt chunk");
        let (Some(mut tag), Some(channels), Some(rate), Some(bits)) = (
            u16_at(body, 0),
            u16_at(body, 2),
            u32_at(body, 4),
            u16_at(body, 14),
        ) else {
            return Err(short);
        };
        if tag == TAG_EXTENSIBLE {
            tag = u16_at(body, 24).ok_or(short)?;
        }
        let encoding = match tag {
            TAG_PCM => Encoding::Int(bits),
            TAG_FLOAT => Encoding::Float(bits),
            other => Encoding::Other(other),
        };
        Ok(Fmt {
            encoding,
            format: AudioFormat::new(rate, channels)?,
        })
    }

    /// The data chunk's samples as a PCM16 clip.
    fn decode(self, data: Bytes, accept: Accept) -> Result<Clip, WavError> {
        let found = || match self.encoding {
            Encoding::Int(bits) => format!("{bits}-bit integer PCM"),
            Encoding::Float(bits) => format!("{bits}-bit float"),
            Encoding::Other(tag) => format!("format tag {tag:#06x}"),
        };
        let width = match (self.encoding, accept) {
            (Encoding::Int(16), _) => 2,
            (_, Accept::Pcm16) => return Err(WavError::NotPcm16 { found: found() }),
            (Encoding::Int(bits @ (8 | 24 | 32)), _) | (Encoding::Float(bits @ 32), _) => {
                usize::from(bits / 8)
            }
            _ => return Err(WavError::Unsupported { found: found() }),
        };
        let block = width * usize::from(self.format.channels());
        let whole = data.len() / block * block;
        if whole == 0 {
            return Err(WavError::Empty);
        }
        let pcm = match self.encoding {
            Encoding::Int(16) => data.slice(..whole),
            encoding => {
                let convert = |b: &[u8]| -> i16 {
                    match encoding {
                        Encoding::Int(8) => (i16::from(b[0]) - 128) << 8,
                        Encoding::Float(_) => {
                            let value = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                            // `as` saturates (NaN becomes 0); the clamp states the intent.
                            (value * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
                        }
                        // The top 16 bits of a 24- or 32-bit sample.
                        _ => i16::from_le_bytes([b[width - 2], b[width - 1]]),
                    }
                };
                data[..whole]
                    .chunks_exact(width)
                    .flat_map(|b| convert(b).to_le_bytes())
                    .collect::<Vec<u8>>()
                    .into()
            }
        };
        Ok(Clip::new(self.format, pcm))
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    /// A WAV with a LIST chunk of odd size before fmt, and `data_size` as the data chunk's
    /// declared size.
    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data_size: u32, data: &[u8]) -> Vec<u8> {
        let mut bytes = b"RIFF\xff\xff\xff\x7fWAVE".to_vec();
        bytes.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd size, padded
        bytes.extend_from_slice(b"fmt \x10\0\0\0");
        bytes.extend_from_slice(&tag.to_le_bytes());
        bytes.extend_from_slice(&channels.to_le_bytes());
        bytes.extend_from_slice(&rate.to_le_bytes());
        let block = channels * bits / 8;
        bytes.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        bytes.extend_from_slice(&block.to_le_bytes());
        bytes.extend_from_slice(&bits.to_le_bytes());
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&data_size.to_le_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn pcm16(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn mono16(rate: u32, data_size: u32, samples: &[i16]) -> Bytes {
        Bytes::from(wav(1, 1, rate, 16, data_size, &pcm16(samples)))
    }

    #[test]
    fn a_piped_wav_runs_to_its_end_whatever_its_sizes_say() {
        let clip = parse(mono16(22_050, 0x7fff_f000, &[1, -2, 3]), Accept::Pcm16).unwrap();
        assert_eq!(clip.format, AudioFormat::mono(22_050));
        assert_eq!(clip.samples().collect::<Vec<_>>(), [1, -2, 3]);
        // A true size is honoured; a dangling half sample is dropped.
        let clip = parse(mono16(16_000, 2, &[7, 8]), Accept::Pcm16).unwrap();
        assert_eq!(&clip.pcm[..], &[7, 0]);
        let mut odd = wav(1, 1, 16_000, 16, u32::MAX, &pcm16(&[7]));
        odd.push(1);
        let clip = parse(Bytes::from(odd), Accept::Pcm16).unwrap();
        assert_eq!(&clip.pcm[..], &[7, 0]);
    }

    #[test]
    fn an_encoded_clip_reads_back_exactly_and_its_header_is_strict() {
        let clip = Clip::new(
            AudioFormat::new(24_000, 2).unwrap(),
            Bytes::from(pcm16(&[1, -2, 3, i16::MIN, i16::MAX, 0])),
        );
        let bytes = encode(&clip).unwrap();
        assert_eq!(bytes.len(), 44 + 12);
        // Sizes as a strict reader wants them: RIFF = file - 8, data = the samples.
        assert_eq!(u32_at(&bytes, 4), Some(48));
        assert_eq!(u32_at(&bytes, 40), Some(12));
        assert_eq!(parse(Bytes::from(bytes), Accept::Pcm16).unwrap(), clip);
        let dir = std::env::temp_dir().join(format!("mediagate-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clip.wav");
        write(&path, &clip).unwrap();
        assert_eq!(read(&path, 1 << 20, Accept::Pcm16).unwrap(), clip);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stereo_keeps_whole_interleaved_samples() {
        let bytes = wav(1, 2, 48_000, 16, 10, &pcm16(&[1, 2, 3, 4, 5]));
        let clip = parse(Bytes::from(bytes), Accept::Pcm16).unwrap();
        assert_eq!(clip.format, AudioFormat::new(48_000, 2).unwrap());
        assert_eq!(clip.samples().collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(clip.sample_count(), 2);
    }

    #[test]
    fn other_encodings_convert_to_pcm16_when_asked() {
        /// Mono 8 kHz samples of `bits` bits (format `tag`) read as PCM16.
        fn converted(tag: u16, bits: u16, data: &[u8]) -> Vec<i16> {
            let bytes = wav(tag, 1, 8_000, bits, data.len() as u32, data);
            let clip = parse(Bytes::from(bytes), Accept::AnyToPcm16).unwrap();
            clip.samples().collect()
        }
        let int24: Vec<u8> = [0x12_3456i32, -0x40_0000, 5]
            .iter()
            .flat_map(|s| s.to_le_bytes()[..3].to_vec())
            .collect();
        assert_eq!(converted(1, 24, &int24), [0x1234, -0x4000, 0]);
        let err = parse(Bytes::from(wav(1, 1, 8_000, 24, 9, &int24)), Accept::Pcm16);
        let err = err.unwrap_err();
        assert!(err.to_string().contains("24-bit integer PCM"), "{err}");
        // 8-bit samples are unsigned, centred on 128.
        assert_eq!(converted(1, 8, &[192, 0]), [0x4000, -0x8000]);
        let int32: Vec<u8> = [i32::MAX.to_le_bytes(), i32::MIN.to_le_bytes()].concat();
        assert_eq!(converted(1, 32, &int32), [i16::MAX, i16::MIN]);
        let float: Vec<u8> = [0.5f32, -1.5, 1.0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(converted(3, 32, &float), [16_384, i16::MIN, i16::MAX]);
    }

    #[test]
    fn extensible_headers_are_read_by_their_sub_format() {
        let mut bytes = b"RIFF\0\0\0\0WAVEfmt \x28\0\0\0".to_vec();
        bytes.extend_from_slice(&0xfffeu16.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&16_000u32.to_le_bytes());
        bytes.extend_from_slice(&32_000u32.to_le_bytes());
        bytes.extend_from_slice(&[2, 0, 16, 0, 22, 0, 16, 0, 4, 0, 0, 0]);
        bytes.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71,
        ]);
        bytes.extend_from_slice(b"data\x02\0\0\0\x05\0");
        let clip = parse(Bytes::from(bytes), Accept::Pcm16).unwrap();
        assert_eq!(clip.samples().collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn garbage_and_empty_files_are_refused_saying_why() {
        assert!(matches!(
            parse(Bytes::new(), Accept::Pcm16),
            Err(WavError::NotWav)
        ));
        assert!(matches!(
            parse(Bytes::from_static(b"RIFF\0\0\0\0WAVE"), Accept::Pcm16),
            Err(WavError::Malformed("no data chunk"))
        ));
        let mut truncated = wav(1, 1, 22_050, 16, 4, &pcm16(&[0, 0]));
        truncated.truncate(40);
        assert!(parse(Bytes::from(truncated), Accept::Pcm16).is_err());
        assert!(matches!(
            parse(mono16(16_000, 0, &[]), Accept::Pcm16),
            Err(WavError::Empty)
        ));
        assert!(matches!(
            parse(
                Bytes::from(wav(1, 0, 16_000, 16, 2, &[0, 0])),
                Accept::Pcm16
            ),
            Err(WavError::Format(FormatError::Channels(0)))
        ));
        let mulaw = Bytes::from(wav(7, 1, 8_000, 8, 2, &[0, 0]));
        let err = parse(mulaw, Accept::AnyToPcm16).unwrap_err();
        assert!(matches!(err, WavError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn a_file_over_the_bound_is_refused_before_it_is_read() {
        let dir = std::env::temp_dir().join(format!("mediagate-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("long.wav");
        std::fs::write(&path, mono16(16_000, 2_000, &[3; 1_000])).unwrap();
        let err = read(&path, 1_000, Accept::Pcm16).unwrap_err();
        assert!(
            matches!(err, WavError::TooLong { bytes, max_bytes: 1_000 } if bytes > 2_000),
            "{err}"
        );
        let clip = read(&path, 1 << 20, Accept::Pcm16).unwrap();
        assert_eq!(clip.sample_count(), 1_000);
        assert!(matches!(
            read(&dir.join("missing.wav"), 1 << 20, Accept::Pcm16),
            Err(WavError::Io(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
