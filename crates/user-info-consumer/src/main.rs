use std::process::ExitCode;

use anyhow::Context;
use user_info_consumer::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env().context("invalid configuration")?;
    if user_info::probe::requested() {
        return Ok(user_info::probe::health_check(
            settings.consumer_metrics_port,
        ));
    }
    user_info::telemetry::init();
    user_info_consumer::run(settings).await?;
    tracing::info!("user-info-consumer stopped");
    Ok(ExitCode::SUCCESS)
}
