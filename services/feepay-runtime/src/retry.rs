//! The one retry schedule of the services: exponential backoff with full jitter, bounded,
//! from the `backon` crate. Loops that wait for a dependency (PostgreSQL, the broker, a
//! batch that failed transiently) take their delays from here and stop waiting on shutdown.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Delays of a retry loop: from `min`, doubling, never above `max`, each jittered, forever.
pub struct Backoff {
    delays: backon::ExponentialBackoff,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let delays = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        Backoff { delays }
    }

    /// The schedule for a failed batch: 100 ms doubling to 5 s.
    pub fn batch() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The schedule for a dependency that is not there yet: 200 ms doubling to 10 s.
    pub fn dependency() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(Duration::from_secs(5))
    }

    /// Sleeps the next delay; false when shutdown came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let d = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..30).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)), "{delays:?}");
        // Jittered, so not all equal once the cap is reached.
        assert!(delays[20..].iter().any(|d| *d != delays[20]), "{delays:?}");
    }
}
