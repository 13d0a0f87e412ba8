use std::process::ExitCode;

use anyhow::Context;
use service_kit::{probe, telemetry};
use user_info_consumer::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env().context("invalid configuration")?;
    if probe::requested() {
        return Ok(probe::health_check(settings.consumer.consumer_metrics_port));
    }
    telemetry::init();
    user_info_consumer::run(settings).await?;
    tracing::info!("user-info-consumer stopped");
    Ok(ExitCode::SUCCESS)
}
