use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, mpsc};
use std::time::{Duration, Instant};

use profile_enricher::config::{Settings, from_variables};
use profile_enricher::startup::Application;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The request SPEC says must succeed.
pub const README_EXAMPLE: &str = r#"{"userId":"12345","username":"testuser","email":"testuser@example.com","age":30,
 "address":{"street":"123 Main St","city":"Anytown","state":"CA","zip_code":"12345"},
 "signupTs":"2023-01-01T12:00:00Z"}"#;

pub fn readme_example() -> Value {
    serde_json::from_str(README_EXAMPLE).unwrap()
}

/// Logs only when `TEST_LOG` is set, so `cargo test` output stays readable.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = service_kit::telemetry::init("tests");
    }
});

pub struct TestApp {
    pub address: String,
    pub upstream: MockServer,
    pub http: reqwest::Client,
}

/// Settings for a test: SPEC's defaults (not the developer's environment), a free
/// port, the mock upstream, and short backoffs so retries are quick.
pub fn test_settings(upstream: &MockServer) -> Settings {
    let mut settings = from_variables(HashMap::new()).expect("default settings");
    settings.host = "127.0.0.1".to_owned();
    settings.port = 0;
    settings.env = "test".to_owned();
    settings.external_api_url = Some(format!("{}/enrich", upstream.uri()).parse().unwrap());
    settings.upstream.backoff_base = Duration::from_millis(10);
    settings.upstream.deadline = Duration::from_secs(10);
    settings
}

/// An app whose settings are read from `variables` (as the environment would
/// give them), `EXTERNAL_API_URL` the mock upstream and backoffs short unless
/// they say otherwise.
pub async fn spawn_app_from_variables(variables: &[(&str, &str)]) -> TestApp {
    let upstream = MockServer::start().await;
    let mut map: HashMap<String, String> = variables
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    map.entry("EXTERNAL_API_URL".to_owned())
        .or_insert_with(|| format!("{}/enrich", upstream.uri()));
    map.entry("BACKOFF_BASE".to_owned())
        .or_insert_with(|| "0.01".to_owned());
    let mut settings = from_variables(map).expect("settings");
    settings.host = "127.0.0.1".to_owned();
    settings.port = 0;
    launch(settings, upstream).await
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let upstream = MockServer::start().await;
    let mut settings = test_settings(&upstream);
    customise(&mut settings);
    launch(settings, upstream).await
}

/// Starts the application on its own task.
async fn launch(settings: Settings, upstream: MockServer) -> TestApp {
    LazyLock::force(&TRACING);
    let application = Application::build(settings).await.expect("application");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        upstream,
        http: reqwest::Client::new(),
    }
}

impl TestApp {
    pub async fn post_users(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post("/users", "application/json", body).await
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
    }

    /// Makes the mock upstream answer with `responder` at `POST /enrich`.
    pub async fn upstream_answers(&self, responder: impl Respond + 'static) {
        Mock::given(method("POST"))
            .and(path("/enrich"))
            .respond_with(responder)
            .mount(&self.upstream)
            .await;
    }

    pub async fn upstream_requests(&self) -> Vec<Request> {
        self.upstream.received_requests().await.unwrap_or_default()
    }
}

/// Checks the common shape of every error answer and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = response.json().await.expect("problem+json body");
    assert_eq!(body["status"], status);
    for member in ["type", "title", "detail"] {
        assert!(body[member].is_string(), "{member} missing from {body}");
    }
    body
}

/// Answers with the given responses in turn (repeating the last), noting when
/// each request arrived.
pub struct Script {
    responses: Vec<ResponseTemplate>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Script {
    pub fn new(responses: Vec<ResponseTemplate>) -> (Self, Arc<Mutex<Vec<Instant>>>) {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let script = Self {
            responses,
            arrivals: Arc::clone(&arrivals),
        };
        (script, arrivals)
    }
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().unwrap();
        let index = arrivals.len().min(self.responses.len() - 1);
        arrivals.push(Instant::now());
        self.responses[index].clone()
    }
}

