//! `max_conn_rate`: a token bucket in front of a listener's `accept`. It holds up to one
//! second's worth of tokens (a burst of `rate`) and refills `rate` per second; with none
//! left the accept loop waits for the next one instead of accepting, so a connection storm
//! queues in the kernel (`listeners.backlog`) and costs the broker nothing meanwhile.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket of `rate` tokens per second, `rate` at most.
#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens per second (and the bucket's size).
    rate: f64,
    /// Tokens now (fractional between refills).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` per second (`rate` ≥ 1).
    pub fn new(rate: u32, now: Instant) -> TokenBucket {
        let rate = f64::from(rate.max(1));
        TokenBucket {
            rate,
            tokens: rate,
            at: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
        // (A hair of slack: a wait computed from the shortfall must be enough.)
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait).max(Duration::from_micros(100)))
        }
    }

    /// Waits until a token is there and takes it.
    pub async fn take(&mut self) {
        loop {
            match self.try_take(Instant::now()) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_rate_then_rate_per_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        for _ in 0..10 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        // A second later: 10 more, not more than that (the bucket holds one second).
        let t1 = t0 + Duration::from_secs(5);
        for _ in 0..10 {
            assert_eq!(b.try_take(t1), Ok(()));
        }
        assert!(b.try_take(t1).is_err());
        assert_eq!(b.try_take(t1 + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn a_rate_of_one_waits_a_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        let wait = b.try_take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(990), "{wait:?}");
        assert_eq!(b.try_take(t0 + wait), Ok(()));
    }
}
