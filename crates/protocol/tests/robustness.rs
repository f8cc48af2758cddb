//! The parser never panics, whatever the bytes: every vector truncated at every position, and
//! tens of thousands of deterministic mutations of each, go through parse and decode.
//! (A stand-in for a coverage-guided fuzzer, which needs a nightly toolchain this project avoids.)

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::path::Path;

use bytes::BytesMut;
use mediagate_protocol::{InboundMessage, parse_inbound, parse_outbound};

fn exercise(text: &str, pool: &mut BytesMut) {
    if let Ok(InboundMessage::AudioData(frame)) = parse_inbound(text) {
        for bytes_per_sample in [0, 1, 2, 4] {
            let _ = frame.decode_pcm(bytes_per_sample, pool);
        }
    }
    if let Ok(message) = parse_inbound(text) {
        let _ = parse_inbound(&message.to_json());
    }
    let _ = parse_outbound(text);
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"-1",
    b"1e999",
    b"\\u0000",
    b"\\ud800",
    b"\"kind\"",
    b"AudioData",
    b"==",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
];

#[test]
fn no_input_makes_the_parser_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut pool = BytesMut::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cases = 0u64;
    for entry in std::fs::read_dir(dir).unwrap() {
        let original = std::fs::read(entry.unwrap().path()).unwrap();
        for cut in 0..=original.len() {
            if let Ok(text) = std::str::from_utf8(&original[..cut]) {
                exercise(text, &mut pool);
                cases += 1;
            }
        }
        for _ in 0..3_000 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => {
                        bytes.remove(at.min(bytes.len().saturating_sub(1)));
                    }
                    2 => {
                        let insert = INTERESTING[rng.below(INTERESTING.len())];
                        bytes.splice(at..at, insert.iter().copied());
                    }
                    _ => {
                        let len = rng.below(64);
                        let end = (at + len).min(bytes.len());
                        let chunk = bytes[at..end].to_vec();
                        bytes.splice(at..at, chunk);
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            exercise(&text, &mut pool);
            cases += 1;
        }
    }
    assert!(cases > 70_000, "only {cases} cases ran");
}
