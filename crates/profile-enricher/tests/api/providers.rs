//! Sources shaped like real enrichment APIs (`SOURCE_<NAME>_METHOD`, `_URL`
//! templates, `_BODY`, `_HEADER_*`, `_SELECT`, `_INTO`, `_NOT_FOUND`,
//! `_RATE_LIMIT`, 401/403, a source-wide `Retry-After` pause, `ENRICHER_CONFIG`),
//! each against a local stand-in that checks what it receives.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{
    README_EXAMPLE, Script, TestApp, assert_problem, binary, free_port, json_answer,
    spawn_app_from_variables, start, terminate,
};

/// A profile with an e-mail whose `+` and `@` must be percent-encoded in a URL.
fn ann() -> Value {
    json!({"userId": "ann-1", "username": "ann", "email": "Ann+News@Example.com", "age": 41,
           "address": {"street": "1 Rue de la Paix", "city": "São Paulo", "zip_code": "01000-000"}})
}

/// [`ann`] under another userId: a request no coalescing merges with hers.
fn someone_else() -> Value {
    let mut profile = ann();
    profile["userId"] = json!("someone-else");
    profile
}

async fn post(app: &TestApp, profile: &Value) -> reqwest::Response {
    app.post_users(serde_json::to_vec(profile).unwrap()).await
}

/// A 503 refusal's `Retry-After` (whole seconds) and problem.
async fn refusal(response: reqwest::Response) -> (u64, Value) {
    assert_eq!(response.status(), 503);
    let wait = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (wait, assert_problem(response, 503).await)
}

/// The TOML block of README's "Connecting a real provider", its hosts pointed at
/// `stand_in`.
fn readme_config(stand_in: &MockServer) -> String {
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("```toml\n# enricher.toml")
        .expect("README's provider configuration");
    let block = &readme[start + "```toml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let mut config = block.to_owned();
    for host in [
        "https://people.example.com",
        "https://score.example.com",
        "https://geo.example.com",
    ] {
        assert!(
            config.contains(host),
            "{host} missing from README's example"
        );
        config = config.replace(host, &stand_in.uri());
    }
    config
}

/// A config file, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "enricher-test-{}-{}.toml",
            std::process::id(),
            service_kit::testing::unique("config")
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The three provider shapes of README, each stand-in matching only the exact
/// method, path, query, headers and body it expects.
async fn mount_providers(stand_in: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v5/person/enrich"))
        .and(query_param("email", "ann+news@example.com"))
        .and(header("x-api-key", "people-key"))
        .respond_with(json_answer(
            json!({"status": 200, "data": {"full_name": "Ann B", "job": {"title": "CTO"}}}),
        ))
        .expect(1)
        .mount(stand_in)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/score"))
        .and(header("authorization", "Bearer score-key"))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"email": "ann+news@example.com", "age": 41}),
        ))
        .respond_with(json_answer(
            json!({"result": {"score": 0.12, "band": "low"}}),
        ))
        .expect(1)
        .mount(stand_in)
        .await;
    Mock::given(method("GET"))
        .and(path("/search"))
        .and(query_param("city", "São Paulo"))
        .and(query_param("format", "json"))
        .and(query_param("limit", "1"))
        .respond_with(json_answer(json!([{"lat": "-23.55", "lon": "-46.63"}])))
        .expect(1)
        .mount(stand_in)
        .await;
}

#[tokio::test]
async fn the_readme_s_three_provider_shapes_are_called_as_configured_and_merged_under_their_keys() {
    let stand_in = MockServer::start().await;
    mount_providers(&stand_in).await;
    let file = ConfigFile::new(&readme_config(&stand_in));
    let app = spawn_app_from_variables(&[
        ("ENRICHER_CONFIG", file.path()),
        ("SOURCE_PEOPLE_HEADER_X_API_KEY", "people-key"),
        ("SOURCE_SCORE_HEADER_AUTHORIZATION", "Bearer score-key"),
    ])
    .await;

    let response = post(&app, &ann()).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["enrichment"],
        json!({"person": {"full_name": "Ann B", "job": {"title": "CTO"}},
               "risk": {"score": 0.12, "band": "low"},
               "location": {"lat": "-23.55", "lon": "-46.63"}})
    );
    assert_eq!(
        body["sources"],
        json!({"people": "ok", "score": "ok", "geo": "ok"})
    );
    // The e-mail is percent-encoded with only unreserved characters left as they are.
    let people = stand_in
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|request| request.url.path() == "/v5/person/enrich")
        .unwrap();
    assert_eq!(people.url.query(), Some("email=ann%2Bnews%40example.com"));
    assert!(people.body.is_empty(), "a GET carries no body");
    let geo = stand_in
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|request| request.url.path() == "/search")
        .unwrap();
    assert_eq!(
        geo.url.query(),
        Some("city=S%C3%A3o%20Paulo&format=json&limit=1")
    );
    // Each stand-in's `expect(1)` is checked when it is dropped.
}

