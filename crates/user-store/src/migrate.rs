//! The schema's migrations, embedded in every binary and applied at start-up,
//! safely when several processes start at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connect::Connector;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Key of the PostgreSQL advisory lock that serialises migrations between every
/// process sharing the database ("userinfo" in ASCII).
const MIGRATION_LOCK: i64 = 0x7573_6572_696e_666f;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Migrates, retrying with capped backoff until the database answers, then
/// sets `migrated`.
pub(crate) async fn until_done(
    connector: Connector,
    connect_timeout: Duration,
    migrated: &AtomicBool,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match migrate(&connector, connect_timeout).await {
            Ok(()) => {
                migrated.store(true, Ordering::Release);
                tracing::info!("database migrations applied");
                return;
            }
            Err(error) => {
                tracing::warn!(error = %service_kit::error_chain(&*error), retry_in = ?delay, "cannot migrate the database yet");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Applies pending migrations under an advisory lock, so that replicas
/// starting together migrate one after the other and the later ones find
/// nothing to do. diesel's migration harness is synchronous: it runs on a
/// blocking thread, over a connection of its own (not a pooled one).
async fn migrate(connector: &Connector, connect_timeout: Duration) -> Result<(), BoxError> {
    let conn = tokio::time::timeout(connect_timeout, connector.connect())
        .await
        .map_err(|_| "no connection within the connect timeout")??;
    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
    tokio::task::spawn_blocking(move || -> Result<(), BoxError> {
        use diesel::connection::SimpleConnection;
        let lock = format!("SELECT pg_advisory_lock({MIGRATION_LOCK})");
        SimpleConnection::batch_execute(&mut conn, &lock)?;
        let result = conn.run_pending_migrations(MIGRATIONS).map(|_| ());
        let unlock = format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})");
        let unlocked = SimpleConnection::batch_execute(&mut conn, &unlock);
        result?;
        unlocked?;
        Ok(())
    })
    .await?
}
