//! Per-client rate limit: `governor`'s keyed GCRA limiter (a token bucket per client
//! address), with the memory of clients seen bounded.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::Quota;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Clients remembered before those whose bucket has refilled are forgotten.
const REMEMBERED_CLIENTS: usize = 100_000;

/// `burst` requests at once, then `per_minute` a minute, per client address.
pub struct RateLimiter<C: Clock = DefaultClock> {
    inner: governor::RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("clients", &self.inner.len()).finish()
    }
}

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self::with_clock(per_minute, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(per_minute: u32, burst: u32, clock: C) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n.max(1)).expect("at least 1");
        let quota = Quota::per_minute(at_least_one(per_minute)).allow_burst(at_least_one(burst));
        let inner = governor::RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone());
        RateLimiter { inner, clock }
    }

    /// `Ok` to go ahead, or how long to wait.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.inner.len() > REMEMBERED_CLIENTS {
            // Forget clients whose bucket has refilled; bounds memory under many addresses.
            self.inner.retain_recent();
            self.inner.shrink_to_fit();
        }
        self.inner.check_key(&client).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let clock = FakeRelativeClock::default();
        let l = RateLimiter::with_clock(60, 3, clock.clone());
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        let other: IpAddr = "203.0.113.8".parse().expect("ip");
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        let wait = l.check(ip).expect_err("fourth request at once is refused");
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        assert!(l.check(other).is_ok(), "another client has its own bucket");
        clock.advance(Duration::from_millis(1100));
        assert!(l.check(ip).is_ok(), "one token back after a second");
        assert!(l.check(ip).is_err());
    }

    #[test]
    fn forgets_clients_whose_bucket_refilled() {
        let clock = FakeRelativeClock::default();
        let l = RateLimiter::with_clock(60, 3, clock.clone());
        for i in 0..=REMEMBERED_CLIENTS as u32 {
            assert!(l.check(IpAddr::from(i.to_be_bytes())).is_ok());
        }
        clock.advance(Duration::from_secs(10));
        assert!(l.check("203.0.113.7".parse().expect("ip")).is_ok());
        assert!(l.inner.len() < 10, "refilled clients are forgotten: {}", l.inner.len());
    }
}
