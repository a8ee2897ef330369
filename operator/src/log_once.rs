//! Logging a repeated event once per interval per key: a rogue client that
//! retries every second (a speaker with a bad token, a scanner probing the
//! TLS port) is logged when first seen, then quietly counted, so it can
//! neither flood the log nor hide the next, different one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most; past it, entries older than the interval are
/// dropped (a flood of distinct keys cannot grow the map without bound).
const MAX_KEYS: usize = 4096;

#[derive(Debug)]
pub struct LogOnce<K> {
    interval: Duration,
    last: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> LogOnce<K> {
    pub fn new(interval: Duration) -> Self {
        LogOnce {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` should be logged at `now`: not seen, or last logged
    /// an interval or more ago.
    pub fn first(&self, key: K, now: Instant) -> bool {
        // A poisoned lock only means a holder panicked; the map is whole.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < self.interval)
        {
            return false;
        }
        if last.len() >= MAX_KEYS {
            let interval = self.interval;
            last.retain(|_, t| now.duration_since(*t) < interval);
            if last.len() >= MAX_KEYS {
                // Every key is recent: a flood. Log nothing new until it ages.
                return false;
            }
        }
        last.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_logged_once_per_interval_and_others_are_not_held_back() {
        let log = LogOnce::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(log.first("a", t0));
        assert!(!log.first("a", t0 + Duration::from_secs(59)));
        assert!(log.first("b", t0 + Duration::from_secs(1)));
        assert!(log.first("a", t0 + Duration::from_secs(60)));
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let log = LogOnce::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert!(log.first(i, t0));
        }
        assert!(!log.first(MAX_KEYS, t0), "full of recent keys");
        // Once they age, new keys are logged again.
        assert!(log.first(MAX_KEYS, t0 + Duration::from_secs(61)));
        assert!(log.last.lock().unwrap().len() <= 1);
    }
}
