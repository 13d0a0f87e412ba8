use std::process::ExitCode;

use anyhow::Context;
use profile_enricher::config::get_configuration;
use profile_enricher::probe;
use profile_enricher::startup::Application;
use profile_enricher::telemetry::init_subscriber;

#[actix_web::main]
async fn main() -> anyhow::Result<ExitCode> {
    match dotenvy::dotenv() {
        Err(error) if !error.not_found() => return Err(error).context("could not read .env"),
        _ => {}
    }
    let settings = get_configuration()?;
    if probe::requested() {
        return Ok(probe::health_check(settings.port));
    }
    init_subscriber()?;
    let application = Application::build(settings).await?;
    application.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}
