use feepay_lookup::app::{App, LookupSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `feepay-lookup openapi` prints the API's OpenAPI document (the committed copy in
    // services/feepay-lookup/openapi.json is this output).
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        use std::io::Write;
        std::io::stdout().write_all(feepay_lookup::api::openapi().as_bytes())?;
        return Ok(());
    }
    feepay_runtime::lifecycle::init_telemetry();
    let settings = LookupSettings::from_env()?;
    let shutdown = feepay_runtime::lifecycle::shutdown_on_signals();
    let app = App::build(settings, shutdown).await?;
    tracing::info!(http = %app.addr, ops = %app.ops_addr, "feepay-lookup started");
    app.run().await
}
