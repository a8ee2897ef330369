//! Whether a sampled figure (a process's RSS, its open file descriptors)
//! grows over a soak: the least-squares slope, and the medians of the
//! first and last quarters after a warm-up, so one spike or one dip cannot
//! make or hide a trend.

/// A figure sampled over time: (seconds since the start, value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub samples: Vec<(f64, f64)>,
}

/// What a series did after its warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trend {
    /// Least-squares slope, in units per hour.
    pub per_hour: f64,
    /// Median of the first and of the last quarter of the samples.
    pub first: f64,
    pub last: f64,
    /// Seconds of samples the figures cover.
    pub span: f64,
}

impl Series {
    pub fn push(&mut self, at: f64, value: f64) {
        self.samples.push((at, value));
    }

    /// The trend of the samples after the first `warmup` fraction (caches
    /// filling, allocator arenas growing to their working size); None with
    /// fewer than 8 samples left.
    pub fn trend(&self, warmup: f64) -> Option<Trend> {
        let skip = (self.samples.len() as f64 * warmup).ceil() as usize;
        let s = self.samples.get(skip..)?;
        if s.len() < 8 {
            return None;
        }
        let quarter = s.len() / 4;
        let values = |part: &[(f64, f64)]| part.iter().map(|(_, v)| *v).collect::<Vec<_>>();
        Some(Trend {
            per_hour: slope(s) * 3600.0,
            first: median(values(&s[..quarter])),
            last: median(values(&s[s.len() - quarter..])),
            span: s[s.len() - 1].0 - s[0].0,
        })
    }
}

impl Trend {
    /// Grows: the last quarter's median above the first's by more than
    /// `tolerance`, with a rising slope — both, so noise around a flat line
    /// is not a trend.
    pub fn grows(&self, tolerance: f64) -> bool {
        self.last - self.first > tolerance && self.per_hour > 0.0
    }
}

/// Least-squares slope of value over time, per second.
fn slope(s: &[(f64, f64)]) -> f64 {
    let n = s.len() as f64;
    let (mx, my) = (
        s.iter().map(|(x, _)| x).sum::<f64>() / n,
        s.iter().map(|(_, y)| y).sum::<f64>() / n,
    );
    let num: f64 = s.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = s.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Series {
        let mut s = Series::default();
        for i in 0..100 {
            let t = f64::from(i) * 10.0;
            s.push(t, f(t));
        }
        s
    }

    #[test]
    fn a_flat_line_with_noise_does_not_grow() {
        let s = series(|t| 100.0 + if (t as i64 / 10) % 2 == 0 { 3.0 } else { -3.0 });
        let t = s.trend(0.2).unwrap();
        assert!(t.per_hour.abs() < 5.0, "{t:?}");
        assert!(!t.grows(5.0), "{t:?}");
    }

    #[test]
    fn a_steady_leak_grows_at_its_rate() {
        // One unit every 10 s: 360 an hour.
        let s = series(|t| 50.0 + t / 10.0);
        let t = s.trend(0.2).unwrap();
        assert!((t.per_hour - 360.0).abs() < 1e-6, "{t:?}");
        assert!(t.grows(5.0));
    }

    #[test]
    fn a_warm_up_climb_then_flat_is_not_growth() {
        let s = series(|t| if t < 150.0 { t } else { 150.0 });
        let t = s.trend(0.2).unwrap();
        assert!(!t.grows(1.0), "{t:?}");
    }

    #[test]
    fn one_spike_at_the_end_is_not_a_trend() {
        let s = series(|t| if t > 980.0 { 500.0 } else { 100.0 });
        assert!(!s.trend(0.2).unwrap().grows(5.0));
    }

    #[test]
    fn too_few_samples_give_no_trend() {
        let mut s = Series::default();
        for i in 0..9 {
            s.push(f64::from(i), 1.0);
        }
        assert_eq!(s.trend(0.2), None);
    }
}
