//! Whisper's tokens back into text: its vocabulary is GPT-2's byte-level BPE, where each byte
//! of UTF-8 is written as one printable character. Decoding maps the characters back to bytes.

use std::collections::HashMap;

/// Character → byte, GPT-2's `bytes_to_unicode` inverted: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes are written as U+0100 onwards, in byte order.
pub(crate) struct ByteDecoder {
    bytes: HashMap<char, u8>,
}

impl ByteDecoder {
    pub(crate) fn new() -> Self {
        let printable =
            |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let mut bytes = HashMap::with_capacity(256);
        let mut shifted = 0u32;
        for b in 0..=255u8 {
            let c = if printable(b) {
                char::from(b)
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
            };
            bytes.insert(c, b);
        }
        ByteDecoder { bytes }
    }

    /// The text of `tokens`, without special tokens (`<|…|>`). Bytes that are not valid UTF-8
    /// (a token sequence cut inside a character) become U+FFFD.
    pub(crate) fn decode<S: AsRef<str>>(&self, tokens: &[S]) -> String {
        let mut out = Vec::new();
        for token in tokens {
            let token = token.as_ref();
            if is_special(token) {
                continue;
            }
            for c in token.chars() {
                if let Some(b) = self.bytes.get(&c) {
                    out.push(*b);
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The ids of `tokens` in a CTranslate2 `vocabulary.txt` (one token a line; its line number,
/// from 0, is its id), in the order asked.
pub(crate) fn vocabulary_ids(vocabulary: &str, tokens: &[&str]) -> Result<Vec<usize>, String> {
    tokens
        .iter()
        .map(|token| {
            vocabulary
                .lines()
                .position(|line| line == *token)
                .ok_or_else(|| format!("the vocabulary has no `{token}`"))
        })
        .collect()
}

/// `<|endoftext|>`, `<|0.00|>`, `<|en|>`…
pub(crate) fn is_special(token: &str) -> bool {
    token.starts_with("<|") && token.ends_with("|>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_byte_level_tokens() {
        let d = ByteDecoder::new();
        // "Ġ" is the space byte; "âĢĻ" is U+2019 (’) in UTF-8, byte by byte.
        assert_eq!(
            d.decode(&["Hello", "Ġworld", "âĢĻ", "s", "<|endoftext|>"]),
            "Hello world’s"
        );
        assert_eq!(d.decode(&["<|0.00|>", "Ċ", "Ġ1", ",", "000"]), "\n 1,000");
        assert_eq!(d.bytes.len(), 256);
    }

    #[test]
    fn token_ids_are_line_numbers() {
        let vocabulary = "!\n\"\n<|endoftext|>\n<|startoftranscript|>\n";
        assert_eq!(
            vocabulary_ids(vocabulary, &["<|startoftranscript|>", "!"]),
            Ok(vec![3, 0])
        );
        assert!(vocabulary_ids(vocabulary, &["<|en|>"]).is_err());
    }
}