pub fn json_answer(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// A tiny HTTP/1.1 upstream that takes `delay` to answer and records how many
/// requests it held at once. A request counts as in flight from its arrival until
/// just before its answer is written, so a client can only see an answer after
/// the count has dropped.
pub struct CountingUpstream {
    pub url: String,
    pub max_in_flight: Arc<AtomicUsize>,
    pub calls: Arc<AtomicUsize>,
}

pub async fn counting_upstream(delay: Duration) -> CountingUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/enrich", listener.local_addr().unwrap());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let counters = (
        Arc::clone(&in_flight),
        Arc::clone(&max_in_flight),
        Arc::clone(&calls),
    );
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (in_flight, max_in_flight, calls) = (
                Arc::clone(&counters.0),
                Arc::clone(&counters.1),
                Arc::clone(&counters.2),
            );
            tokio::spawn(async move {
                serve(socket, delay, &in_flight, &max_in_flight, &calls).await;
            });
        }
    });
    CountingUpstream {
        url,
        max_in_flight,
        calls,
    }
}

async fn serve(
    mut socket: TcpStream,
    delay: Duration,
    in_flight: &AtomicUsize,
    max_in_flight: &AtomicUsize,
    calls: &AtomicUsize,
) {
    let mut buffer = Vec::new();
    while read_request(&mut socket, &mut buffer).await {
        calls.fetch_add(1, Ordering::SeqCst);
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let body = r#"{"ok":true}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if socket.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request (head and `content-length` body) off the connection and drops
/// it from `buffer`; false once the peer has closed.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap_or(0));
            let total = end + 4 + length;
            if buffer.len() >= total {
                buffer.drain(..total);
                return true;
            }
        }
        let mut chunk = [0u8; 8192];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// A running `profile-enricher` binary, killed by its PID when dropped - also when
/// the test fails half-way.
pub struct Process {
    pub child: Child,
    pub port: u16,
}

impl Process {
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary, configured to listen on loopback at `port`. The variables that
/// matter are set, not removed, so a developer's `.env` cannot fill them in:
/// no upstream (the built-in `/dummy-enrich`), no tokens, warnings only, compact
/// logs. Callers add or override variables before spawning.
pub fn binary(port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_profile-enricher"));
    command
        .env("ENRICHER_HOST", "127.0.0.1")
        .env("ENRICHER_PORT", port.to_string())
        .env("EXTERNAL_API_URL", "")
        .env("API_TOKENS", "")
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

pub fn spawn(mut command: Command, port: u16) -> Process {
    Process {
        child: command.spawn().expect("start profile-enricher"),
        port,
    }
}

/// Spawns the binary and waits (boundedly) until its `/health` answers 200.
pub async fn start(command: Command, port: u16) -> Process {
    let http = reqwest::Client::new();
    let mut process = spawn(command, port);
    for _ in 0..400 {
        if let Some(status) = process.child.try_wait().unwrap() {
            panic!("profile-enricher exited early: {status}");
        }
        let health = http
            .get(format!("{}/health", process.address()))
            .send()
            .await;
        if health.is_ok_and(|response| response.status() == 200) {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("profile-enricher did not become healthy");
}

/// The lines the process writes to stdout (it must have been spawned with a piped
/// stdout), read on a thread so the pipe never fills up.
pub fn stdout_lines(process: &mut Process) -> mpsc::Receiver<String> {
    let stdout = process.child.stdout.take().expect("a piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The first line containing `needle`, waiting at most 20 s for it.
pub fn line_containing(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(error) => panic!("no line containing {needle:?}: {error}"),
        }
    }
}

/// Sends SIGTERM and waits for the exit: it must come within the contract's
/// 10 s, with status 0.
pub async fn terminate(process: &mut Process) {
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
