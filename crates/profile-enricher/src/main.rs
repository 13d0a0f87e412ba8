use std::process::ExitCode;

use anyhow::Context;
use profile_enricher::config::get_configuration;
use profile_enricher::startup::Application;
use service_kit::{probe, telemetry};

/// This process in its traces (unless `OTEL_SERVICE_NAME` names it).
const SERVICE: &str = "profile-enricher";

#[actix_web::main]
async fn main() -> anyhow::Result<ExitCode> {
    let settings = get_configuration().context("invalid configuration")?;
    if probe::requested() {
        return Ok(probe::health_check(settings.port));
    }
    let _telemetry = telemetry::init(SERVICE);
    let application = Application::build(settings).await?;
    application.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}
