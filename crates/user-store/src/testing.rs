//! Test support shared by the crates' integration tests (feature `testing`):
//! throw-away databases, a TCP proxy to cut PostgreSQL off, and polling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::schema::{self, User};

/// Where tests may create databases; `.ci/run` provides it.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

fn url_for(database: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    format!("{base}/{database}")
}

pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> Self {
        let name = format!("user_info_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url()).expect("PostgreSQL is not reachable");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        let url = url_for(&name);
        Self { name, url }
    }

    /// This database's URL, reached through `proxy` (a [`TcpProxy`] in front of
    /// [`postgres_address`]) instead of PostgreSQL itself.
    pub fn url_via(&self, proxy: SocketAddr) -> String {
        self.url
            .replacen(&postgres_address().to_string(), &proxy.to_string(), 1)
    }

    /// [`TestDatabase::url_via`] without TLS, for a proxy that reads the
    /// statements.
    pub fn url_in_clear_via(&self, proxy: SocketAddr) -> String {
        let url = self.url_via(proxy);
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}sslmode=disable")
    }

    /// Applies the embedded migrations now, as the services do at start-up,
    /// so a test can add to the schema before starting them.
    pub fn migrate(&self) {
        use diesel_migrations::MigrationHarness;
        self.connect()
            .run_pending_migrations(crate::migrate::MIGRATIONS)
            .unwrap();
    }

    /// Runs SQL of the test's own (extra constraints, test-only tables).
    pub fn execute(&self, sql: &str) {
        self.connect().batch_execute(sql).unwrap();
    }

    pub fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url).unwrap()
    }

    /// The row as stored, read directly from PostgreSQL.
    pub fn stored(&self, id: Uuid) -> Option<User> {
        read_user(&mut self.connect(), id).unwrap()
    }

    /// Like [`TestDatabase::stored`], but `None` while the database cannot be
    /// read yet (not migrated, cut off): for polling.
    pub fn find(&self, id: Uuid) -> Option<User> {
        let mut conn = PgConnection::establish(&self.url).ok()?;
        read_user(&mut conn, id).ok().flatten()
    }

    /// The `n` column of a `SELECT count(*) AS n ...`; -1 while the database
    /// cannot be read yet (not migrated, cut off): for polling.
    pub fn count_where(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let Ok(mut conn) = PgConnection::establish(&self.url) else {
            return -1;
        };
        diesel::RunQueryDsl::get_result::<Count>(diesel::sql_query(sql), &mut conn)
            .map(|c| c.n)
            .unwrap_or(-1)
    }

    pub fn count(&self) -> i64 {
        use diesel::RunQueryDsl;
        use diesel::query_dsl::QueryDsl;
        schema::user_info::table
            .count()
            .get_result(&mut self.connect())
            .unwrap()
    }
}

/// One user as stored, over a plain (libpq) connection of the test's own.
pub fn read_user(conn: &mut PgConnection, id: Uuid) -> diesel::QueryResult<Option<User>> {
    use diesel::prelude::*;
    schema::user_info::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&admin_url()) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Polls `check` until it holds or `limit` passes; polling, not sleeping, is how
/// these tests wait for a condition.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A TCP proxy to PostgreSQL (or a broker) that a test can stop and start, to
/// cut the server off without touching it - stopping closes every connection -
/// or freeze and thaw, to make it stop answering while connections stay open
/// (a network partition, a hung server), or withhold the answer to one
/// `COMMIT` that PostgreSQL carries out (an answer that comes too late).
pub struct TcpProxy {
    pub address: SocketAddr,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
    frozen: tokio::sync::watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    withhold_commit: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Reserves a free port; nothing listens on it until [`TcpProxy::start`].
    pub fn reserve(target: SocketAddr) -> Self {
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self {
            address,
            target,
            task: None,
            frozen: tokio::sync::watch::Sender::new(false),
            accepted: Arc::default(),
            held: Arc::default(),
            withhold_commit: Arc::default(),
        }
    }

    pub fn start(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.address).unwrap();
        let listener = socket.listen(128).unwrap();
        let target = self.target;
        let frozen = self.frozen.clone();
        let accepted = self.accepted.clone();
        let held = self.held.clone();
        let withhold_commit = self.withhold_commit.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::Relaxed);
                let frozen = frozen.clone();
                let held = held.clone();
                let commit = Withhold {
                    armed: withhold_commit.clone(),
                    answers: Arc::default(),
                };
                connections.spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(target).await {
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        let to_server = Pump {
                            frozen: frozen.subscribe(),
                            held: held.clone(),
                            commit: Direction::ToServer(commit.clone()),
                        };
                        let to_client = Pump {
                            frozen: frozen.subscribe(),
                            held,
                            commit: Direction::ToClient(commit),
                        };
                        tokio::select! {
                            () = to_server.run(in_read, out_write) => {}
                            () = to_client.run(out_read, in_write) => {}
                        }
                    }
                });
            }
        }));
    }

    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// How many reads were held back while frozen: something was sent into
    /// the silence.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Holds every byte in both directions, keeping connections open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Delivers what was held and forwards again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// The next `COMMIT` sent through the proxy reaches PostgreSQL, which
    /// carries it out, but nothing more reaches the client on that
    /// connection: its answer never comes. The proxy reads the statements:
    /// connect through it in clear (`sslmode=disable`).
    pub fn withhold_next_commit_answer(&self) {
        self.withhold_commit.store(true, Ordering::SeqCst);
    }
}

/// One connection's share of [`TcpProxy::withhold_next_commit_answer`].
#[derive(Clone)]
struct Withhold {
    /// The proxy's: set until one connection sends a `COMMIT`.
    armed: Arc<AtomicBool>,
    /// This connection's: its answers are withheld from now on.
    answers: Arc<AtomicBool>,
}

enum Direction {
    ToServer(Withhold),
    ToClient(Withhold),
}

/// Copies one direction of a connection.
struct Pump {
    frozen: tokio::sync::watch::Receiver<bool>,
    held: Arc<AtomicUsize>,
    commit: Direction,
}

impl Pump {
    /// Copies until either side closes, holding what it read while the proxy
    /// is frozen, and answers for good once they are withheld.
    async fn run(
        mut self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            match &self.commit {
                Direction::ToServer(commit) => {
                    if buffer[..read].windows(6).any(|bytes| bytes == b"COMMIT")
                        && commit.armed.swap(false, Ordering::SeqCst)
                    {
                        commit.answers.store(true, Ordering::SeqCst);
                    }
                }
                Direction::ToClient(commit) => {
                    if commit.answers.load(Ordering::SeqCst) {
                        self.held.fetch_add(1, Ordering::Relaxed);
                        return std::future::pending().await;
                    }
                }
            }
            if *self.frozen.borrow() {
                self.held.fetch_add(1, Ordering::Relaxed);
            }
            if self.frozen.wait_for(|frozen| !*frozen).await.is_err()
                || to.write_all(&buffer[..read]).await.is_err()
            {
                return;
            }
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn postgres_address() -> SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
