use std::process::ExitCode;

use anyhow::Context;
use service_kit::settings::FromVariables;
use service_kit::{probe, telemetry};
use user_info::config::Settings;
use user_info::startup::Application;

/// This process in its traces (unless `OTEL_SERVICE_NAME` names it).
const SERVICE: &str = "user-info";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env().context("invalid configuration")?;
    if probe::requested() {
        return Ok(probe::health_check(settings.port));
    }
    let _telemetry = telemetry::init(SERVICE);
    settings.api_tokens.warn_when_off();
    let application = Application::build(settings).context("cannot start the server")?;
    tracing::info!(port = application.port(), "user-info listening");
    application.run_until_stopped().await?;
    tracing::info!("user-info stopped");
    Ok(ExitCode::SUCCESS)
}
