//! The operations endpoint of every service: `/metrics`, `/healthz`, `/readyz`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What `/readyz` reports. Services flip the flags as they learn.
#[derive(Debug, Default)]
pub struct Readiness {
    pub database: AtomicBool,
    pub broker: AtomicBool,
    pub assigned: AtomicBool,
    /// Services without a consumer set this at start.
    pub no_consumer: AtomicBool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.database.load(Ordering::Relaxed)
            && self.broker.load(Ordering::Relaxed)
            && (self.no_consumer.load(Ordering::Relaxed) || self.assigned.load(Ordering::Relaxed))
    }
}

#[derive(Clone)]
struct Ops {
    registry: Registry,
    readiness: Arc<Readiness>,
}

/// Router with the operations endpoints; services may merge their own routes.
pub fn ops_router(registry: Registry, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Ops { registry, readiness })
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&ops.registry))
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    let r = &ops.readiness;
    let body = serde_json::json!({
        "database": r.database.load(Ordering::Relaxed),
        "broker": r.broker.load(Ordering::Relaxed),
        "consumer_assigned": r.no_consumer.load(Ordering::Relaxed) || r.assigned.load(Ordering::Relaxed),
    });
    let status = if r.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body))
}

/// Binds `addr` (port 0 picks a free port) and serves until cancelled.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let r = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    Ok((bound, handle))
}
