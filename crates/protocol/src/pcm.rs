//! The audio payload: base64 text on the wire, PCM16 little-endian bytes in memory.
//!
//! Decoding writes straight into a caller-owned [`BytesMut`] (a per-call pool) and hands back a
//! frozen [`Bytes`]; the only copy of the samples is the base64 decode itself.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::{Bytes, BytesMut};

use crate::ProtocolError;

/// Standard alphabet; padding optional on input (some senders strip it), always written on output.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Allocation unit of a decode pool: ~50 frames of 16 kHz audio share one block.
pub const POOL_BLOCK_BYTES: usize = 32 * 1024;

/// Decodes base64 PCM into `pool` and splits the samples off as [`Bytes`].
///
/// `pool` is scratch space owned by one stream: whatever it holds is discarded, and the frames
/// split off it share its blocks (one allocation per [`POOL_BLOCK_BYTES`], reclaimed once every
/// frame of a block has been dropped). `bytes_per_sample` is the size of one sample across all
/// channels (2 for PCM16 mono); a payload that is not a whole number of those is rejected.
pub fn decode_pcm(
    base64_text: &str,
    bytes_per_sample: usize,
    pool: &mut BytesMut,
) -> Result<Bytes, ProtocolError> {
    pool.clear();
    let estimate = base64::decoded_len_estimate(base64_text.len());
    if pool.capacity() < estimate {
        pool.reserve(estimate.max(POOL_BLOCK_BYTES));
    }
    pool.resize(estimate, 0);
    let decoded = match ENGINE.decode_slice(base64_text.as_bytes(), &mut pool[..]) {
        Ok(n) => n,
        Err(e) => {
            pool.clear();
            return Err(ProtocolError::InvalidBase64(e.to_string()));
        }
    };
    if bytes_per_sample == 0 || decoded % bytes_per_sample != 0 {
        pool.clear();
        return Err(ProtocolError::PartialSample {
            bytes: decoded,
            bytes_per_sample,
        });
    }
    pool.truncate(decoded);
    // `split_to` leaves the spare capacity in the pool for the next frame.
    Ok(pool.split_to(decoded).freeze())
}

/// Appends the base64 encoding of `pcm` to `out`.
pub fn encode_pcm(pcm: &[u8], out: &mut String) {
    ENGINE.encode_string(pcm, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_with_and_without_padding() {
        let mut pool = BytesMut::new();
        let mut text = String::new();
        encode_pcm(&[1, 2, 3, 4, 5, 6], &mut text);
        assert_eq!(
            decode_pcm(&text, 2, &mut pool).unwrap()[..],
            [1, 2, 3, 4, 5, 6]
        );
        text.clear();
        encode_pcm(&[1, 2], &mut text);
        let unpadded = text.trim_end_matches('=');
        assert_eq!(decode_pcm(unpadded, 2, &mut pool).unwrap()[..], [1, 2]);
    }

    #[test]
    fn rejections_are_typed_and_the_pool_stays_usable() {
        let mut pool = BytesMut::new();
        assert!(matches!(
            decode_pcm("!!!", 2, &mut pool),
            Err(ProtocolError::InvalidBase64(_))
        ));
        assert!(matches!(
            decode_pcm("AAAA", 2, &mut pool),
            Err(ProtocolError::PartialSample { bytes: 3, .. })
        ));
        assert_eq!(decode_pcm("AAAA", 3, &mut pool).unwrap().len(), 3);
    }

    #[test]
    fn frames_share_one_pool_block() {
        let mut pool = BytesMut::new();
        let mut text = String::new();
        encode_pcm(&[7u8; 640], &mut text);
        let a = decode_pcm(&text, 2, &mut pool).unwrap();
        let b = decode_pcm(&text, 2, &mut pool).unwrap();
        // Consecutive frames sit side by side in the same allocation: no per-frame allocation.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        assert_eq!(&a[..], &b[..]);
    }
}
