//! Quality and stream-continuity tests of `StreamResampler`, through its public API: a 1 kHz
//! sine keeps its frequency, level and shape; lengths add up over a minute; pauses and odd chunk
//! sizes change nothing.

#![allow(clippy::unwrap_used)] // a panic in a test helper is a failed assertion

use std::f64::consts::TAU;

use bytes::BytesMut;
use mediagate_audio::{AudioFormat, StreamResampler};

/// Test tone: 1 kHz at half full scale.
const TONE_HZ: f64 = 1_000.0;
const TONE_AMPLITUDE: f64 = 0.5 * 32_767.0;

/// Round trip 16 → 24 → 16 kHz against the original, after delay compensation. Measured: the
/// steady state comes back bit-exact (the error stays under half an LSB, so rounding to PCM16
/// restores every sample), an infinite SNR.
const ROUND_TRIP_MIN_SNR_DB: f64 = 80.0;
/// One conversion against the ideal (unquantized) sine at the output rate. PCM16 rounding alone
/// caps this near 92 dB for this tone; measured 89.7 to 92.9 dB.
const ONE_WAY_MIN_SNR_DB: f64 = 80.0;
/// Level may change by at most this much.
const MAX_LEVEL_CHANGE_DB: f64 = 0.5;

/// `n` samples of the test tone at `rate_hz`, starting at sample index `start`.
fn tone(rate_hz: u32, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|k| {
            let t = k as f64 / f64::from(rate_hz);
            (TONE_AMPLITUDE * (TAU * TONE_HZ * t).sin()).round() as i16
        })
        .collect()
}

/// The ideal tone at `rate_hz`, lagging by `delay` samples, as real numbers.
fn ideal_tone(rate_hz: u32, delay: usize, n: usize) -> Vec<f64> {
    (0..n)
        .map(|k| {
            let t = (k as f64 - delay as f64) / f64::from(rate_hz);
            TONE_AMPLITUDE * (TAU * TONE_HZ * t).sin()
        })
        .collect()
}

fn to_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn to_samples(bytes: &[u8]) -> Vec<i16> {
    assert_eq!(bytes.len() % 2, 0, "output split a sample");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn to_f64(samples: &[i16]) -> Vec<f64> {
    samples.iter().map(|&s| f64::from(s)).collect()
}

/// Feeds `input` in chunks of `chunk_samples` samples, one `process` call each, no flush.
fn process_in_chunks(r: &mut StreamResampler, input: &[i16], chunk_samples: usize) -> Vec<i16> {
    let mut out = BytesMut::new();
    for chunk in input.chunks(chunk_samples) {
        r.process(&to_bytes(chunk), &mut out);
    }
    to_samples(&out)
}

/// Same as [`process_in_chunks`] in 20 ms frames, then flush.
fn resample_whole(from_hz: u32, to_hz: u32, input: &[i16]) -> (Vec<i16>, usize) {
    let from = AudioFormat::mono(from_hz);
    let mut r = StreamResampler::new(from, to_hz).unwrap();
    let mut out = BytesMut::new();
    for frame in input.chunks(from.frame_samples()) {
        r.process(&to_bytes(frame), &mut out);
    }
    r.flush(&mut out);
    (to_samples(&out), r.delay_samples())
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

fn level_change_db(reference: &[f64], actual: &[f64]) -> f64 {
    20.0 * (rms(actual) / rms(reference)).log10()
}

/// Signal-to-error ratio of `actual` against `reference`, in dB.
fn snr_db(reference: &[f64], actual: &[f64]) -> f64 {
    assert_eq!(reference.len(), actual.len());
    let signal: f64 = reference.iter().map(|v| v * v).sum();
    let error: f64 = reference
        .iter()
        .zip(actual)
        .map(|(r, a)| (r - a) * (r - a))
        .sum();
    10.0 * (signal / error).log10()
}

/// Frequency from rising zero crossings, each placed by linear interpolation.
fn frequency_hz(x: &[f64], rate_hz: u32) -> f64 {
    let crossings: Vec<f64> = x
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, w)| i as f64 + w[0] / (w[0] - w[1]))
        .collect();
    let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
    (crossings.len() - 1) as f64 * f64::from(rate_hz) / (last - first)
}

/// Largest jump between neighbouring samples.
fn max_step(x: &[i16]) -> i32 {
    x.windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap()
}

/// The steady-state part of a stream: past the start-up transient, before the flushed tail.
fn steady(x: &[f64], skip: usize, len: usize) -> &[f64] {
    &x[skip..skip + len]
}

