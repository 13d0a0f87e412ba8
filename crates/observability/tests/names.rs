//! Every series the dashboard and the alert rules query is one a process
//! registers: a renamed or misspelt metric fails here, not on a dashboard
//! that silently shows nothing or an alert that can never fire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use observability::{dashboard_expressions, directory, rules, series_names, test_series};
use user_store::{Database, DatabaseSettings};

/// Every series name the three processes can expose, from their registries
/// (labelled metrics without a sample yet included).
fn registered() -> BTreeSet<String> {
    // Never reached: the pool gauges only need a database to point at.
    let settings = DatabaseSettings {
        url: "postgres://nobody@127.0.0.1:9/none".to_owned(),
        pool_size: 1,
        connect_timeout: Duration::from_secs(1),
        query_timeout: Duration::from_secs(1),
    };
    let database = Database::start(&settings, "observability-check").unwrap();
    let user_info = user_info::metrics::Metrics::new(&database).unwrap();
    let consumer = user_info_consumer::metrics::Metrics::new(&database).unwrap();
    let enricher = profile_enricher::metrics::Metrics::new().unwrap();
    [
        user_info.registry().catalogue(),
        consumer.registry().catalogue(),
        enricher.registry().catalogue(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn read(file: &str) -> String {
    std::fs::read_to_string(directory().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// (where, PromQL) of every query in deploy/observability.
fn queries() -> Vec<(String, String)> {
    let dashboard: serde_json::Value = serde_json::from_str(&read("dashboard.json")).unwrap();
    let mut queries: Vec<(String, String)> = dashboard_expressions(&dashboard)
        .into_iter()
        .map(|expr| ("dashboard.json".to_owned(), expr))
        .collect();
    for rule in rules(&read("alerts.yaml")).unwrap() {
        queries.push((format!("alerts.yaml {}", rule.name), rule.expr));
    }
    for series in test_series(&read("alerts.test.yaml")).unwrap() {
        queries.push(("alerts.test.yaml input_series".to_owned(), series));
    }
    queries
}

#[tokio::test]
async fn every_series_the_dashboard_and_the_alerts_query_is_registered_by_a_process() {
    let registered = registered();
    let queries = queries();
    assert!(
        queries.len() > 20,
        "the files hold their queries: {queries:?}"
    );
    let mut unknown = Vec::new();
    for (place, expr) in &queries {
        for name in series_names(expr).unwrap_or_else(|e| panic!("{place}: {e} in {expr}")) {
            if !registered.contains(&name) {
                unknown.push(format!("{place}: {name} (in `{expr}`)"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "series no process registers:\n{}\n\nregistered:\n{}",
        unknown.join("\n"),
        registered.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test]
async fn the_dashboard_shows_every_process_and_the_alerts_cover_what_the_operators_asked_for() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("dashboard.json")).unwrap();
    let shown: BTreeSet<String> = dashboard_expressions(&dashboard)
        .iter()
        .flat_map(|expr| series_names(expr).unwrap())
        .collect();
    for prefix in ["user_info_", "consumer_", "enricher_"] {
        for what in [
            "http_request_duration_seconds",
            "process_resident_memory_bytes",
            "db_pool_size",
        ] {
            let name = format!("{prefix}{what}");
            let skip = prefix == "consumer_" && what.starts_with("http")
                || prefix == "enricher_" && what.starts_with("db_pool");
            if !skip {
                assert!(
                    shown.iter().any(|series| series.starts_with(&name)),
                    "the dashboard shows {name}"
                );
            }
        }
    }
    let alerts: BTreeSet<String> = rules(&read("alerts.yaml"))
        .unwrap()
        .into_iter()
        .map(|rule| rule.name)
        .collect();
    for alert in [
        "ConsumerLagGrowing",
        "ConsumerDeadLetters",
        "UserInfoHighErrorRatio",
        "EnricherHighErrorRatio",
        "EnricherUpstreamFailures",
        "EnricherCircuitOpen",
        "EnricherSourceCredentialsRejected",
        "EnricherKafkaUnhealthy",
    ] {
        assert!(alerts.contains(alert), "{alert} in {alerts:?}");
    }
}
