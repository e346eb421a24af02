//! Telemetry, shutdown signals and background health checks.

use crate::http::Readiness;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Installs the tracing subscriber: JSON lines by default (`FEEPAY_LOG_FORMAT=json`), or
/// human-readable text (`FEEPAY_LOG_FORMAT=text`); the level comes from `RUST_LOG`
/// (default `info`).
pub fn init_telemetry() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into());
    let format = crate::settings::get(&crate::settings::catalog::LOG_FORMAT);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if format == "text" { builder.try_init() } else { builder.json().flatten_event(true).try_init() };
    for name in crate::settings::undeclared_in_env() {
        tracing::warn!(variable = %name, "no setting reads this FEEPAY_ variable: misspelt or left over? (README, Configuration)");
    }
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested, draining");
        t.cancel();
    });
    token
}

/// Pings the database every few seconds and updates readiness.
pub fn spawn_database_check(db: DatabaseConnection, readiness: Arc<Readiness>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let ok = db.execute_unprepared("SELECT 1").await.is_ok();
            if readiness.database.swap(ok, Ordering::Relaxed) != ok {
                tracing::info!(database_ok = ok, "database reachability changed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    });
}
