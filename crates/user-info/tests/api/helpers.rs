//! `spawn_app()`: the real application on port 0 against a fresh database, which
//! is dropped again when the test ends (also when it fails).

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use reqwest::{Client, Response};
use serde_json::Value;
use tokio::task::JoinHandle;
use user_info::config::{HttpSettings, Settings};
use user_info::startup::Application;
use user_info::store::{self, User};
use uuid::Uuid;

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

    pub fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url).unwrap()
    }

    /// The row as stored, read directly from PostgreSQL.
    pub fn stored(&self, id: Uuid) -> Option<User> {
        store::get(&mut self.connect(), id).unwrap()
    }

    pub fn count(&self) -> i64 {
        use diesel::RunQueryDsl;
        use diesel::query_dsl::QueryDsl;
        store::user_info::table
            .count()
            .get_result(&mut self.connect())
            .unwrap()
    }
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

pub struct TestApp {
    pub address: String,
    pub client: Client,
    server: JoinHandle<std::io::Result<()>>,
    // Declared last: dropped after the server is stopped.
    pub db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn settings(database_url: &str) -> Settings {
    Settings {
        user_info_host: "127.0.0.1".to_owned(),
        user_info_port: 0,
        database_url: database_url.to_owned(),
        database_pool_size: 4,
        database_connect_timeout: 1.0,
        http: HttpSettings {
            http_head_timeout: 10.0,
            http_body_timeout: 30.0,
            http_keep_alive: 60.0,
        },
    }
}

/// Starts the application on a fresh database and waits until it has migrated.
pub async fn spawn_app() -> TestApp {
    let app = spawn_app_on(TestDatabase::create(), None).await;
    app.wait_until_ready().await;
    app
}

/// Starts the application on `db`, reaching PostgreSQL through `via` (a proxy
/// address) when given. Does not wait for the database.
pub async fn spawn_app_on(db: TestDatabase, via: Option<SocketAddr>) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        user_info::telemetry::init();
    }
    let url = match via {
        Some(proxy) => db.url.replacen("127.0.0.1:5432", &proxy.to_string(), 1),
        None => db.url.clone(),
    };
    let application = Application::build(settings(&url)).unwrap();
    let address = format!("http://127.0.0.1:{}", application.port());
    let server = tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: Client::new(),
        server,
        db,
    }
}

impl TestApp {
    pub async fn wait_until_ready(&self) {
        let ready = eventually(Duration::from_secs(30), || async {
            self.get("/ready").await.status() == 200
        })
        .await;
        assert!(ready, "the application never became ready");
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    pub async fn post_user(&self, body: &Value) -> Response {
        self.post_raw(
            "/user",
            "application/json",
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_user(&self, id: &str) -> Response {
        self.get(&format!("/user?user_id={id}")).await
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

/// A problem document, checked for its media type and status.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// The fields named in a validation problem, sorted.
pub fn error_fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problem["errors"]
        .as_array()
        .expect("a validation problem lists its errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    fields
}

/// A TCP proxy to PostgreSQL that a test can stop and start, to cut the
/// database off without touching the server. Stopping closes every connection.
pub struct TcpProxy {
    pub address: SocketAddr,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Reserves a free port; nothing listens on it until [`TcpProxy::start`].
    pub fn reserve(target: SocketAddr) -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = probe.local_addr().unwrap();
        drop(probe);
        Self {
            address,
            target,
            task: None,
        }
    }

    pub fn start(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.address).unwrap();
        let listener = socket.listen(128).unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
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
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn postgres_address() -> SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}
