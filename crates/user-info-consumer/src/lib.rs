//! The Kafka consumer of user records: Kafka -> the user store, at least once.
//! A pipeline: a record is decoded (`records`), a batch of them folded once per
//! user, then applied to the store or written to the dead-letter topic
//! (`service_kit::kafka::DeadLetters`); `consumer` only moves data and stores offsets once their
//! effect is durable (see there for the delivery guarantee).

pub mod config;
pub mod consumer;
mod http;
pub mod metrics;
pub mod records;
pub mod replay;
mod status;

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use user_store::Database;

use crate::config::Settings;
use crate::consumer::UserConsumer;
use crate::metrics::Metrics;
pub use crate::status::Status;

/// Runs the consumer and its HTTP port until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let database = Database::start(&settings.database, "user-info-consumer")?;
    let metrics = Metrics::new(&database).context("cannot register metrics")?;
    let status = Arc::new(Status::new(database, metrics));
    let listener = TcpListener::bind((
        settings.consumer.consumer_metrics_host.as_str(),
        settings.consumer.consumer_metrics_port,
    ))
    .context("cannot bind the metrics port")?;
    tracing::info!(port = listener.local_addr()?.port(), "metrics listening");
    settings.consumer.api_tokens.warn_when_off();
    let server = http::serve(listener, status.clone()).context("cannot start the metrics port")?;
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);

    let consumer =
        UserConsumer::new(&settings.consumer, status).context("cannot create the Kafka clients")?;
    let result = consumer.run(service_kit::shutdown::signal()).await;

    // The metrics port stops at once: the 10 s SIGTERM budget is spent above.
    server_handle.stop(false).await;
    let _ = server_task.await;
    result
}