#[test]
fn round_trip_16k_24k_16k_keeps_frequency_level_and_shape() {
    let input = tone(16_000, 0, 16_000 * 5);
    let (up, up_delay) = resample_whole(16_000, 24_000, &input);
    let (down, down_delay) = resample_whole(24_000, 16_000, &up);
    // 16 kHz samples of lag in total: up's delay brought back to 16 kHz, plus down's.
    assert_eq!(up_delay % 3, 0);
    let delay = up_delay * 2 / 3 + down_delay;
    assert_eq!(delay, 320, "20 ms round trip at the ACS rates");

    let reference = to_f64(&input);
    let skip = 1_600;
    let len = reference.len() - 2 * skip;
    let expected = steady(&reference, skip, len);
    let down = to_f64(&down[delay..]);
    let actual = steady(&down, skip, len);

    let snr = snr_db(expected, actual);
    let level = level_change_db(expected, actual);
    let freq = frequency_hz(actual, 16_000);
    let max_error = expected
        .iter()
        .zip(actual)
        .map(|(e, a)| (e - a).abs())
        .fold(0.0, f64::max);
    assert!(
        snr > ROUND_TRIP_MIN_SNR_DB,
        "round-trip SNR {snr:.1} dB <= {ROUND_TRIP_MIN_SNR_DB} dB (max error {max_error} LSB)"
    );
    assert!(
        level.abs() < MAX_LEVEL_CHANGE_DB,
        "level changed by {level:.3} dB"
    );
    assert!(
        (freq - TONE_HZ).abs() < 0.1,
        "frequency moved to {freq:.3} Hz"
    );
    eprintln!(
        "round trip 16k→24k→16k: SNR {snr:.1} dB, max error {max_error} LSB, \
         level {level:+.4} dB, {freq:.3} Hz"
    );
}

#[test]
fn one_way_conversions_keep_frequency_level_and_shape() {
    for (from_hz, to_hz) in [
        (16_000, 24_000),
        (24_000, 16_000),
        (16_000, 8_000),
        (16_000, 48_000),
    ] {
        let input = tone(from_hz, 0, from_hz as usize * 3);
        let (out, delay) = resample_whole(from_hz, to_hz, &input);
        let ideal = ideal_tone(to_hz, delay, out.len());
        let skip = delay + to_hz as usize / 10;
        let len = to_hz as usize * 2;
        let expected = steady(&ideal, skip, len);
        let out = to_f64(&out);
        let actual = steady(&out, skip, len);

        let snr = snr_db(expected, actual);
        let level = level_change_db(expected, actual);
        let freq = frequency_hz(actual, to_hz);
        let name = format!("{from_hz}→{to_hz}");
        assert!(
            snr > ONE_WAY_MIN_SNR_DB,
            "{name}: SNR {snr:.1} dB <= {ONE_WAY_MIN_SNR_DB} dB"
        );
        assert!(
            level.abs() < MAX_LEVEL_CHANGE_DB,
            "{name}: level changed by {level:.3} dB"
        );
        assert!(
            (freq - TONE_HZ).abs() < 0.1,
            "{name}: frequency moved to {freq:.3} Hz"
        );
        eprintln!("{name}: delay {delay}, SNR {snr:.1} dB, level {level:+.4} dB, {freq:.3} Hz");
    }
}

#[test]
fn a_minute_of_frames_comes_out_at_exactly_the_ratio() {
    for (from_hz, to_hz) in [(16_000, 24_000), (24_000, 16_000)] {
        let from = AudioFormat::mono(from_hz);
        let frame = to_bytes(&tone(from_hz, 0, from.frame_samples()));
        let mut r = StreamResampler::new(from, to_hz).unwrap();
        let mut out = BytesMut::new();
        let mut out_samples = 0;
        for _ in 0..3_000 {
            r.process(&frame, &mut out);
            // One frame in, one frame out, every time.
            assert_eq!(out.len(), AudioFormat::mono(to_hz).frame_bytes());
            out_samples += out.len() / 2;
            out.clear();
        }
        let in_samples = 3_000 * from.frame_samples();
        let expected = (in_samples as f64 * r.ratio()) as usize;
        assert_eq!(out_samples, expected, "{from_hz}→{to_hz}");

        r.flush(&mut out);
        let total = out_samples + out.len() / 2;
        assert_eq!(total, expected + r.delay_samples(), "{from_hz}→{to_hz}");
    }
}

