//! Backoff between attempts at an API call: exponential, jittered, and never shorter than the
//! API server's `Retry-After`.
//!
//! The delay of attempt `n` (1-based) is `base · 2^(n-1)`, at most `max`, then scaled by a
//! random factor in [0.5, 1) ("equal jitter"), so that many pods failing together (an API
//! server restart) do not come back together. When the API server said how long to wait (a
//! 429 or 503 `Status` with `details.retryAfterSeconds`, which kube-apiserver sets along with
//! the `Retry-After` header: staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go
//! NewTooManyRequests, NewServerTimeout), the delay is at least that, whatever the jitter.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How long the API server asked the client to wait, from a 429 or 503 `Status`.
pub fn retry_after(e: &kube::Error) -> Option<Duration> {
    match e {
        kube::Error::Api(s) if s.code == 429 || s.code == 503 => s
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s))),
        _ => None,
    }
}

/// A random factor in [0.5, 1), from std's randomly keyed hasher (no RNG dependency: the
/// jitter only has to differ between pods and attempts, not be unpredictable).
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    // 53 random bits in [0, 1).
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    0.5 + unit / 2.0
}

/// The delay before attempt `attempt + 1`, after `attempt` failures (1-based).
pub fn delay(
    base: Duration,
    attempt: u32,
    max: Duration,
    server_asked: Option<Duration>,
) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.clamp(1, 20).saturating_sub(1))
        .min(max);
    let jittered = exp.mul_f64(jitter());
    server_asked.map_or(jittered, |s| jittered.max(s))
}

/// [`delay`] as a watch stream's backoff (`kube::runtime::WatchStreamExt::backoff`): the pause
/// after each error in a row, reset when the stream yields again.
#[derive(Debug, Clone)]
pub struct Doubling {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Doubling {
    /// From `base`, doubling, at most `max`.
    pub fn new(base: Duration, max: Duration) -> Doubling {
        Doubling {
            base,
            max,
            attempt: 0,
        }
    }
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.attempt = self.attempt.saturating_add(1);
        Some(delay(self.base, self.attempt, self.max, None))
    }
}

impl kube::runtime::utils::Backoff for Doubling {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 1..=12 {
            let full = (base * (1 << (attempt - 1))).min(max);
            let d = delay(base, attempt, max, None);
            assert!(
                d >= full / 2 && d < full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
        }
        // Not a constant: 50 draws are not all the same.
        let draws: std::collections::BTreeSet<_> =
            (0..50).map(|_| delay(base, 3, max, None)).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn the_servers_retry_after_is_a_floor() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 429, "reason": "TooManyRequests",
            "message": "too many requests",
            "details": {"retryAfterSeconds": 7}
        }))
        .expect("status");
        let e = kube::Error::Api(Box::new(status));
        let asked = retry_after(&e);
        assert_eq!(asked, Some(Duration::from_secs(7)));
        let d = delay(Duration::from_millis(100), 1, Duration::from_secs(5), asked);
        assert_eq!(d, Duration::from_secs(7));
    }
}
