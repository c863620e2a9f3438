//! A circuit breaker for the authorization server.
//!
//! When the AS cannot be reached, every miss would otherwise wait up to the full
//! time budget before failing. After `threshold` consecutive connection
//! failures or timeouts the breaker opens: misses fail at once (503) for
//! `open_for`. Then one probe is let through (half-open); its success closes
//! the breaker, its failure opens it again. Any HTTP answer from the AS, even
//! an error status, counts as success: the AS is reachable.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker's state, as reported in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is in flight; everyone else fails fast.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

/// Permission to call the AS. Must be settled with [`Breaker::record`]; a
/// permit dropped unsettled (its call was cancelled) counts as a failed probe
/// when it was one, so the breaker never sticks half-open.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

/// The breaker is open; retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub retry_after: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value; a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to call the AS at `now`.
    ///
    /// # Errors
    ///
    /// [`Rejected`] while the breaker is open, or half-open with a probe out.
    pub fn admit(&self, now: Instant) -> Result<Permit<'_>, Rejected> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(Permit {
                breaker: self,
                probe: false,
                settled: false,
            }),
            State::Open { until } if now < until => Err(Rejected {
                retry_after: until - now,
            }),
            State::Open { .. } => {
                *state = State::HalfOpen;
                Ok(Permit {
                    breaker: self,
                    probe: true,
                    settled: false,
                })
            }
            State::HalfOpen => Err(Rejected {
                retry_after: self.open_for,
            }),
        }
    }

    /// Settles a permit: `reachable` is false for a connection failure or a
    /// timeout. Returns true when this call opened the breaker.
    pub fn record(&self, mut permit: Permit<'_>, reachable: bool, now: Instant) -> bool {
        permit.settled = true;
        self.settle(permit.probe, reachable, now)
    }

    fn settle(&self, probe: bool, reachable: bool, now: Instant) -> bool {
        let mut state = self.lock();
        if reachable {
            *state = State::Closed { failures: 0 };
            return false;
        }
        let open = match *state {
            State::Closed { failures } if !probe => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    true
                } else {
                    *state = State::Closed { failures };
                    false
                }
            }
            // A failed probe, or a failure while already open.
            _ => true,
        };
        if open {
            *state = State::Open {
                until: now + self.open_for,
            };
        }
        open
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            // The probe was cancelled: reopen now, so the next call probes.
            let mut state = self.breaker.lock();
            if matches!(*state, State::HalfOpen) {
                *state = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(2);

    fn fail(b: &Breaker, now: Instant) -> bool {
        let permit = b.admit(now).expect("admitted");
        b.record(permit, false, now)
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let b = Breaker::new(3, OPEN);
        let t = Instant::now();
        assert!(!fail(&b, t));
        assert!(!fail(&b, t));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(fail(&b, t), "the third failure opens it");
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.admit(t + Duration::from_millis(500)).unwrap_err();
        assert_eq!(rejected.retry_after, Duration::from_millis(1500));
    }

    #[test]
    fn a_reachable_answer_resets_the_count() {
        let b = Breaker::new(3, OPEN);
        let t = Instant::now();
        fail(&b, t);
        fail(&b, t);
        let permit = b.admit(t).unwrap();
        b.record(permit, true, t);
        assert!(!fail(&b, t));
        assert!(!fail(&b, t));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn after_the_open_period_one_probe_goes_through() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        fail(&b, t);
        let later = t + OPEN;
        let probe = b.admit(later).expect("probe admitted");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit(later).is_err(), "only one probe at a time");
        b.record(probe, true, later);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(later).is_ok());
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        fail(&b, t);
        let later = t + OPEN;
        let probe = b.admit(later).unwrap();
        assert!(b.record(probe, false, later));
        assert_eq!(
            b.admit(later + Duration::from_secs(1))
                .unwrap_err()
                .retry_after,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_cancelled_probe_does_not_leave_it_half_open() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        fail(&b, t);
        drop(b.admit(t + OPEN).unwrap());
        assert_eq!(b.state(), BreakerState::Open);
        assert!(
            b.admit(Instant::now() + Duration::from_millis(1)).is_ok(),
            "the next call probes"
        );
    }
}
