//! The call's timeline: where each timestamped frame lands, in time from the call's first
//! frame, with clock anomalies caught.
//!
//! One per call, kept by the pipeline, which stamps every frame with its place
//! ([`AudioFrame::position`](crate::AudioFrame::position)); every consumer (the recorder, the
//! transcriber, DTMF offsets) uses that stamp, so they agree on where anything happened.

use std::time::{Duration, Instant};

use crate::Timestamp;

/// How far timestamps may take the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSettings {
    /// A jump past the furthest point reached larger than this is a clock anomaly, not a
    /// pause: the call is re-anchored instead.
    pub max_gap: Duration,
    /// A jump may not take the timeline further ahead of the real time elapsed since the
    /// first frame than this: so the silence a recorder fills is at most the call's real
    /// duration plus this.
    pub max_ahead: Duration,
}

impl Default for TimelineSettings {
    fn default() -> Self {
        TimelineSettings {
            max_gap: Duration::from_secs(600),
            max_ahead: Duration::from_secs(2),
        }
    }
}

/// What the timeline has caught so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TimelineReport {
    /// Timestamp jumps that were not honoured (too far, or ahead of real time), each
    /// re-anchoring the call.
    pub anomalies: u64,
    /// The time those jumps would have skipped ahead, had they been honoured.
    pub unplaced_ms: u64,
}

/// Places a call's timestamped frames on one timeline.
#[derive(Debug, Clone, Default)]
pub struct CallTimeline {
    settings: TimelineSettings,
    /// Timestamp of the call's first frame.
    origin: Option<Timestamp>,
    /// When that frame arrived, to bound how far the timeline may run ahead of real time.
    origin_wall: Option<Instant>,
    /// Shift applied to every timestamp after anomalies re-anchored the call.
    offset_micros: i64,
    /// The furthest point any frame has reached.
    head_micros: i64,
    report: TimelineReport,
}

impl CallTimeline {
    /// A timeline with these bounds.
    pub fn new(settings: TimelineSettings) -> Self {
        CallTimeline {
            settings,
            ..CallTimeline::default()
        }
    }

    /// Where a frame of `duration` stamped `timestamp`, arriving at `now`, starts on the
    /// timeline.
    ///
    /// The first frame is at zero. Up to `max_gap` behind the head (the furthest point
    /// reached) a timestamp is taken as it is: a late frame of a participant, proven by the
    /// call's other frames. Beyond the head, a jump must be a plausible pause (at most
    /// `max_gap`) and not ahead of the real time since the first frame by more than
    /// `max_ahead`. Anything else is a clock anomaly, ahead or behind: counted, and the whole
    /// call re-anchored so the frame lands at the head, and the frames after it follow on. A
    /// timestamp before the first frame's, within `max_gap`, lands at zero.
    pub fn place(&mut self, timestamp: Timestamp, duration: Duration, now: Instant) -> Duration {
        let origin = *self.origin.get_or_insert(timestamp);
        let wall = *self.origin_wall.get_or_insert(now);
        let frame_micros = micros(duration);
        let mut position = timestamp
            .micros_since(origin)
            .saturating_add(self.offset_micros);
        let real_time = micros(now.saturating_duration_since(wall));
        let max_gap = micros(self.settings.max_gap);
        let jump = position.saturating_sub(self.head_micros);
        let ahead = jump > 0
            && (jump > max_gap
                || position > real_time.saturating_add(micros(self.settings.max_ahead)));
        // A step back further than a plausible late frame (a clock stepped back, or the normal
        // frames after a re-anchored outlier) re-anchors too, so the timeline never stalls.
        let behind = jump < 0 && jump.saturating_neg() > max_gap;
        if ahead || behind {
            // Jitter of less than a frame is re-anchored too (the timeline follows real
            // time), but is no anomaly worth counting.
            if jump.saturating_abs() >= frame_micros {
                self.report.anomalies += 1;
                if ahead {
                    self.report.unplaced_ms = self
                        .report
                        .unplaced_ms
                        .saturating_add(u64::try_from(jump / 1_000).unwrap_or(0));
                }
            }
            self.offset_micros = self.offset_micros.saturating_sub(jump);
            position = self.head_micros;
        }
        let position = position.max(0);
        self.head_micros = self.head_micros.max(position.saturating_add(frame_micros));
        Duration::from_micros(u64::try_from(position).unwrap_or(0))
    }

    /// The furthest point any frame has reached; `None` before the first.
    pub fn head(&self) -> Option<Duration> {
        self.origin?;
        Some(Duration::from_micros(
            u64::try_from(self.head_micros).unwrap_or(0),
        ))
    }

    /// The anomalies caught so far.
    pub fn report(&self) -> TimelineReport {
        self.report
    }
}

