use anyhow::Context;
use user_info_consumer::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    user_info::telemetry::init();
    let settings = Settings::from_env().context("invalid configuration")?;
    user_info_consumer::run(settings).await?;
    tracing::info!("user-info-consumer stopped");
    Ok(())
}
