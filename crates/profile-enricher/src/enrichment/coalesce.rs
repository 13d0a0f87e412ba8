//! Identical upstream calls in flight at once share one call ("single flight").
//!
//! The first caller of a key starts the call; whoever asks for the same key while
//! it runs joins it and gets a clone of its outcome, success or failure. The call
//! is a [`Shared`] future: any caller still waiting drives it, so it goes on when
//! the caller that started it goes away, and it is dropped - its upstream request
//! cancelled - once no caller waits any more. Its entry leaves the map as soon as
//! the call ends (or is dropped), so a later caller starts afresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};

pub type Call<T> = Shared<BoxFuture<'static, T>>;

type InFlight<T> = Mutex<HashMap<Arc<[u8]>, (u64, WeakShared<BoxFuture<'static, T>>)>>;

pub struct Coalescer<T: Clone + Send + Sync + 'static> {
    in_flight: Arc<InFlight<T>>,
    next_id: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Started the call.
    Leader,
    /// Joined a call already in flight.
    Follower,
}

impl<T: Clone + Send + Sync + 'static> Coalescer<T> {
    pub fn new() -> Self {
        Self {
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
        }
    }

    /// The call in flight for `key`, or a new one made by `start`.
    pub fn join_or_start(
        &self,
        key: &Arc<[u8]>,
        start: impl FnOnce() -> BoxFuture<'static, T>,
    ) -> (Call<T>, Role) {
        let mut in_flight = lock(&self.in_flight);
        if let Some(call) = in_flight.get(&**key).and_then(|(_, weak)| weak.upgrade()) {
            return (call, Role::Follower);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = Arc::clone(key);
        let forget = Forget {
            in_flight: Arc::clone(&self.in_flight),
            key: Arc::clone(&key),
            id,
        };
        let work = start();
        let call = async move {
            let _forget = forget;
            work.await
        }
        .boxed()
        .shared();
        if let Some(weak) = call.downgrade() {
            in_flight.insert(key, (id, weak));
        }
        (call, Role::Leader)
    }

    /// Calls in flight (for tests).
    pub fn len(&self) -> usize {
        lock(&self.in_flight).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Clone + Send + Sync + 'static> Default for Coalescer<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Removes a call's entry when its future is dropped: finished, or abandoned by
/// every caller. Never dropped under the map's lock: the future is only polled,
/// and only dropped, outside [`Coalescer::join_or_start`].
struct Forget<T: Clone + Send + Sync + 'static> {
    in_flight: Arc<InFlight<T>>,
    key: Arc<[u8]>,
    id: u64,
}

impl<T: Clone + Send + Sync + 'static> Drop for Forget<T> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.in_flight);
        if in_flight
            .get(&self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            in_flight.remove(&self.key);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics under this lock; should something, the map stays usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn callers_of_one_key_share_one_call_and_other_keys_do_not() {
        let coalescer = Coalescer::<u32>::new();
        let started = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let released = released.shared();
        let start = |value: u32| {
            let (started, released) = (Arc::clone(&started), released.clone());
            move || {
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    let _ = released.await;
                    value
                }
                .boxed()
            }
        };
        let (a1, role1) = coalescer.join_or_start(&Arc::from(&b"a"[..]), start(1));
        let (a2, role2) = coalescer.join_or_start(&Arc::from(&b"a"[..]), start(2));
        let (b, role3) = coalescer.join_or_start(&Arc::from(&b"b"[..]), start(3));
        assert_eq!(
            (role1, role2, role3),
            (Role::Leader, Role::Follower, Role::Leader)
        );
        release.send(()).unwrap();
        assert_eq!((a1.await, a2.await, b.await), (1, 1, 3));
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert!(coalescer.is_empty(), "finished calls are forgotten");
    }

    #[tokio::test]
    async fn a_call_every_caller_abandoned_is_forgotten() {
        let coalescer = Coalescer::<u32>::new();
        let (call, _) =
            coalescer.join_or_start(&Arc::from(&b"a"[..]), || futures::future::pending().boxed());
        assert_eq!(coalescer.len(), 1);
        drop(call);
        assert!(coalescer.is_empty());
        let (_, role) = coalescer.join_or_start(&Arc::from(&b"a"[..]), || async { 1 }.boxed());
        assert_eq!(role, Role::Leader);
    }
}
