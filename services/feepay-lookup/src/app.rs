//! The lookup process: a public HTTP server (pages, JSON API, documents, keys) and an
//! operations server (`/metrics`, `/healthz`, `/readyz`) on a separate address.

use crate::failure::Failure;
use crate::limit::RateLimiter;
use crate::page::{public_receipt, Pages, ReceiptView, Replacement};
pub use crate::settings::LookupSettings;
use crate::store::{Store, StoredReceipt};
use crate::verify::{self, Verdict};
use crate::{api, site};
use anyhow::Context;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use feepay_domain::receipt::normalize_lookup_code;
use feepay_runtime::http::{self, Readiness};
use feepay_runtime::metrics::{counter_vec, histogram_vec};
use feepay_runtime::pki::TrustAnchors;
use prometheus::{HistogramVec, IntCounterVec, Registry};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = feepay_runtime::service::LOOKUP;

#[derive(Clone)]
struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// What every request handler shares.
pub struct Shared {
    pub(crate) store: Store,
    pub(crate) checker: verify::Checker,
    pub(crate) pages: Pages,
    limiter: RateLimiter,
    uploads: tokio::sync::Semaphore,
    pub(crate) settings: LookupSettings,
    metrics: Metrics,
}

pub(crate) type St = State<Arc<Shared>>;

pub struct App {
    pub addr: SocketAddr,
    pub ops_addr: SocketAddr,
    shutdown: CancellationToken,
    public: tokio::task::JoinHandle<()>,
    ops: tokio::task::JoinHandle<()>,
}

impl App {
    /// Binds the operations port (reporting not ready), waits for PostgreSQL with a
    /// current schema, then binds the public port.
    pub async fn build(settings: LookupSettings, shutdown: CancellationToken) -> anyhow::Result<App> {
        let registry = Registry::new();
        let metrics = Metrics {
            requests: counter_vec(
                &registry,
                "feepay_lookup_requests_total",
                "Public lookup requests by route and outcome",
                &["route", "outcome"],
            ),
            duration: histogram_vec(
                &registry,
                "feepay_lookup_request_duration_seconds",
                "Time to answer a public request, including the constant-time floor",
                &["route"],
                &[0.01, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5],
            ),
        };
        for route in ["page", "api_receipt", "document", "verify", "keys"] {
            for outcome in ["found", "not_found", "not_authentic", "limited", "error", "second_factor"] {
                metrics.requests.with_label_values(&[route, outcome]);
            }
        }
        let edge = http::EdgeMetrics::new(&registry, SERVICE);
        let trust = TrustAnchors::load(&settings.trust_anchors).map_err(anyhow::Error::msg)?;
        let readiness = Arc::new(Readiness::without_broker());
        let (ops_addr, ops) =
            http::serve(settings.ops_addr, http::ops_router(registry, readiness.clone()), shutdown.clone())
                .await
                .with_context(|| format!("binding the operations address {}", settings.ops_addr))?;
        let db = feepay_runtime::startup::database(&settings.database, &readiness, &shutdown)
            .await
            .context("stopped while waiting for PostgreSQL")?;
        feepay_runtime::lifecycle::spawn_database_check(db.clone(), readiness.clone(), shutdown.clone());
        let shared = Arc::new(Shared {
            store: Store::new(db),
            checker: verify::Checker::new(trust, settings.verify_workers),
            pages: Pages::new(),
            limiter: RateLimiter::new(settings.rate_per_minute, settings.burst),
            uploads: tokio::sync::Semaphore::new(settings.max_uploads),
            settings: settings.clone(),
            metrics,
        });
        let limits = http::EdgeLimits {
            header_read_timeout: settings.header_timeout,
            idle_timeout: settings.idle_timeout,
            max_connections: settings.max_connections,
            // Behind proxies every connection is a proxy's: capping them per address would
            // cap the whole service.
            max_connections_per_address: if settings.proxy_hops > 0 { 0 } else { settings.max_connections_per_address },
            shutdown_grace: Duration::from_secs(5),
        };
        let (addr, public) = http::serve_public(settings.addr, router(shared), limits, Some(edge), shutdown.clone())
            .await
            .with_context(|| format!("binding the public address {}", settings.addr))?;
        Ok(App { addr, ops_addr, shutdown, public, ops })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        let _ = self.public.await;
        let _ = self.ops.await;
        tracing::info!("feepay-lookup stopped");
        Ok(())
    }
}

/// The handler of the receipt page's QR image, which the CSP allows by its hash.
const QR_ONLOAD: &str = "document.body.setAttribute('data-qr-width', String(this.naturalWidth))";

/// Content-Security-Policy of every public response: nothing from elsewhere, no script but
/// the QR image's handler, no framing.
fn content_security_policy() -> HeaderValue {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(QR_ONLOAD.as_bytes()));
    HeaderValue::from_str(&format!(
        "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-hashes' 'sha256-{hash}'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ))
    .expect("a valid header")
}

fn router(shared: Arc<Shared>) -> Router {
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::set_header::SetResponseHeaderLayer;
    let timeout = shared.settings.request_timeout;
    let concurrent = shared.settings.max_concurrent;
    // Bodies are refused on their declared length before a byte is read, and a chunked body
    // is cut off at the same size: 1 MiB on the two verification routes, 4 KiB elsewhere.
    let uploads = Router::new()
        .route("/xac-thuc", get(site::verify_code_page).post(site::verify_upload_page))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(api::UPLOAD_LIMIT));
    Router::new()
        .route("/", get(site::index))
        .route("/tra-cuu", get(site::lookup_form))
        .route("/tra-cuu/{code}", get(site::receipt_page))
        .route("/tra-cuu/{code}/bien-lai.xml", get(api::receipt_document))
        .layer(RequestBodyLimitLayer::new(api::BODY_LIMIT))
        .merge(uploads)
        .merge(api::router())
        .layer(middleware::from_fn_with_state(shared.clone(), limit))
        .layer(middleware::from_fn_with_state(shared.clone(), upload_slot))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(concurrent))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, content_security_policy()))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        // Receipts hold personal data: no cache keeps them.
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .with_state(shared)
}