/// `duration` in microseconds, saturating.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    const T0: i64 = 1_790_000_000_000_000;
    const FRAME: Duration = Duration::from_millis(20);

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_micros(T0 + ms * 1_000)
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    #[test]
    fn frames_at_real_time_land_where_their_timestamps_say() {
        let mut timeline = CallTimeline::new(TimelineSettings::default());
        let start = Instant::now();
        for i in 0..100 {
            let now = start + Duration::from_millis(i as u64 * 20);
            assert_eq!(ms(timeline.place(at(i * 20), FRAME, now)), i as u64 * 20);
        }
        // A late joiner's first frame 6 s in, at real time: placed at 6 s.
        let now = start + Duration::from_secs(6);
        assert_eq!(ms(timeline.place(at(6_000), FRAME, now)), 6_000);
        assert_eq!(timeline.head(), Some(Duration::from_millis(6_020)));
        assert_eq!(timeline.report(), TimelineReport::default());
    }

    #[test]
    fn a_real_pause_is_kept_and_one_ahead_of_real_time_is_not() {
        let mut timeline = CallTimeline::new(TimelineSettings::default());
        let start = Instant::now();
        timeline.place(at(0), FRAME, start);
        // 30 s of nothing, in timestamps and in real time: a pause.
        let later = start + Duration::from_secs(30);
        assert_eq!(ms(timeline.place(at(30_000), FRAME, later)), 30_000);
        assert_eq!(timeline.report().anomalies, 0);
        // 30 s in timestamps while 1 s passes: an anomaly, placed at the head.
        let mut timeline = CallTimeline::new(TimelineSettings::default());
        timeline.place(at(0), FRAME, start);
        let soon = start + Duration::from_secs(1);
        assert_eq!(ms(timeline.place(at(30_000), FRAME, soon)), 20);
        assert_eq!(
            timeline.report(),
            TimelineReport {
                anomalies: 1,
                unplaced_ms: 29_980
            }
        );
        // The call goes on from there: the next frame follows on.
        assert_eq!(ms(timeline.place(at(30_020), FRAME, soon)), 40);
    }

    #[test]
    fn bogus_jumps_cannot_run_the_timeline_ahead_of_real_time() {
        let settings = TimelineSettings {
            max_gap: Duration::from_secs(600),
            max_ahead: Duration::from_secs(2),
        };
        let mut timeline = CallTimeline::new(settings);
        let start = Instant::now();
        // Each frame claims to be a minute after the last while 20 ms of real time passes.
        let n = 200;
        for i in 0..n {
            let now = start + Duration::from_millis(i as u64 * 20);
            let placed = timeline.place(at(i * 60_000), FRAME, now);
            assert!(
                placed <= Duration::from_millis(i as u64 * 20 + 2_000),
                "{placed:?}"
            );
        }
        let real = Duration::from_millis((n as u64 - 1) * 20);
        assert!(timeline.head().unwrap() <= real + Duration::from_secs(2) + FRAME);
        let report = timeline.report();
        assert_eq!(report.anomalies, n as u64 - 1);
        // A minute per anomaly, less the frame that reached it.
        assert_eq!(report.unplaced_ms, (n as u64 - 1) * (60_000 - 20));
        // A jump past the gap limit is an anomaly even at real time.
        let mut timeline = CallTimeline::new(TimelineSettings {
            max_gap: Duration::from_secs(5),
            ..settings
        });
        timeline.place(at(0), FRAME, start);
        let much_later = start + Duration::from_secs(60);
        assert_eq!(ms(timeline.place(at(60_000), FRAME, much_later)), 20);
        assert_eq!(timeline.report().anomalies, 1);
    }

    #[test]
    fn the_frames_after_an_outlier_follow_on_and_a_clock_stepped_back_does_not_stall() {
        let mut timeline = CallTimeline::new(TimelineSettings::default());
        let start = Instant::now();
        for i in 0..100 {
            timeline.place(
                at(i * 20),
                FRAME,
                start + Duration::from_millis(i as u64 * 20),
            );
        }
        // One frame stamped an hour ahead: re-anchored at the head (2 s).
        let now = start + Duration::from_millis(2_000);
        assert_eq!(ms(timeline.place(at(3_600_000), FRAME, now)), 2_000);
        // The normal frames after it are an hour "behind": re-anchored once, then they follow.
        for i in 0..50 {
            let now = start + Duration::from_millis(2_020 + i as u64 * 20);
            let placed = timeline.place(at(2_000 + i * 20), FRAME, now);
            assert_eq!(ms(placed), 2_020 + i as u64 * 20, "frame {i}");
        }
        assert_eq!(timeline.report().anomalies, 2);
        // The platform's clock steps back an hour: the call goes on from where it was.
        let now = start + Duration::from_millis(3_020);
        assert_eq!(ms(timeline.place(at(3_000 - 3_600_000), FRAME, now)), 3_020);
        assert_eq!(ms(timeline.place(at(3_020 - 3_600_000), FRAME, now)), 3_040);
        assert_eq!(timeline.report().anomalies, 3);
    }

    #[test]
    fn year_9999_and_the_past_neither_overflow_nor_go_negative() {
        let mut timeline = CallTimeline::new(TimelineSettings::default());
        let start = Instant::now();
        timeline.place(at(0), FRAME, start);
        let far = Timestamp::parse_rfc3339("9999-01-01T00:00:00Z").unwrap();
        assert_eq!(ms(timeline.place(far, FRAME, start)), 20);
        assert_eq!(timeline.report().anomalies, 1);
        // The epoch, far behind: an anomaly too, placed at the head.
        let past = Timestamp::parse_rfc3339("1970-01-01T00:00:00Z").unwrap();
        assert_eq!(ms(timeline.place(past, FRAME, start)), 40);
        assert_eq!(timeline.head(), Some(Duration::from_millis(60)));
        // A frame a little before the first one (jitter) lands at zero.
        let mut timeline = CallTimeline::new(TimelineSettings::default());
        timeline.place(at(0), FRAME, start);
        assert_eq!(timeline.place(at(-10), FRAME, start), Duration::ZERO);
    }
}
