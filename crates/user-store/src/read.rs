//! Reads of one user on a connection that every request of a worker thread
//! shares. tokio-postgres pipelines the queries of concurrent requests on it -
//! several in one write, their answers in one read - where a pooled connection
//! per request costs each request a round trip and wake-ups of its own. Writes
//! keep the pool: their commits must not queue behind each other on one
//! PostgreSQL backend.
//!
//! The connection is opened on first use, on the runtime of the thread that
//! uses it, and replaced when it is closed or a query on it fails or runs out
//! of time (a frozen connection is not reused), so a database restart heals.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Row, Statement};
use uuid::Uuid;

use crate::StoreError;
use crate::connect::Connector;
use crate::schema::User;

/// The one read the API serves from here: a user by id.
const GET_SQL: &str = "SELECT user_id, first_name, last_name, email, phone_number, \
     created_at, updated_at, version FROM user_info WHERE user_id = $1";

/// A connection with its statement prepared.
pub(crate) struct Pipelined {
    client: Client,
    get: Statement,
}

impl Pipelined {
    pub(crate) async fn get(&self, id: Uuid) -> Result<Option<User>, tokio_postgres::Error> {
        let row = self.client.query_opt(&self.get, &[&id]).await?;
        row.as_ref().map(user).transpose()
    }
}

fn user(row: &Row) -> Result<User, tokio_postgres::Error> {
    Ok(User {
        user_id: row.try_get(0)?,
        first_name: row.try_get(1)?,
        last_name: row.try_get(2)?,
        email: row.try_get(3)?,
        phone_number: row.try_get(4)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
        version: row.try_get(7)?,
    })
}

/// The shared connection of one worker thread (or none yet).
#[derive(Default)]
pub(crate) struct Reader {
    current: tokio::sync::Mutex<Option<Arc<Pipelined>>>,
}

impl Reader {
    /// The open connection, or a new one within `connect_timeout`: one request
    /// opens it while the others of the thread wait for it.
    pub(crate) async fn connection(
        &self,
        connector: &Connector,
        connect_timeout: Duration,
    ) -> Result<Arc<Pipelined>, StoreError> {
        let mut current = self.current.lock().await;
        if let Some(open) = current.as_ref().filter(|open| !open.client.is_closed()) {
            return Ok(open.clone());
        }
        *current = None;
        let open = async {
            let client = connector.connect_raw().await?;
            let get = client.prepare(GET_SQL).await?;
            Ok::<_, tokio_postgres::Error>(Pipelined { client, get })
        };
        let open = tokio::time::timeout(connect_timeout, open)
            .await
            .map_err(|_| {
                StoreError::Unavailable("no database connection within the connect timeout".into())
            })?
            .map_err(|error| StoreError::Unavailable(error.into()))?;
        let open = Arc::new(open);
        *current = Some(open.clone());
        Ok(open)
    }

    /// Stops handing out `failed`: the next read opens a new connection (the
    /// old one closes when its last query is done with it).
    pub(crate) async fn discard(&self, failed: &Arc<Pipelined>) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|open| Arc::ptr_eq(open, failed))
        {
            *current = None;
        }
    }
}
