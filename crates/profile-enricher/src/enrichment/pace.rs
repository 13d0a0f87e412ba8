//! When a source may be called next, for every request of the process: its rate
//! limit (`SOURCE_<NAME>_RATE_LIMIT`, calls per second, burst of as many) and the
//! pause a `Retry-After` on its 429 or 503 puts on the whole source - the quota is
//! the source's, not one request's.
//!
//! The rate limit is a GCRA (the virtual-scheduling form of a token bucket): each
//! call reserves the earliest turn the limit allows, so callers are served in
//! the order they asked and none is woken only to find the turn taken. A caller
//! whose turn would come after its deadline reserves nothing and is refused at
//! once with the wait it would have had. Written out here rather than taken
//! from `governor`, whose limiters answer "not until T" but reserve nothing, so
//! waiting callers would race for each freed turn.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A source-wide pause longer than this is cut to it: a `Retry-After` of years
/// (hostile or mistaken) must not silence a source until a restart.
pub const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// Why a call cannot be made before the caller's deadline, and how long until it could.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source asked every caller to wait (`Retry-After`).
    Paused { retry_after: Duration },
    /// The rate limit has no turn before the deadline.
    RateLimited { retry_after: Duration },
}

pub struct Pace {
    limit: Option<Limit>,
    state: Mutex<State>,
}

struct Limit {
    /// One call per this.
    interval: Duration,
    /// How far ahead of its schedule a burst may run: `(burst - 1) * interval`.
    tolerance: Duration,
}

#[derive(Default)]
struct State {
    /// GCRA's theoretical arrival time of the next call.
    next: Option<Instant>,
    paused_until: Option<Instant>,
}

impl Pace {
    /// At most `per_second` calls a second (any positive number; a burst of its
    /// whole part, at least 1), or no limit.
    pub fn new(per_second: Option<f64>) -> Self {
        let limit = per_second
            .filter(|rate| rate.is_finite() && *rate > 0.0)
            .map(|rate| {
                let interval = Duration::from_secs_f64(1.0 / rate);
                let burst = rate.floor().max(1.0) as u32;
                Limit {
                    interval,
                    tolerance: interval * (burst - 1),
                }
            });
        Self {
            limit,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether calls wait for nothing but slots (no limit, no pause): then the
    /// caller need not ask for a turn at all.
    pub fn is_free(&self) -> bool {
        self.limit.is_none() && self.state().paused_until.is_none()
    }

    /// The instant this caller may make its call, `now` or later, its turn
    /// reserved; or why not before `deadline`.
    pub fn turn(&self, now: Instant, deadline: Instant) -> Result<Instant, Refusal> {
        let mut state = self.state();
        let mut earliest = now;
        if let Some(until) = state.paused_until {
            if until <= now {
                state.paused_until = None;
            } else if until >= deadline {
                return Err(Refusal::Paused {
                    retry_after: until - now,
                });
            } else {
                earliest = until;
            }
        }
        let Some(limit) = &self.limit else {
            return Ok(earliest);
        };
        let scheduled = state.next.map_or(earliest, |next| next.max(earliest));
        let at = scheduled
            .checked_sub(limit.tolerance)
            .map_or(earliest, |allowed| allowed.max(earliest));
        if at > deadline {
            return Err(Refusal::RateLimited {
                retry_after: at - now,
            });
        }
        state.next = Some(scheduled + limit.interval);
        Ok(at)
    }

    /// Every caller waits until `now + wait` (at most [`MAX_PAUSE`]); a pause
    /// already longer stays.
    pub fn pause(&self, now: Instant, wait: Duration) {
        let until = now + wait.min(MAX_PAUSE);
        let mut state = self.state();
        if state.paused_until.is_none_or(|paused| paused < until) {
            state.paused_until = Some(until);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever a panicking holder did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn secs(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn a_limit_lets_a_burst_through_then_spaces_the_calls() {
        let pace = Pace::new(Some(2.0));
        let now = Instant::now();
        let turns: Vec<Duration> = (0..5)
            .map(|_| pace.turn(now, now + LONG).unwrap() - now)
            .collect();
        assert_eq!(
            turns,
            [secs(0.0), secs(0.0), secs(0.5), secs(1.0), secs(1.5)]
        );
    }

    #[test]
    fn a_fractional_limit_allows_one_call_per_interval() {
        let pace = Pace::new(Some(0.5));
        let now = Instant::now();
        assert_eq!(pace.turn(now, now + LONG), Ok(now));
        assert_eq!(pace.turn(now, now + LONG), Ok(now + secs(2.0)));
    }

    #[test]
    fn a_turn_past_the_deadline_is_refused_and_reserves_nothing() {
        let pace = Pace::new(Some(1.0));
        let now = Instant::now();
        assert_eq!(pace.turn(now, now + secs(0.1)), Ok(now));
        assert_eq!(
            pace.turn(now, now + secs(0.1)),
            Err(Refusal::RateLimited {
                retry_after: secs(1.0)
            })
        );
        // The refusal took no turn: the next patient caller gets the first free one.
        assert_eq!(pace.turn(now, now + LONG), Ok(now + secs(1.0)));
    }

    #[test]
    fn turns_recover_once_time_passes() {
        let pace = Pace::new(Some(1.0));
        let now = Instant::now();
        pace.turn(now, now + LONG).unwrap();
        let later = now + secs(5.0);
        assert_eq!(pace.turn(later, later + LONG), Ok(later));
    }

    #[test]
    fn a_pause_holds_every_caller_until_it_ends_or_refuses_those_it_would_outlast() {
        let pace = Pace::new(None);
        let now = Instant::now();
        assert!(pace.is_free());
        pace.pause(now, secs(2.0));
        assert!(!pace.is_free());
        assert_eq!(pace.turn(now, now + LONG), Ok(now + secs(2.0)));
        assert_eq!(
            pace.turn(now + secs(0.5), now + secs(1.0)),
            Err(Refusal::Paused {
                retry_after: secs(1.5)
            })
        );
        // A shorter pause never shortens a longer one.
        pace.pause(now, secs(1.0));
        assert_eq!(pace.turn(now, now + LONG), Ok(now + secs(2.0)));
        // Once over, it is forgotten.
        assert_eq!(pace.turn(now + secs(3.0), now + LONG), Ok(now + secs(3.0)));
        assert!(pace.is_free());
    }

    #[test]
    fn a_pause_and_a_limit_add_up_and_a_huge_pause_is_capped() {
        let pace = Pace::new(Some(1.0));
        let now = Instant::now();
        pace.pause(now, secs(3.0));
        assert_eq!(pace.turn(now, now + LONG), Ok(now + secs(3.0)));
        assert_eq!(pace.turn(now, now + LONG), Ok(now + secs(4.0)));
        let capped = Pace::new(None);
        capped.pause(now, Duration::from_secs(u64::MAX / 4));
        assert_eq!(capped.turn(now, now + MAX_PAUSE * 2), Ok(now + MAX_PAUSE));
    }
}
