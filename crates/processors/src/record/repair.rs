//! Making a WAV whose header lies valid again: after `kill -9` (the header still says what the
//! last checkpoint wrote, or 0) or a failed write (a torn last sample), the sizes are rewritten
//! from the data actually in the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What [`repair_wav`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RepairOutcome {
    /// The header already matched the data: the file was not touched.
    Valid {
        /// Bytes in the data chunk.
        data_bytes: u64,
    },
    /// The RIFF and data sizes were rewritten from the file's length.
    Repaired {
        /// Bytes in the data chunk now.
        data_bytes: u64,
        /// What the header said before.
        header_said: u64,
        /// Bytes of a torn last sample frame cut from the end.
        truncated_bytes: u64,
    },
}

impl RepairOutcome {
    /// Bytes in the file's data chunk (after the repair, if any).
    pub fn data_bytes(&self) -> u64 {
        match *self {
            RepairOutcome::Valid { data_bytes } | RepairOutcome::Repaired { data_bytes, .. } => {
                data_bytes
            }
        }
    }
}

/// Rewrites the RIFF and data chunk sizes of the WAV at `path` from the file's actual length,
/// cut to a whole sample frame, for files left by a killed process or a full disk. A file
/// whose header already matches its data is left untouched. The data chunk must be the last
/// (as in every file mediagate writes); a file with no readable `fmt ` and `data` chunk
/// headers is an [`io::ErrorKind::InvalidData`] error, and is not modified.
pub fn repair_wav(path: impl AsRef<Path>) -> io::Result<RepairOutcome> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    repair_file(&mut file)
}

/// Largest chunk header region scanned for `fmt ` and `data`.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// [`repair_wav`] on an open file (read and write).
pub(crate) fn repair_file(file: &mut File) -> io::Result<RepairOutcome> {
    let len = file.metadata()?.len();
    let mut head = Vec::with_capacity(1024);
    file.seek(SeekFrom::Start(0))?;
    Read::by_ref(file)
        .take(MAX_HEADER_BYTES as u64)
        .read_to_end(&mut head)?;
    let layout = Layout::parse(&head)?;
    let data_offset = layout.data_offset as u64;
    let available = len.saturating_sub(data_offset);
    let riff_said = u64::from(le_u32(&head, 4));
    let block = u64::from(layout.block_align);
    // Valid: the whole file is one RIFF, and the data chunk fits in it in whole frames.
    if riff_said + 8 == len && layout.data_said <= available && layout.data_said % block == 0 {
        return Ok(RepairOutcome::Valid {
            data_bytes: layout.data_said,
        });
    }
    let max_data = (u64::from(u32::MAX) - (data_offset - 8)) / block * block;
    let data_bytes = (available / block * block).min(max_data);
    let end = data_offset + data_bytes;
    if end < len {
        file.set_len(end)?;
    }
    let riff = u32::try_from(end - 8).map_err(|_| invalid("too large for a WAV"))?;
    let data = u32::try_from(data_bytes).map_err(|_| invalid("too large for a WAV"))?;
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&riff.to_le_bytes())?;
    file.seek(SeekFrom::Start(data_offset - 4))?;
    file.write_all(&data.to_le_bytes())?;
    file.sync_data()?;
    Ok(RepairOutcome::Repaired {
        data_bytes,
        header_said: layout.data_said,
        truncated_bytes: len - end,
    })
}

/// Where a WAV's data chunk starts, what its header says, and its sample frame size.
struct Layout {
    data_offset: usize,
    data_said: u64,
    block_align: u16,
}

impl Layout {
    fn parse(head: &[u8]) -> io::Result<Layout> {
        if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
            return Err(invalid("not a RIFF/WAVE file"));
        }
        let mut at = 12;
        let mut block_align = None;
        while at + 8 <= head.len() {
            let id = &head[at..at + 4];
            let size = le_u32(head, at + 4);
            let body = at + 8;
            if id == b"data" {
                let block_align = block_align.ok_or_else(|| invalid("no fmt chunk before data"))?;
                return Ok(Layout {
                    data_offset: body,
                    data_said: u64::from(size),
                    block_align,
                });
            }
            if id == b"fmt " {
                if body + 14 > head.len() {
                    return Err(invalid("torn fmt chunk"));
                }
                let align = u16::from_le_bytes([head[body + 12], head[body + 13]]);
                if align == 0 {
                    return Err(invalid("fmt chunk with a block align of 0"));
                }
                block_align = Some(align);
            }
            // Chunks are padded to an even size.
            let size = usize::try_from(size).map_err(|_| invalid("chunk too large"))?;
            at = body.saturating_add(size).saturating_add(size & 1);
        }
        Err(invalid("no data chunk header"))
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("cannot repair WAV: {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let format = mediagate_audio::AudioFormat::new(rate, channels).unwrap();
        let clip = mediagate_audio::Clip::from_samples(format, samples);
        mediagate_audio::wav::write(path, &clip).unwrap();
    }

    fn read(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path)
            .unwrap()
            .into_samples::<i16>()
            .map(Result::unwrap)
            .collect()
    }

    /// Sets both sizes in the header to 0, as a process killed before its first checkpoint
    /// leaves them.
    fn zero_sizes(path: &Path) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_header_that_says_nothing_is_rewritten_from_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.wav");
        let samples: Vec<i16> = (0..16_000).map(|i| (i % 1000) as i16).collect();
        write(&path, 16_000, 1, &samples);
        zero_sizes(&path);
        assert_eq!(
            repair_wav(&path).unwrap(),
            RepairOutcome::Repaired {
                data_bytes: 32_000,
                header_said: 0,
                truncated_bytes: 0
            }
        );
        assert_eq!(read(&path), samples);
        // Now valid: untouched the second time.
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(
            repair_wav(&path).unwrap(),
            RepairOutcome::Valid { data_bytes: 32_000 }
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn a_torn_last_sample_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torn.wav");
        // Stereo: a sample frame is 4 bytes; 3 stray bytes of a fourth frame follow.
        write(&path, 24_000, 2, &[1, 2, 3, 4, 5, 6]);
        zero_sizes(&path);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[7, 0, 8]).unwrap();
        drop(file);
        let outcome = repair_wav(&path).unwrap();
        assert_eq!(
            outcome,
            RepairOutcome::Repaired {
                data_bytes: 12,
                header_said: 0,
                truncated_bytes: 3
            }
        );
        assert_eq!(read(&path), [1, 2, 3, 4, 5, 6]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 12);
    }

    #[test]
    fn what_is_not_a_wav_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        std::fs::write(&path, b"RIFF\0\0").unwrap();
        let e = repair_wav(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read(&path).unwrap(), b"RIFF\0\0");
    }
}