/// The client: `proxy_hops` addresses from the right of `X-Forwarded-For` followed by the
/// peer. Entries a client wrote itself sit further left and are never reached.
fn client_ip(shared: &Shared, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    let peer_ip = peer.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let hops = shared.settings.proxy_hops;
    if hops == 0 {
        return peer_ip;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    // [.., client, proxy 1, ..., proxy n-1] + [peer = proxy n]
    forwarded.len().checked_sub(hops).map(|i| forwarded[i]).unwrap_or(peer_ip)
}

/// The rate limit's key: an IPv6 client is its /64 (one subscriber's whole prefix), an IPv4
/// client its address.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// An upload for verification waits for one of `FEEPAY_LOOKUP_MAX_UPLOADS` slots before a
/// byte of its body is read (within the request timeout), so the bodies held at once stay
/// within that many times 1 MiB, however many clients send slowly.
async fn upload_slot(State(shared): St, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() != axum::http::Method::POST
        || !(path.starts_with("/api/v1/verify") || path.starts_with("/xac-thuc"))
    {
        return next.run(req).await;
    }
    let _slot = shared.uploads.acquire().await;
    next.run(req).await
}

async fn limit(State(shared): St, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let ip = limit_key(client_ip(&shared, req.headers(), peer));
    match shared.limiter.check(ip) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let route = route_of(req.uri().path());
            shared.metrics.requests.with_label_values(&[route, "limited"]).inc();
            let failure = Failure::RateLimited { retry_after_secs: wait.as_secs() + 1 };
            let path = req.uri().path();
            if path.starts_with("/api/") || path == "/openapi.json" {
                failure.json()
            } else {
                failure.page(&shared.pages)
            }
        }
    }
}

fn route_of(path: &str) -> &'static str {
    if path.starts_with("/api/v1/keys") {
        "keys"
    } else if path.ends_with("/document") || path.ends_with(".xml") {
        "document"
    } else if path.starts_with("/api/v1/verify") || path.starts_with("/xac-thuc") {
        "verify"
    } else if path.starts_with("/api/v1/receipts") {
        "api_receipt"
    } else {
        "page"
    }
}

impl Shared {
    /// Finds a receipt by a code as typed. Malformed and unknown codes take the same path
    /// (one indexed query) and the answer is held until the floor, so neither the answer
    /// nor its timing says whether a code exists.
    pub(crate) async fn find(&self, typed: &str, started: Instant) -> Result<Option<StoredReceipt>, Failure> {
        let code = normalize_lookup_code(typed).unwrap_or_else(|| "-".repeat(19));
        let found = self.store.by_code(&code).await;
        tokio::time::sleep_until((started + self.settings.min_response).into()).await;
        found.map_err(|e| {
            tracing::error!(error = %e, "receipt lookup failed");
            Failure::Unavailable
        })
    }

    /// Verifies by lookup code: the stored document goes through the same checks as an
    /// upload.
    pub(crate) async fn verify_code(&self, typed: &str, started: Instant) -> Result<Option<Verdict>, Failure> {
        let Some(s) = self.find(typed, started).await? else {
            return Ok(None);
        };
        verify::verify(&self.store, &self.checker, &s.document).await.map(Some).map_err(verify::NoVerdict::failure)
    }

    pub(crate) fn count(&self, route: &str, outcome: &str, started: Instant) {
        self.metrics.requests.with_label_values(&[route, outcome]).inc();
        self.metrics.duration.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    }

    pub(crate) async fn view(&self, s: &StoredReceipt) -> ReceiptView {
        let replaced_by = match s.replaced_by {
            Some(id) => self.store.by_id(id).await.ok().flatten().map(|n| Replacement {
                number: format!("{:07}", n.number),
                symbol: n.symbol.clone(),
                url: format!("/tra-cuu/{}", n.receipt.lookup_code),
            }),
            None => None,
        };
        let notices = self
            .store
            .notices(s.receipt_id)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|n| crate::page::NoticeView {
                reason: n.reason,
                payer_name: n.corrections["full_name"].as_str().unwrap_or_default().to_string(),
                payer_address: n.corrections["address"].as_str().unwrap_or_default().to_string(),
                notified_at: feepay_domain::receipt::rfc3339(n.notified_at),
            })
            .collect();
        let refunds = self
            .store
            .refunds_on(s)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|f| crate::page::RefundView {
                amount: f.amount.to_string(),
                recorded_at: f.recorded_at.map(feepay_domain::receipt::rfc3339),
            })
            .collect();
        ReceiptView {
            status: s.status.clone(),
            cancelled_at: s.cancelled_at.map(feepay_domain::receipt::rfc3339),
            cancel_reason: s.cancel_reason.clone(),
            replaced_at: s.replaced_at.map(feepay_domain::receipt::rfc3339),
            replaced_by,
            notices,
            refunds,
            receipt: public_receipt(&s.receipt),
            document_url: format!("/api/v1/receipts/{}/document", s.receipt.lookup_code),
        }
    }
}
