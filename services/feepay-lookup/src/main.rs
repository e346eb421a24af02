use feepay_lookup::app::{App, LookupSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    feepay_runtime::lifecycle::init_telemetry();
    let settings = LookupSettings::from_env()?;
    let shutdown = feepay_runtime::lifecycle::shutdown_on_signals();
    let app = App::build(settings, shutdown).await?;
    tracing::info!(http = %app.addr, ops = %app.ops_addr, "feepay-lookup started");
    app.run().await
}
