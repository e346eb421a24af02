//! The operations endpoint of every service: `/metrics`, `/healthz`, `/readyz`.

use crate::consumer::ConsumerState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// What `/readyz` reports. Services flip the flags as they learn; a consumer's state
/// (assignment, stall) is read live.
#[derive(Debug, Default)]
pub struct Readiness {
    pub database: AtomicBool,
    /// The schema has every migration this build knows.
    pub schema: AtomicBool,
    pub broker: AtomicBool,
    /// Services without a broker (the lookup service) set this at start.
    pub no_broker: AtomicBool,
    consumer: OnceLock<Arc<ConsumerState>>,
}

impl Readiness {
    /// Readiness of a service that uses no broker.
    pub fn without_broker() -> Self {
        let r = Readiness::default();
        r.no_broker.store(true, Ordering::Relaxed);
        r
    }

    /// Makes readiness follow a consumer: assigned partitions and not stalled.
    pub fn follow(&self, consumer: Arc<ConsumerState>) {
        let _ = self.consumer.set(consumer);
    }

    pub fn ready(&self) -> bool {
        self.database.load(Ordering::Relaxed)
            && self.schema.load(Ordering::Relaxed)
            && (self.no_broker.load(Ordering::Relaxed) || self.broker.load(Ordering::Relaxed))
            && self.consumer.get().is_none_or(|c| c.assigned() && !c.stalled())
    }

    fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "database": self.database.load(Ordering::Relaxed),
            "schema_current": self.schema.load(Ordering::Relaxed),
            "broker": self.no_broker.load(Ordering::Relaxed) || self.broker.load(Ordering::Relaxed),
        });
        if let Some(c) = self.consumer.get() {
            body["consumer_assigned"] = c.assigned().into();
            body["partitions"] = c.assignment().into();
            body["stalled"] = c.stalled().into();
            body["lag"] = c.lag().into();
        }
        body
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
    let status = if r.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(r.body()))
}

/// Binds `addr` (port 0 picks a free port) and serves the operations router until
/// cancelled, on a thread of its own with a single-threaded runtime: `/healthz`,
/// `/readyz` and `/metrics` answer even while every worker of the service's runtime is
/// busy, so a probe sees a slow service as slow, not as dead, and an operator can still
/// read its metrics. The returned task ends when the server has stopped.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let (stopped, on_stop) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new().name(format!("ops-http-{}", bound.port())).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "operations server: no runtime");
                return;
            }
        };
        runtime.block_on(async move {
            let r = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                        .with_graceful_shutdown(async move { shutdown.cancelled().await })
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "http server stopped");
            }
        });
        drop(stopped);
    })?;
    let handle = tokio::spawn(async move {
        let _ = on_stop.await;
    });
    Ok((bound, handle))
}

mod public;
pub use public::{serve_public, EdgeLimits, EdgeMetrics};