#[test]
fn pauses_between_bursts_drop_and_duplicate_nothing() {
    // The caller stops calling `process` during a pause: no silence is fed, and the resampler,
    // which has no clock, must carry on from exactly where it was. The pauses are listed for the
    // record; whatever their length, the output must equal an uninterrupted run bit for bit.
    let pauses_ms = [50, 200, 1_000, 2_000];
    let from = AudioFormat::mono(16_000);
    let frame = from.frame_samples();
    let bursts_frames = [7, 1, 13, 50, 3];
    let total_frames: usize = bursts_frames.iter().sum();
    let input = tone(16_000, 0, total_frames * frame);

    let mut continuous = StreamResampler::new(from, 24_000).unwrap();
    let reference = process_in_chunks(&mut continuous, &input, frame);

    let mut paused = StreamResampler::new(from, 24_000).unwrap();
    let mut out = Vec::new();
    let mut burst_edges = Vec::new();
    let mut next = 0;
    for (i, frames) in bursts_frames.iter().enumerate() {
        let burst = &input[next * frame..(next + frames) * frame];
        out.extend(process_in_chunks(&mut paused, burst, frame));
        next += frames;
        burst_edges.push(out.len());
        // Whole frames in: every sample due is out before the pause, none is held back.
        let pause = pauses_ms.get(i).map_or(0, |ms| *ms);
        assert_eq!(
            out.len(),
            next * frame * 3 / 2,
            "before a pause of {pause} ms"
        );
    }

    assert_eq!(out.len(), input.len() * 3 / 2, "length across pauses");
    assert_eq!(out, reference, "output differs from an uninterrupted run");

    // And the signal itself is smooth across each burst edge: no jump larger than a 1 kHz sine
    // makes anywhere within a burst.
    let delay = paused.delay_samples();
    let in_burst = max_step(&out[delay + 480..delay + 960]);
    for &edge in &burst_edges[..burst_edges.len() - 1] {
        let across = max_step(&out[edge - 8..edge + 8]);
        assert!(
            across <= in_burst + 2,
            "step {across} across the burst edge at {edge}, {in_burst} within a burst"
        );
    }
}

#[test]
fn odd_chunk_sizes_give_the_same_output_as_whole_frames() {
    let input = tone(16_000, 0, 16_000 * 2 + 123);
    let from = AudioFormat::mono(16_000);
    let mut by_frame = StreamResampler::new(from, 24_000).unwrap();
    let mut reference = BytesMut::new();
    for frame in input.chunks(from.frame_samples()) {
        by_frame.process(&to_bytes(frame), &mut reference);
    }
    by_frame.flush(&mut reference);

    let bytes = to_bytes(&input);
    // Chunks in bytes: 7, 333 and 1000 samples, and 641 bytes, which splits samples.
    for chunk_bytes in [14, 666, 2_000, 641] {
        let mut r = StreamResampler::new(from, 24_000).unwrap();
        let mut out = BytesMut::new();
        for chunk in bytes.chunks(chunk_bytes) {
            r.process(chunk, &mut out);
            // Never more than what whole blocks give, never a block behind.
            assert_eq!(out.len() % 2, 0);
        }
        r.flush(&mut out);
        assert_eq!(out.len(), reference.len(), "chunks of {chunk_bytes} bytes");
        assert!(out == reference, "chunks of {chunk_bytes} bytes differ");
    }
}

#[test]
fn stereo_channels_are_resampled_independently() {
    let left = tone(16_000, 0, 16_000);
    let right: Vec<i16> = tone(16_000, 77, 16_000).iter().map(|s| s / 3).collect();
    let stereo: Vec<i16> = left
        .iter()
        .zip(&right)
        .flat_map(|(&l, &r)| [l, r])
        .collect();

    let format = AudioFormat::new(16_000, 2).unwrap();
    let mut r = StreamResampler::new(format, 24_000).unwrap();
    let mut out = BytesMut::new();
    for frame in stereo.chunks(format.frame_samples() * 2) {
        r.process(&to_bytes(frame), &mut out);
    }
    r.flush(&mut out);
    let out = to_samples(&out);

    let (mono_left, _) = resample_whole(16_000, 24_000, &left);
    let (mono_right, _) = resample_whole(16_000, 24_000, &right);
    let out_left: Vec<i16> = out.iter().step_by(2).copied().collect();
    let out_right: Vec<i16> = out.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(out_left, mono_left);
    assert_eq!(out_right, mono_right);
}
