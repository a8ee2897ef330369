//! How the controller retries writes the apiserver refused: per object,
//! exponentially from 1 s to 60 s with jitter (so a systemic failure does
//! not hammer the apiserver in lockstep), and a failure many objects share
//! is logged once per interval with a count, the per-object detail at debug
//! level, so the log stays readable.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// First retry delay.
pub const FIRST: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX: Duration = Duration::from_secs(60);

/// Consecutive failures per object, and when each may be tried again.
#[derive(Debug)]
pub struct Backoff<K> {
    failures: HashMap<K, (u32, Instant)>,
}

impl<K: Hash + Eq> Default for Backoff<K> {
    fn default() -> Self {
        Backoff {
            failures: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Backoff<K> {
    /// Records a failure of `key` at `now`; returns the delay before its
    /// next try: 1 s, 2 s, 4 s … up to [`MAX`], stretched by up to 20 %.
    pub fn failed(&mut self, key: K, now: Instant) -> Duration {
        let entry = self.failures.entry(key).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        let delay = barelb_runtime::jittered(
            FIRST.saturating_mul(1 << (entry.0 - 1).min(6)).min(MAX),
            0.2,
        );
        entry.1 = now + delay;
        delay
    }

    /// Whether `key` may be written at `now`: it is not failing, or its
    /// delay is over. Anything else that wants it written meanwhile waits
    /// for the retry, so the apiserver sees one try per delay.
    pub fn due(&self, key: &K, now: Instant) -> bool {
        self.failures.get(key).is_none_or(|(_, at)| now >= *at)
    }

    /// `key` was written: its next failure starts from [`FIRST`] again.
    pub fn succeeded(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// `key` is gone (a deleted Service): nothing to retry, and it no
    /// longer counts as failing.
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Objects currently failing.
    pub fn failing(&self) -> usize {
        self.failures.len()
    }
}

/// Failures of one kind of write, summarised once per interval.
#[derive(Debug)]
pub struct FailureLog {
    what: &'static str,
    /// Failed writes are retried (else dropped, which the line says).
    retried: bool,
    interval: Duration,
    last: Option<Instant>,
    count: u64,
    example: Option<String>,
}

impl FailureLog {
    /// Failures of writes that are retried with backoff.
    pub fn new(what: &'static str, interval: Duration) -> Self {
        FailureLog {
            what,
            retried: true,
            interval,
            last: None,
            count: 0,
            example: None,
        }
    }

    /// Failures of writes that are given up (events: the next change
    /// brings its own).
    pub fn not_retried(what: &'static str, interval: Duration) -> Self {
        FailureLog {
            retried: false,
            ..Self::new(what, interval)
        }
    }

    /// Records one failure (`object`, `error`); returns the summary line to
    /// log when an interval has passed since the last one (the first
    /// failure is reported at once).
    pub fn record(&mut self, object: &str, error: &str, now: Instant) -> Option<String> {
        tracing::debug!(what = self.what, object, error, "write failed");
        self.count += 1;
        self.example
            .get_or_insert_with(|| format!("{object}: {error}"));
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        let then = if self.retried {
            format!("retrying each with backoff up to {MAX:?}")
        } else {
            "not retried".to_string()
        };
        let line = format!(
            "{} {} write(s) failed in the last {:?} (e.g. {}); {then}",
            std::mem::take(&mut self.count),
            self.what,
            self.interval,
            self.example.take().unwrap_or_default(),
        );
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_object_to_a_cap_and_resets_on_success() {
        let mut b = Backoff::default();
        let now = Instant::now();
        for secs in [1u64, 2, 4, 8, 16, 32, 60, 60, 60] {
            let base = Duration::from_secs(secs);
            let d = b.failed("a", now);
            assert!(d >= base && d < base.mul_f64(1.2), "{d:?} for {base:?}");
        }
        assert!(!b.due(&"a", now));
        assert!(b.due(&"a", now + MAX.mul_f64(1.2)));
        assert!(b.due(&"b", now));
        assert!(b.failed("b", now) < FIRST.mul_f64(1.2));
        b.succeeded(&"a");
        assert!(b.due(&"a", now));
        assert!(b.failed("a", now) < FIRST.mul_f64(1.2));
        assert_eq!(b.failing(), 2);
    }

    #[test]
    fn a_shared_failure_is_one_line_per_interval_with_a_count() {
        let mut log = FailureLog::new("Service status", Duration::from_secs(10));
        let t0 = Instant::now();
        let first = log.record("ns/a", "forbidden", t0).unwrap();
        assert!(
            first.starts_with("1 Service status write(s) failed"),
            "{first}"
        );
        let mut lines = 0;
        // 2,000 failures over 9.9 s: nothing more until the interval is up.
        for i in 0..2_000u64 {
            let at = t0 + Duration::from_millis(i * 5);
            lines += usize::from(log.record(&format!("ns/s{i}"), "forbidden", at).is_some());
        }
        assert_eq!(lines, 0);
        let next = log
            .record("ns/z", "forbidden", t0 + Duration::from_secs(10))
            .unwrap();
        assert!(
            next.starts_with("2001 Service status write(s) failed"),
            "{next}"
        );
        assert!(next.contains("e.g. ns/s0: forbidden"), "{next}");
    }
}
