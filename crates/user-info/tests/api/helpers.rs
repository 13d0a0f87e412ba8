//! `spawn_app()`: the real application on port 0 against a fresh database, which
//! is dropped again when the test ends (also when it fails).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::Value;
use service_kit::settings::FromVariables;
use tokio::task::JoinHandle;
use user_info::config::Settings;
use user_info::startup::Application;
pub use user_store::testing::{TcpProxy, TestDatabase, eventually, free_port, postgres_address};

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
    let variables = [
        ("USER_INFO_HOST", "127.0.0.1"),
        ("USER_INFO_PORT", "0"),
        ("DATABASE_URL", database_url),
        ("DATABASE_POOL_SIZE", "4"),
        ("DATABASE_CONNECT_TIMEOUT", "1"),
        ("DATABASE_QUERY_TIMEOUT", "5"),
    ];
    Settings::from_variables(
        variables
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
    .unwrap()
}

/// Starts the application on a fresh database and waits until it has migrated.
pub async fn spawn_app() -> TestApp {
    let app = spawn_app_on(TestDatabase::create(), None).await;
    app.wait_until_ready().await;
    app
}

/// For tests that send many requests at once: a pool as large as their
/// concurrency and generous timeouts, so that a machine busy with the other
/// tests answers them late rather than with a 503.
pub async fn spawn_busy_app() -> TestApp {
    let db = TestDatabase::create();
    let mut config = settings(&db.url);
    config.database.pool_size = 24;
    config.database.connect_timeout = Duration::from_secs(10);
    config.database.query_timeout = Duration::from_secs(20);
    let app = spawn_configured(db, config).await;
    app.wait_until_ready().await;
    app
}

/// Starts the application on `db`, reaching PostgreSQL through `via` (a proxy
/// address) when given. Does not wait for the database.
pub async fn spawn_app_on(db: TestDatabase, via: Option<SocketAddr>) -> TestApp {
    let url = match via {
        Some(proxy) => db.url_via(proxy),
        None => db.url.clone(),
    };
    spawn_configured(db, settings(&url)).await
}

/// Starts the application with the given settings, on `db`.
pub async fn spawn_configured(db: TestDatabase, settings: Settings) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = service_kit::telemetry::init("tests");
    }
    let application = Application::build(settings).unwrap();
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

    /// A request to `path` of the application, to add headers and a body to.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
    }

    /// `POST /user` with extra headers.
    pub async fn post_user_with(&self, body: &Value, headers: &[(&str, &str)]) -> Response {
        let mut request = self
            .request(reqwest::Method::POST, "/user")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    pub async fn get_user(&self, id: &str) -> Response {
        self.get(&format!("/user?user_id={id}")).await
    }
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

/// A process of the built binary, killed by PID when dropped.
pub struct Server(pub std::process::Child);

impl Server {
    /// Spawns `command` (the binary, listening on `port`) and waits, at most
    /// 20 s, for its `/ready`; returns it and its base URL.
    pub async fn start_ready(command: &mut std::process::Command, port: u16) -> (Self, String) {
        let server = Server(command.spawn().unwrap());
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let ready = eventually(Duration::from_secs(20), || async {
            client
                .get(format!("{base}/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "user-info did not become ready");
        (server, base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