#[tokio::test]
async fn a_source_whose_placeholder_the_profile_lacks_is_skipped_without_a_call() {
    let stand_in = MockServer::start().await;
    let url = format!("{}/by-state/{{address.state}}", stand_in.uri());
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "geo,echo"),
        ("SOURCE_GEO_METHOD", "GET"),
        ("SOURCE_GEO_URL", &url),
    ])
    .await;
    app.upstream_answers(json_answer(json!({"echo": true})))
        .await;

    let response = post(&app, &ann()).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sources"], json!({"geo": "skipped", "echo": "ok"}));
    assert_eq!(body["enrichment"], json!({"echo": true}));
    assert!(stand_in.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn not_found_is_not_retried_adds_nothing_and_a_required_source_still_succeeds() {
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "people"),
        ("SOURCE_PEOPLE_NOT_FOUND", "404,410"),
    ])
    .await;
    app.upstream_answers(ResponseTemplate::new(410)).await;

    let response = post(&app, &ann()).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["enrichment"], json!({}));
    assert_eq!(body["sources"], json!({"people": "not_found"}));
    assert_eq!(app.upstream_requests().await.len(), 1, "not_found is final");
}

#[tokio::test]
async fn nothing_where_the_pointer_points_is_not_found() {
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "people,echo"),
        ("SOURCE_PEOPLE_SELECT", "/data"),
        ("SOURCE_ECHO_INTO", "everything"),
    ])
    .await;
    app.upstream_answers(json_answer(json!({"data": null, "n": 1})))
        .await;

    let body: Value = post(&app, &ann()).await.json().await.unwrap();

    assert_eq!(
        body["sources"],
        json!({"people": "not_found", "echo": "ok"})
    );
    assert_eq!(
        body["enrichment"],
        json!({"everything": {"data": null, "n": 1}})
    );
}

#[tokio::test]
async fn a_selected_value_that_is_not_an_object_needs_an_into_key() {
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "people"),
        ("SOURCE_PEOPLE_SELECT", "/tags"),
    ])
    .await;
    app.upstream_answers(json_answer(json!({"tags": ["a"]})))
        .await;

    let problem = assert_problem(post(&app, &ann()).await, 502).await;

    assert_eq!(problem["type"], "/problems/upstream-invalid-answer");
    assert!(problem["detail"].as_str().unwrap().contains("people"));
}

#[tokio::test]
async fn wrong_credentials_are_never_retried_and_fail_a_required_source_naming_it() {
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "people,extra"),
        ("SOURCE_EXTRA_REQUIRED", "false"),
        ("SOURCE_PEOPLE_HEADER_X_API_KEY", "wrong-key"),
    ])
    .await;
    app.upstream_answers(ResponseTemplate::new(401)).await;

    let problem = assert_problem(post(&app, &ann()).await, 502).await;

    assert_eq!(problem["type"], "/problems/upstream-unauthorized");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("people"), "{detail}");
    assert!(!detail.contains("wrong-key"), "{detail}");
    // One call per source, none retried (MAX_RETRIES is 3).
    assert_eq!(app.upstream_requests().await.len(), 2);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("enricher_source_unauthorized_total{source=\"people\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("wrong-key"));
}

