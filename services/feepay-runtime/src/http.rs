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
use std::time::Duration;
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

/// Limits of a server that faces the internet.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Longest a client may take to send the request head (slow-loris protection).
    pub header_read_timeout: Duration,
    /// Longest a shutdown waits for open connections before dropping them.
    pub shutdown_grace: Duration,
}

/// Serves `router` like [`serve`], for the internet: a client that does not send its
/// request head within the limit is cut off, and a shutdown waits for open connections
/// only up to a deadline, never for a stalled client.
pub async fn serve_public(
    addr: SocketAddr,
    router: Router,
    limits: EdgeLimits,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use tower::ServiceExt;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let graceful = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let conn = graceful.watch(conn.into_owned());
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
            });
        }
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(limits.shutdown_grace) => {
                tracing::warn!("connections still open after the shutdown grace period were dropped");
            }
        }
    });
    Ok((bound, handle))
}
