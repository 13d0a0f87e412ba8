use std::process::ExitCode;

use anyhow::Context;
use service_kit::settings::FromVariables;
use service_kit::{probe, telemetry};
use user_info_consumer::config::Settings;
use user_info_consumer::replay::{self, Options};

/// This process in its traces (unless `OTEL_SERVICE_NAME` names it).
const SERVICE: &str = "user-info-consumer";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env().context("invalid configuration")?;
    if probe::requested() {
        return Ok(probe::health_check(settings.consumer.consumer_metrics_port));
    }
    let _telemetry = telemetry::init(SERVICE);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|command| command == "replay-dlq") {
        let options = Options::parse(&args[1..]).map_err(anyhow::Error::msg)?;
        let summary = replay::replay(&settings.consumer, &settings.database, &options).await?;
        let verb = if options.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        println!(
            "replay-dlq: {} dead letters read, {verb} {}, {} left out by the filters, \
             {} superseded (their users changed since)",
            summary.read, summary.replayed, summary.skipped, summary.superseded
        );
        return Ok(ExitCode::SUCCESS);
    }
    user_info_consumer::run(settings).await?;
    tracing::info!("user-info-consumer stopped");
    Ok(ExitCode::SUCCESS)
}
