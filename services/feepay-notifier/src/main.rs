use feepay_notifier::app::{App, NotifierSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    feepay_runtime::lifecycle::init_telemetry();
    let settings = NotifierSettings::from_env()?;
    let shutdown = feepay_runtime::lifecycle::shutdown_on_signals();
    let app = App::build(settings, shutdown).await?;
    tracing::info!(http = %app.http_addr, "feepay-notifier started");
    app.run().await
}
