//! Measurement helpers: latency histograms (HDR, nanoseconds), their percentile
//! summary, error counts by protocol code, and the duration syntax of the flags.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram tracks; larger samples are clamped to it.
pub const MAX_TRACKED_NS: u64 = 100_000_000_000;

/// An empty latency histogram: 1 ns to 100 s at three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).expect("static histogram bounds are valid")
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    /// Summarises `h` (nanosecond samples).
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        if h.is_empty() {
            return Self {
                count: 0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
                mean_ms: 0.0,
            };
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e6,
        }
    }

    /// One line: `p50 0.123 ms  p90 …`.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// A histogram shared by many tasks, split in shards so that they rarely meet on
/// one lock. Tasks record samples in local batches and add them here.
pub struct ShardedHistogram {
    // std Mutex: held only to add a batch of samples, never across an `.await`.
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl ShardedHistogram {
    /// `n` empty shards.
    pub fn new(n: usize) -> Self {
        Self {
            shards: (0..n.max(1))
                .map(|_| Mutex::new(latency_histogram()))
                .collect(),
        }
    }

    /// Adds a batch of nanosecond samples to shard `key % shards`.
    pub fn record_batch(&self, key: usize, samples: &[u64]) {
        let mut h = self.shards[key % self.shards.len()]
            .lock()
            .expect("histogram lock");
        for &s in samples {
            h.saturating_record(s.max(1));
        }
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = latency_histogram();
        for s in &self.shards {
            let h = s.lock().expect("histogram lock");
            all.add(&*h).expect("same bounds");
        }
        all
    }
}

/// Counts of `error` replies by code, plus transport failures under `transport`.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ErrorCounts(pub BTreeMap<String, u64>);

impl ErrorCounts {
    /// Counts one error of kind `code`.
    pub fn add(&mut self, code: &str) {
        if let Some(n) = self.0.get_mut(code) {
            *n += 1;
        } else {
            self.0.insert(code.to_string(), 1);
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }

    /// Total errors.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `CODE=n, CODE=n` or `none`.
    pub fn line(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the server rate-limited us, and a hint what to do about it.
    pub fn rate_limit_hint(&self) -> Option<&'static str> {
        self.0.contains_key("RATE_LIMITED").then_some(
            "hint: the server rate-limited connections (RATE_LIMITED); start it with e.g. \
             RATE_LIMIT_PER_SEC=1000000 RATE_LIMIT_BURST=1000000, or lower --rate / --in-flight",
        )
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 10s"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{s}` (use ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_uniform_samples() {
        let h = ShardedHistogram::new(4);
        // 1..=1000 microseconds, spread over shards as tasks would.
        let samples: Vec<u64> = (1..=1000u64).map(|us| us * 1000).collect();
        for (i, chunk) in samples.chunks(100).enumerate() {
            h.record_batch(i, chunk);
        }
        let p = Percentiles::of(&h.merged());
        assert_eq!(p.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(close(p.p50_ms, 0.5), "{p:?}");
        assert!(close(p.p90_ms, 0.9), "{p:?}");
        assert!(close(p.p99_ms, 0.99), "{p:?}");
        assert!(close(p.p999_ms, 0.999), "{p:?}");
        assert!(close(p.max_ms, 1.0), "{p:?}");
    }

    #[test]
    fn empty_histogram_is_all_zero() {
        let p = Percentiles::of(&latency_histogram());
        assert_eq!(p.count, 0);
        assert_eq!(p.p99_ms, 0.0);
    }

    #[test]
    fn huge_samples_are_clamped_not_lost() {
        let h = ShardedHistogram::new(1);
        h.record_batch(0, &[u64::MAX, 0]);
        assert_eq!(h.merged().len(), 2);
    }

    #[test]
    fn error_counts_merge_and_hint() {
        let mut a = ErrorCounts::default();
        a.add("RATE_LIMITED");
        a.add("RATE_LIMITED");
        let mut b = ErrorCounts::default();
        b.add("PEER_NOT_FOUND");
        b.merge(&a);
        assert_eq!(b.total(), 3);
        assert_eq!(b.line(), "PEER_NOT_FOUND=1, RATE_LIMITED=2");
        assert!(b.rate_limit_hint().is_some());
        assert!(ErrorCounts::default().rate_limit_hint().is_none());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