#[tokio::test]
async fn wrong_credentials_of_an_optional_source_only_mark_it_failed() {
    let stand_in = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&stand_in)
        .await;
    let url = format!("{}/enrich", stand_in.uri());
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "main,people"),
        ("SOURCE_PEOPLE_URL", &url),
        ("SOURCE_PEOPLE_REQUIRED", "false"),
    ])
    .await;
    app.upstream_answers(json_answer(json!({"main": 1}))).await;

    let body: Value = post(&app, &ann()).await.json().await.unwrap();

    assert_eq!(body["sources"], json!({"main": "ok", "people": "failed"}));
    assert_eq!(stand_in.received_requests().await.unwrap().len(), 1);
}

/// Five requests at once, each for its own user (no coalescing).
async fn five_users_at_once(app: &TestApp) -> Vec<reqwest::Response> {
    let requests = (0..5).map(|n| {
        let mut profile = ann();
        profile["userId"] = json!(format!("user-{n}"));
        async move { post(app, &profile).await }
    });
    futures::future::join_all(requests).await
}

#[tokio::test]
async fn a_rate_limit_spaces_every_request_s_calls_to_its_source() {
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "people"),
        ("SOURCE_PEOPLE_RATE_LIMIT", "2"),
    ])
    .await;
    let (script, arrivals) = Script::new(vec![json_answer(json!({"ok": true}))]);
    app.upstream_answers(script).await;

    for response in five_users_at_once(&app).await {
        assert_eq!(response.status(), 200);
    }

    // 2 a second, a burst of 2: turns at 0, 0, 0.5, 1.0 and 1.5 s.
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 5);
    let spread = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    assert!(
        spread >= Duration::from_millis(1400),
        "5 calls at 2 a second came within {spread:?}"
    );
}

#[tokio::test]
async fn a_request_whose_turn_would_pass_its_deadline_gets_503_at_once() {
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "people"),
        ("SOURCE_PEOPLE_RATE_LIMIT", "0.1"),
        ("EXTERNAL_API_DEADLINE", "2"),
    ])
    .await;
    app.upstream_answers(json_answer(json!({"ok": true}))).await;
    assert_eq!(post(&app, &ann()).await.status(), 200);

    let response = post(&app, &someone_else()).await;

    let (wait, problem) = refusal(response).await;
    assert!((9..=10).contains(&wait), "Retry-After {wait}");
    assert_eq!(problem["type"], "/problems/upstream-rate-limited");
    assert_eq!(app.upstream_requests().await.len(), 1);
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_the_source_for_every_other_request() {
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "people"),
        ("EXTERNAL_API_DEADLINE", "2"),
    ])
    .await;
    let (script, _) = Script::new(vec![
        ResponseTemplate::new(429).insert_header("retry-after", "30"),
        json_answer(json!({"ok": true})),
    ]);
    app.upstream_answers(script).await;

    // The request that got the 429: its own retry would pass its deadline.
    let first = post(&app, &ann()).await;
    assert_eq!(first.status(), 504);

    // Another user's request does not call the source at all while it is paused.
    let (wait, problem) = refusal(post(&app, &someone_else()).await).await;
    assert!((28..=30).contains(&wait), "Retry-After {wait}");
    assert_eq!(problem["type"], "/problems/upstream-paused");
    assert!(problem["detail"].as_str().unwrap().contains("people"));
    assert_eq!(app.upstream_requests().await.len(), 1);
}

#[tokio::test]
async fn requests_arriving_during_a_short_pause_wait_for_its_end_then_call() {
    let app = spawn_app_from_variables(&[("ENRICHMENT_SOURCES", "people")]).await;
    let (script, arrivals) = Script::new(vec![
        ResponseTemplate::new(503).insert_header("retry-after", "1"),
        json_answer(json!({"ok": true})),
    ]);
    app.upstream_answers(script).await;

    let profile = ann();
    let first = post(&app, &profile);
    let second = async {
        // Sent once the first call has had its 503.
        while arrivals.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        post(&app, &someone_else()).await
    };
    let (first, second) = futures::join!(first, second);

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 3);
    for later in &arrivals[1..] {
        assert!(
            *later - arrivals[0] >= Duration::from_millis(950),
            "a call went out {:?} into a 1 s pause",
            *later - arrivals[0]
        );
    }
}

