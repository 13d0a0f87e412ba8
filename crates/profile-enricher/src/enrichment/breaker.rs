//! A circuit breaker per source.
//!
//! - **Closed** (normal): every attempt goes through; the outcomes of the last
//!   `CIRCUIT_BREAKER_WINDOW` are counted in ten buckets. Once at least
//!   `CIRCUIT_BREAKER_MIN_CALLS` attempts are counted and the share of failures
//!   reaches `CIRCUIT_BREAKER_FAILURE_RATIO`, it opens.
//! - **Open**: no attempt reaches the upstream for `CIRCUIT_BREAKER_OPEN`; callers
//!   learn how long until the next probe (their `Retry-After`).
//! - **Half-open**: afterwards, up to `CIRCUIT_BREAKER_HALF_OPEN_PROBES` attempts
//!   at once are let through. The first probe that succeeds closes the breaker
//!   (with a fresh window); one that fails opens it again.
//!
//! A failure is what the retry loop would retry (connect error, timeout, 408, 429,
//! 5xx) or an attempt cut by the deadline; any other answer, a 4xx included, shows
//! that the upstream is up. `CIRCUIT_BREAKER_MIN_CALLS=0` turns the breaker off.
//!
//! Time is passed in (`now`), so the state machine is tested without sleeping.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What the operator set; checked at start-up.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    pub failure_ratio: f64,
    pub min_calls: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `enricher_circuit_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// Told of every change of state, under the breaker's lock (so in order).
pub type OnTransition = Box<dyn Fn(BreakerState, BreakerState) + Send + Sync>;

pub struct CircuitBreaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
    on_transition: OnTransition,
}

struct Inner {
    state: State,
    /// Bumped on each entry into half-open, so that a late probe of an earlier
    /// half-open period changes nothing.
    generation: u64,
    window: Window,
}

enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: u32 },
}

/// Leave to make one attempt. Dropping it unrecorded (a cancelled request, no
/// slot) frees its probe place without counting anything.
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe_of: Option<u64>,
}

impl CircuitBreaker {
    pub fn new(settings: BreakerSettings, now: Instant, on_transition: OnTransition) -> Self {
        let window = Window::new(settings.window, now);
        Self {
            settings,
            inner: Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                window,
            }),
            on_transition,
        }
    }

    fn enabled(&self) -> bool {
        self.settings.min_calls > 0
    }

    /// Leave for one attempt, or how long until the breaker lets a probe through.
    pub fn try_acquire(&self, now: Instant) -> Result<Permit<'_>, Duration> {
        if !self.enabled() {
            return Ok(Permit {
                breaker: self,
                probe_of: None,
            });
        }
        let mut inner = self.lock();
        if let State::Open { until } = inner.state {
            if now < until {
                return Err(until - now);
            }
            inner.generation += 1;
            self.change(&mut inner, State::HalfOpen { probing: 0 });
        }
        let generation = inner.generation;
        match &mut inner.state {
            State::Closed => Ok(Permit {
                breaker: self,
                probe_of: None,
            }),
            State::HalfOpen { probing } if *probing < self.settings.half_open_probes => {
                *probing += 1;
                Ok(Permit {
                    breaker: self,
                    probe_of: Some(generation),
                })
            }
            // Every probe place is taken: the next news is a probe's outcome.
            State::HalfOpen { .. } | State::Open { .. } => Err(Duration::ZERO),
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state.public()
    }

    fn record(&self, probe_of: Option<u64>, failed: bool, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut inner = self.lock();
        match (probe_of, &inner.state) {
            (Some(generation), State::HalfOpen { .. }) if generation == inner.generation => {
                if failed {
                    self.open(&mut inner, now);
                } else {
                    inner.window.clear(now);
                    self.change(&mut inner, State::Closed);
                }
            }
            (None, State::Closed) => {
                inner.window.count(now, failed);
                let (calls, failures) = inner.window.totals(now);
                if calls >= self.settings.min_calls
                    && f64::from(failures) >= self.settings.failure_ratio * f64::from(calls)
                {
                    self.open(&mut inner, now);
                }
            }
            // Outcomes of attempts let through in an earlier state change nothing.
            _ => {}
        }
    }

    fn release(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation
            && let State::HalfOpen { probing } = &mut inner.state
        {
            *probing = probing.saturating_sub(1);
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        // The open period is bounded at start-up; should the clock still run out,
        // probe at once rather than never.
        let until = now.checked_add(self.settings.open_for).unwrap_or(now);
        self.change(inner, State::Open { until });
    }

    fn change(&self, inner: &mut Inner, to: State) {
        let from = inner.state.public();
        inner.state = to;
        let to = inner.state.public();
        if from != to {
            (self.on_transition)(from, to);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics under this lock; should something, the counts stay usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Permit<'_> {
    /// Counts the attempt's outcome; `failed` as described in the module docs.
    pub fn record(mut self, failed: bool, now: Instant) {
        let probe_of = self.probe_of.take();
        self.breaker.record(probe_of, failed, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(generation) = self.probe_of {
            self.breaker.release(generation);
        }
    }
}

impl State {
    fn public(&self) -> BreakerState {
        match self {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

const BUCKETS: u32 = 10;

/// Calls and failures over the last `window`, in `BUCKETS` slices.
struct Window {
    slice: Duration,
    buckets: [(u32, u32); BUCKETS as usize],
    current: usize,
    /// When the current slice began.
    since: Instant,
}

impl Window {
    fn new(window: Duration, now: Instant) -> Self {
        Self {
            slice: (window / BUCKETS).max(Duration::from_millis(1)),
            buckets: [(0, 0); BUCKETS as usize],
            current: 0,
            since: now,
        }
    }

    /// Moves on to the slice that holds `now`, emptying the slices passed over.
    fn advance(&mut self, now: Instant) {
        let passed = now.saturating_duration_since(self.since).as_nanos() / self.slice.as_nanos();
        if passed == 0 {
            return;
        }
        if passed >= u128::from(BUCKETS) {
            self.clear(now);
            return;
        }
        for _ in 0..passed {
            self.current = (self.current + 1) % self.buckets.len();
            self.buckets[self.current] = (0, 0);
        }
        // `passed` slices fit between `since` and `now`, so this cannot overflow.
        let moved = self.slice * u32::try_from(passed).unwrap_or(BUCKETS);
        self.since = self.since.checked_add(moved).unwrap_or(now);
    }

    fn clear(&mut self, now: Instant) {
        self.buckets = [(0, 0); BUCKETS as usize];
        self.current = 0;
        self.since = now;
    }

    fn count(&mut self, now: Instant, failed: bool) {
        self.advance(now);
        let bucket = &mut self.buckets[self.current];
        bucket.0 = bucket.0.saturating_add(1);
        if failed {
            bucket.1 = bucket.1.saturating_add(1);
        }
    }

    fn totals(&mut self, now: Instant) -> (u32, u32) {
        self.advance(now);
        self.buckets
            .iter()
            .fold((0, 0), |(calls, failures), bucket| {
                (
                    calls.saturating_add(bucket.0),
                    failures.saturating_add(bucket.1),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_ratio: 0.5,
            min_calls: 4,
            window: 10 * SECOND,
            open_for: 5 * SECOND,
            half_open_probes: 1,
        }
    }

    type Seen = Arc<Mutex<Vec<(BreakerState, BreakerState)>>>;

    fn breaker(settings: BreakerSettings, start: Instant) -> (CircuitBreaker, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let breaker = CircuitBreaker::new(
            settings,
            start,
            Box::new(move |from, to| log.lock().unwrap().push((from, to))),
        );
        (breaker, seen)
    }

    fn call(breaker: &CircuitBreaker, now: Instant, failed: bool) {
        breaker.try_acquire(now).unwrap().record(failed, now);
    }

    #[test]
    fn it_opens_only_past_the_minimum_of_calls_and_the_failure_ratio() {
        let start = Instant::now();
        let (breaker, _) = breaker(settings(), start);
        for _ in 0..3 {
            call(&breaker, start, true);
        }
        assert_eq!(breaker.state(), BreakerState::Closed, "3 calls < 4");
        call(&breaker, start, false);
        assert_eq!(breaker.state(), BreakerState::Open, "3 of 4 failed");
        assert_eq!(breaker.try_acquire(start + SECOND).err(), Some(4 * SECOND));
    }

    #[test]
    fn failures_below_the_ratio_keep_it_closed() {
        let start = Instant::now();
        let (breaker, _) = breaker(settings(), start);
        for n in 0..100 {
            call(&breaker, start, n % 3 == 2);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let start = Instant::now();
        let (breaker, _) = breaker(settings(), start);
        for _ in 0..3 {
            call(&breaker, start, true);
        }
        let later = start + 11 * SECOND;
        call(&breaker, later, true);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "one failure in the window"
        );
    }

    #[test]
    fn after_the_open_period_one_probe_goes_through_and_its_success_closes_it() {
        let start = Instant::now();
        let (breaker, seen) = breaker(settings(), start);
        for _ in 0..4 {
            call(&breaker, start, true);
        }
        let probe_time = start + 5 * SECOND;
        let probe = breaker.try_acquire(probe_time).unwrap();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.try_acquire(probe_time).err(), Some(Duration::ZERO));
        probe.record(false, probe_time);
        assert_eq!(breaker.state(), BreakerState::Closed);
        call(&breaker, probe_time, true);
        assert_eq!(breaker.state(), BreakerState::Closed, "a fresh window");
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (BreakerState::Closed, BreakerState::Open),
                (BreakerState::Open, BreakerState::HalfOpen),
                (BreakerState::HalfOpen, BreakerState::Closed),
            ]
        );
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_a_whole_period() {
        let start = Instant::now();
        let (breaker, _) = breaker(settings(), start);
        for _ in 0..4 {
            call(&breaker, start, true);
        }
        let probe_time = start + 6 * SECOND;
        call(&breaker, probe_time, true);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.try_acquire(probe_time).err(), Some(5 * SECOND));
    }

    #[test]
    fn a_probe_dropped_unrecorded_frees_its_place() {
        let start = Instant::now();
        let (breaker, _) = breaker(settings(), start);
        for _ in 0..4 {
            call(&breaker, start, true);
        }
        let probe_time = start + 5 * SECOND;
        drop(breaker.try_acquire(probe_time).unwrap());
        assert!(breaker.try_acquire(probe_time).is_ok());
    }

    #[test]
    fn min_calls_zero_turns_it_off() {
        let start = Instant::now();
        let (breaker, seen) = breaker(
            BreakerSettings {
                min_calls: 0,
                ..settings()
            },
            start,
        );
        for _ in 0..100 {
            call(&breaker, start, true);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(seen.lock().unwrap().is_empty());
    }
}
