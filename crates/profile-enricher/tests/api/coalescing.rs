//! Identical upstream bodies in flight at once share one upstream call; the
//! optional cache (`ENRICHMENT_CACHE_TTL`) serves repeats and forgets them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{
    README_EXAMPLE, TestApp, assert_problem, json_answer, readme_example, spawn_app_with,
};

/// An upstream that holds every request until the test opens its gate, then
/// answers `{"for": <the request's userId>}` - or, when `status` is not 200, that
/// status with no body.
struct GatedUpstream {
    url: String,
    calls: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
}

async fn gated_upstream(status: u16) -> GatedUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/enrich", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let (gate, opened) = watch::channel(false);
    let counter = Arc::clone(&calls);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (counter, opened) = (Arc::clone(&counter), opened.clone());
            tokio::spawn(serve_when_open(socket, status, counter, opened));
        }
    });
    GatedUpstream { url, calls, gate }
}

async fn serve_when_open(
    mut socket: TcpStream,
    status: u16,
    calls: Arc<AtomicUsize>,
    mut opened: watch::Receiver<bool>,
) {
    while let Some(body) = read_request(&mut socket).await {
        calls.fetch_add(1, Ordering::SeqCst);
        if opened.wait_for(|open| *open).await.is_err() {
            return;
        }
        let user: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let answer = if status == 200 {
            json!({"for": user["userId"]}).to_string()
        } else {
            String::new()
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if socket.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One request's body (by `content-length`), or `None` once the peer has closed.
async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap_or(0));
            if buffer.len() >= end + 4 + length {
                return Some(buffer[end + 4..end + 4 + length].to_vec());
            }
        }
        let mut chunk = [0u8; 8192];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

fn profile_of(user_id: &str) -> String {
    README_EXAMPLE.replace(r#""userId":"12345""#, &format!(r#""userId":"{user_id}""#))
}

/// Polls `condition` every 10 ms for at most 10 s.
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

async fn metric(app: &TestApp, line: &str) -> Option<u64> {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|value| value.trim().parse().ok())
}

async fn spawn_with_upstream(url: &str, cache_ttl: Duration) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(move |settings| {
        settings.external_api_url = Some(url.parse().unwrap());
        settings.upstream.enrichment_cache_ttl = cache_ttl;
    })
    .await
}

#[tokio::test]
async fn fifty_identical_requests_in_flight_share_one_upstream_call() {
    let upstream = gated_upstream(200).await;
    let app = Arc::new(spawn_with_upstream(&upstream.url, Duration::ZERO).await);

    let requests: Vec<_> = (0..50)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.post_users(README_EXAMPLE).await })
        })
        .collect();
    // The upstream holds the one call until all 49 others have joined it.
    eventually("49 requests joined the call in flight", async || {
        metric(&app, r#"enricher_coalesced_total{source="default"}"#).await == Some(49)
    })
    .await;
    upstream.gate.send(true).unwrap();

    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user"], readme_example());
        assert_eq!(body["enrichment"], json!({"for": "12345"}));
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn different_bodies_in_flight_are_never_merged() {
    let upstream = gated_upstream(200).await;
    let app = Arc::new(spawn_with_upstream(&upstream.url, Duration::ZERO).await);

    let requests: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|user_id| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { (user_id, app.post_users(profile_of(user_id)).await) })
        })
        .collect();
    let calls = Arc::clone(&upstream.calls);
    eventually("both bodies reached the upstream", async || {
        calls.load(Ordering::SeqCst) == 2
    })
    .await;
    upstream.gate.send(true).unwrap();

    for request in requests {
        let (user_id, response) = request.await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user"]["userId"], user_id);
        assert_eq!(body["enrichment"], json!({"for": user_id}));
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn followers_of_a_failed_call_get_the_same_failure() {
    let upstream = gated_upstream(404).await;
    let app = Arc::new(spawn_with_upstream(&upstream.url, Duration::ZERO).await);

    let requests: Vec<_> = (0..5)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.post_users(README_EXAMPLE).await })
        })
        .collect();
    eventually("4 requests joined the call in flight", async || {
        metric(&app, r#"enricher_coalesced_total{source="default"}"#).await == Some(4)
    })
    .await;
    upstream.gate.send(true).unwrap();

    for request in requests {
        let problem = assert_problem(request.await.unwrap(), 502).await;
        assert_eq!(problem["type"], "/problems/upstream-rejected");
    }
    assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_cache_is_off_by_default() {
    let app = spawn_app_with(|_| {}).await;
    app.upstream_answers(json_answer(json!({"n": 1}))).await;

    for _ in 0..2 {
        assert_eq!(app.post_users(README_EXAMPLE).await.status(), 200);
    }

    assert_eq!(app.upstream_requests().await.len(), 2);
}

#[tokio::test]
async fn the_cache_serves_a_repeat_without_a_call_and_forgets_it_after_its_ttl() {
    let app = spawn_app_with(|settings| {
        settings.upstream.enrichment_cache_ttl = Duration::from_secs(2);
    })
    .await;
    app.upstream_answers(json_answer(json!({"n": 1}))).await;
    let first = app.post_users(README_EXAMPLE).await.text().await.unwrap();

    let repeat = app.post_users(README_EXAMPLE).await;

    assert_eq!(repeat.status(), 200);
    assert_eq!(repeat.text().await.unwrap(), first);
    assert_eq!(app.upstream_requests().await.len(), 1);
    assert_eq!(
        metric(&app, r#"enricher_cache_hits_total{source="default"}"#).await,
        Some(1)
    );
    let other = app.post_users(profile_of("someone-else")).await;
    assert_eq!(other.status(), 200);
    assert_eq!(
        app.upstream_requests().await.len(),
        2,
        "another body is called"
    );

    eventually("the cached answer expired", async || {
        assert_eq!(app.post_users(README_EXAMPLE).await.status(), 200);
        app.upstream_requests().await.len() == 3
    })
    .await;
}
