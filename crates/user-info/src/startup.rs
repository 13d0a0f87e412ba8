use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use service_kit::http::{DocsPage, RequestSpan, guard, record_request, render_problem};
use tracing_actix_web::TracingLogger;
use user_store::{Database, DatabaseSettings};
use utoipa::OpenApi;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::openapi::ApiDoc;
use crate::routes::configure;

/// How long in-flight requests (and idle keep-alive connections) may hold a
/// stopping server: with the last spans' export after it (at most
/// `service_kit::telemetry::FLUSH_TIMEOUT`), the process exits within the 10 s
/// its contract gives it after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);

/// What every handler shares.
pub struct AppState {
    pub database: Database,
    /// How long an `Idempotency-Key`'s first answer is kept.
    pub idempotency_key_ttl: Duration,
}

/// How `DATABASE_POOL_SIZE` connections are shared: one for the purge task,
/// then per HTTP worker a read connection and a pool, the pools splitting the
/// rest (the first ones one more when it does not divide evenly). The workers
/// are capped so that each gets at least one of each: at most
/// `(DATABASE_POOL_SIZE - 1) / 2` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    pub workers: usize,
    /// Connections for the workers' pools, all together.
    pub pooled: usize,
}

impl ConnectionBudget {
    pub fn split(pool_size: usize, requested_workers: usize) -> Self {
        let available = pool_size.saturating_sub(1);
        let workers = requested_workers.min(available / 2).max(1);
        let pooled = available.saturating_sub(workers).max(workers);
        Self { workers, pooled }
    }

    /// The pool of the `index`th worker (from 0).
    pub fn pool_for(&self, index: usize) -> usize {
        self.pooled / self.workers + usize::from(index % self.workers < self.pooled % self.workers)
    }

    /// Every connection the process may hold open at once.
    pub fn connections(&self) -> usize {
        1 + self.workers
            + (0..self.workers)
                .map(|index| self.pool_for(index))
                .sum::<usize>()
    }
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds the listener (port 0 picks a free one), starts migrating in the
    /// background and prepares the server. The database may still be down.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let port = listener.local_addr()?.port();
        // The first pool (one connection) is the purge task's; the workers'
        // pools come from it below. The pool gauges add them all up.
        let purge_pool = DatabaseSettings {
            pool_size: 1,
            ..settings.database.clone()
        };
        let database = Database::start(&purge_pool, "user-info")?;
        let ttl = settings.idempotency_key_ttl;
        purge_expired_keys(database.clone(), ttl);
        // One pool and one read connection per worker thread (a connection's
        // I/O then runs on the thread whose requests use it), all within
        // DATABASE_POOL_SIZE whatever the node's core count.
        let budget = ConnectionBudget::split(settings.database.pool_size, settings.http_workers);
        if budget.workers < settings.http_workers {
            tracing::info!(
                requested = settings.http_workers,
                workers = budget.workers,
                pool_size = settings.database.pool_size,
                "HTTP workers capped so that every database connection fits in DATABASE_POOL_SIZE"
            );
        }
        let next_worker = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let metrics = Metrics::new(&database).context("could not register the metrics")?;
        let http_metrics = web::Data::new(metrics.http.clone());
        let metrics = web::Data::new(metrics);
        let docs = web::Data::new(DocsPage::new(ApiDoc::openapi()));
        let tokens = web::Data::new(settings.api_tokens);
        let http = settings.http;
        let worker_http = http.clone();
        let server = HttpServer::new(move || {
            let state = web::Data::new(AppState {
                database: database.with_own_pool(
                    budget.pool_for(next_worker.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
                ),
                idempotency_key_ttl: ttl,
            });
            App::new()
                .wrap(ErrorHandlers::new().default_handler(render_problem))
                .wrap(from_fn(guard))
                .wrap(from_fn(record_request))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state)
                .app_data(metrics.clone())
                .app_data(http_metrics.clone())
                .app_data(docs.clone())
                .app_data(tokens.clone())
                .app_data(worker_http.clone())
                .configure(configure)
        })
        .workers(budget.workers)
        .client_request_timeout(http.head_timeout)
        .keep_alive(http.keep_alive)
        .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, then finishes in-flight requests (at most
    /// [`SHUTDOWN_TIMEOUT`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Deletes expired idempotency keys in the background, as often as they
/// expire (every `ttl`, between 1 s and 60 s): no cron job needed. An expired
/// key already counts as absent; this only keeps the table small.
fn purge_expired_keys(database: Database, ttl: Duration) {
    let every = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !database.is_migrated() {
                continue;
            }
            match database.purge_expired_keys().await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "expired idempotency keys purged"),
                Err(error) => tracing::warn!(
                    error = %service_kit::error_chain(&error),
                    "cannot purge expired idempotency keys yet"
                ),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_fits_in_the_pool_size_whatever_the_core_count() {
        for pool_size in [3, 4, 5, 10, 16, 50, 100] {
            for cores in [1, 2, 4, 8, 32, 128] {
                let budget = ConnectionBudget::split(pool_size, cores);
                assert!(
                    budget.connections() <= pool_size,
                    "{pool_size} connections, {cores} cores: {budget:?} opens {}",
                    budget.connections()
                );
                assert!(budget.workers >= 1 && budget.workers <= cores);
                assert!((0..budget.workers).all(|worker| budget.pool_for(worker) >= 1));
            }
        }
        // The default pool on a 32-core node: 4 workers, 1 + 4 x 1 read + 5 pooled.
        let many = ConnectionBudget::split(10, 32);
        assert_eq!((many.workers, many.pooled), (4, 5));
        assert_eq!(
            (0..4).map(|w| many.pool_for(w)).collect::<Vec<_>>(),
            [2, 1, 1, 1]
        );
        // Two cores: both used, every connection of the pool in use.
        let two = ConnectionBudget::split(10, 2);
        assert_eq!((two.pool_for(0), two.pool_for(1)), (4, 3));
        assert_eq!(two.connections(), 10);
    }
}
