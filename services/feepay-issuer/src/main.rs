use feepay_issuer::app::{App, IssuerSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    feepay_runtime::lifecycle::init_telemetry();
    let settings = IssuerSettings::from_env()?;
    let shutdown = feepay_runtime::lifecycle::shutdown_on_signals();
    let app = App::build(settings, feepay_runtime::clock::system(), shutdown).await?;
    tracing::info!(http = %app.http_addr, "feepay-issuer started");
    app.run().await
}
