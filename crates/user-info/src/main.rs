use anyhow::Context;
use user_info::config::Settings;
use user_info::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    user_info::telemetry::init();
    let settings = Settings::from_env().context("invalid configuration")?;
    let application = Application::build(settings).context("cannot start the server")?;
    tracing::info!(port = application.port(), "user-info listening");
    application.run_until_stopped().await?;
    tracing::info!("user-info stopped");
    Ok(())
}