#[tokio::test]
async fn the_binary_reads_enricher_config_never_logs_header_values_and_logs_wrong_keys_once() {
    let stand_in = MockServer::start().await;
    let (script, _) = Script::new(vec![
        ResponseTemplate::new(401),
        ResponseTemplate::new(401),
        json_answer(json!({"data": {"name": "Ann"}})),
    ]);
    Mock::given(method("GET"))
        .and(path("/person"))
        .respond_with(script)
        .mount(&stand_in)
        .await;
    let file = ConfigFile::new(&format!(
        "enrichment_sources = [\"people\"]\nmax_retries = 0\n[sources.people]\nmethod = \"GET\"\n\
         url = \"{}/person?email={{email}}\"\nselect = \"/data\"\ninto = \"person\"\n\
         headers = {{ \"X-Api-Key\" = \"file-secret-0123456789\" }}\n",
        stand_in.uri()
    ));
    let port = free_port();
    let mut command = binary(port);
    command
        .env("ENRICHER_CONFIG", file.path())
        // A Secret's variable overrides the file's key.
        .env("SOURCE_PEOPLE_HEADER_X_API_KEY", "env-secret-9876543210")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped());
    let mut process = start(command, port).await;
    let http = reqwest::Client::new();
    let url = format!("{}/users", process.address());
    let mut problems = String::new();
    for expected in [502, 502, 200] {
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .body(README_EXAMPLE)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
        problems.push_str(&response.text().await.unwrap());
    }
    let metrics = http
        .get(format!("{}/metrics", process.address()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        problems.contains(r#""person":{"name":"Ann"}"#),
        "{problems}"
    );
    terminate(&mut process).await;
    let mut logs = String::new();
    process
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();

    let seen = stand_in.received_requests().await.unwrap();
    assert_eq!(seen.len(), 3);
    for request in seen.iter() {
        assert_eq!(request.headers["x-api-key"], "env-secret-9876543210");
    }
    for secret in ["env-secret-9876543210", "file-secret-0123456789"] {
        assert!(!logs.contains(secret), "a header value was logged");
        assert!(!metrics.contains(secret));
        assert!(!problems.contains(secret));
    }
    assert!(
        !logs.contains("testuser@example.com"),
        "the e-mail in the URL was logged"
    );
    let refusals = logs
        .lines()
        .filter(|line| line.contains("refused the deployment's credentials"))
        .count();
    assert_eq!(
        refusals, 1,
        "wrong credentials are logged once a minute at most"
    );
    assert!(logs.len() > 1000, "trace logs were written");
}

#[tokio::test]
async fn a_config_file_with_nonsense_stops_the_binary_naming_the_key() {
    let file = ConfigFile::new(
        "enrichment_sources = [\"people\"]\n[sources.people]\nurl = \"https://api.example/{phone}\"\n",
    );
    let output = binary(free_port())
        .env("ENRICHER_CONFIG", file.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("sources.people.url"), "{said}");
    assert!(said.contains("{phone}"), "{said}");
}

#[tokio::test]
async fn calls_with_the_same_filled_url_share_one_upstream_call_and_different_urls_do_not() {
    let stand_in = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(|request: &Request| {
            json_answer(json!({"path": request.url.path()})).set_delay(Duration::from_millis(300))
        })
        .mount(&stand_in)
        .await;
    let url = format!("{}/person/{{email}}", stand_in.uri());
    let app = spawn_app_from_variables(&[
        ("ENRICHMENT_SOURCES", "people"),
        ("SOURCE_PEOPLE_METHOD", "GET"),
        ("SOURCE_PEOPLE_URL", &url),
    ])
    .await;
    let profiles = [
        ("a", "x@example.com"),
        ("b", "x@example.com"),
        ("c", "y@example.com"),
    ]
    .map(|(user, email)| {
        let mut profile = ann();
        profile["userId"] = json!(user);
        profile["email"] = json!(email);
        profile
    });

    let answers = futures::future::join_all(profiles.iter().map(|p| post(&app, p))).await;

    let mut paths = Vec::new();
    for answer in answers {
        let body: Value = answer.json().await.unwrap();
        paths.push(body["enrichment"]["path"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        paths,
        [
            "/person/x%40example.com",
            "/person/x%40example.com",
            "/person/y%40example.com"
        ]
    );
    assert_eq!(stand_in.received_requests().await.unwrap().len(), 2);
}
