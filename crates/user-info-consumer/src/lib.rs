//! The Kafka consumer of user records: Kafka -> the user-info store, at least
//! once. See `consumer` for the delivery guarantee.

pub mod config;
pub mod consumer;
pub mod handler;
mod http;
pub mod metrics;

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Settings;
use crate::consumer::{Status, UserConsumer};
use crate::metrics::Metrics;

/// Runs the consumer and its HTTP port until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let database = user_info::store::Database::start(&settings.database())?;
    let metrics = Metrics::new().context("cannot register metrics")?;
    let status = Arc::new(Status::new(database, metrics));
    let listener = TcpListener::bind((
        settings.consumer_metrics_host.as_str(),
        settings.consumer_metrics_port,
    ))
    .context("cannot bind the metrics port")?;
    tracing::info!(port = listener.local_addr()?.port(), "metrics listening");
    let server = http::serve(listener, status.clone()).context("cannot start the metrics port")?;
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);

    let consumer =
        UserConsumer::new(&settings, status).context("cannot create the Kafka clients")?;
    let result = consumer.run(consumer::shutdown_signal()).await;

    server_handle.stop(true).await;
    let _ = server_task.await;
    result
}
