//! What `/ready` and `/metrics` report, shared by the consume loop and the HTTP
//! port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use user_store::Database;

use crate::metrics::Metrics;

pub struct Status {
    pub database: Database,
    pub metrics: Metrics,
    joined: Arc<AtomicBool>,
    database_failing: AtomicBool,
    dead_letters_failing: AtomicBool,
}

impl Status {
    pub fn new(database: Database, metrics: Metrics) -> Self {
        Self {
            database,
            metrics,
            joined: Arc::default(),
            database_failing: AtomicBool::new(false),
            dead_letters_failing: AtomicBool::new(false),
        }
    }

    /// `None` when ready; otherwise why not.
    pub fn not_ready_reason(&self, database_answers: bool) -> Option<String> {
        if !self.joined.load(Ordering::Acquire) {
            return Some("not in the consumer group".to_owned());
        }
        if !database_answers || self.database_failing.load(Ordering::Acquire) {
            return Some("the database is unavailable".to_owned());
        }
        if self.dead_letters_failing.load(Ordering::Acquire) {
            return Some("the dead-letter topic cannot be written".to_owned());
        }
        None
    }

    /// The flag the group member keeps in step with its membership.
    pub fn joined(&self) -> Arc<AtomicBool> {
        self.joined.clone()
    }

    pub fn set_joined(&self, joined: bool) {
        self.joined.store(joined, Ordering::Release);
    }

    pub fn set_database_failing(&self, failing: bool) {
        self.database_failing.store(failing, Ordering::Release);
    }

    pub fn set_dead_letters_failing(&self, failing: bool) {
        self.dead_letters_failing.store(failing, Ordering::Release);
    }
}
