//! What the binary checks as it starts: `API_TOKENS` as every process does - a
//! token under 16 characters stops it, none is a warning. No broker and no
//! database are needed for either.

use std::time::Duration;

use user_store::testing::eventually;

use crate::support::{ConsumerProcess, free_port};

/// The consumer with nothing to reach: a broker and a database on closed ports.
fn consumer(api_tokens: Option<&str>) -> ConsumerProcess {
    let database = format!(
        "postgres://postgres:postgres@127.0.0.1:{}/none",
        free_port()
    );
    let broker = format!("127.0.0.1:{}", free_port());
    let mut vars = vec![
        ("DATABASE_URL", database.as_str()),
        ("KAFKA_BOOTSTRAP_SERVERS", broker.as_str()),
    ];
    if let Some(tokens) = api_tokens {
        vars.push(("API_TOKENS", tokens));
    }
    ConsumerProcess::start(&vars)
}

fn warning_lines(process: &ConsumerProcess) -> Vec<String> {
    std::fs::read_to_string(&process.log)
        .unwrap()
        .lines()
        .filter(|line| line.contains("API_TOKENS"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_token_under_16_characters_stops_the_consumer_at_start_naming_api_tokens() {
    let mut process = consumer(Some("fifteen-chars-x"));
    let status = process.exit_within(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|status| !status.success()),
        "the consumer started with a 15-character token: {status:?}"
    );
    let log = std::fs::read_to_string(&process.log).unwrap();
    assert!(log.contains("API_TOKENS"), "{log}");
    assert!(!log.contains("fifteen-chars-x"), "{log}");
}

#[tokio::test]
async fn without_api_tokens_the_consumer_warns_and_a_16_character_token_starts_it_quietly() {
    for (tokens, warnings) in [(None, 1), (Some("sixteen-chars-xx"), 0)] {
        let mut process = consumer(tokens);
        let up = eventually(Duration::from_secs(20), || async {
            process.status("/health").await == Some(200)
        })
        .await;
        assert!(up, "{tokens:?}: /health never answered");
        assert!(process.is_running(), "{tokens:?}");
        let lines = warning_lines(&process);
        assert_eq!(lines.len(), warnings, "{tokens:?}: {lines:?}");
        assert!(lines.iter().all(|line| line.contains("WARN")), "{lines:?}");
    }
}
