//! The lookup process: a public HTTP server (pages, JSON API, documents, keys) and an
//! operations server (`/metrics`, `/healthz`, `/readyz`) on a separate address.

use crate::limit::RateLimiter;
use crate::page::{public_receipt, Pages, ReceiptView, Replacement};
use crate::store::{Store, StoredReceipt};
use crate::verify::{self, Verdict};
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use feepay_domain::receipt::normalize_lookup_code;
use feepay_runtime::http::{self, Readiness};
use feepay_runtime::metrics::{counter_vec, histogram_vec};
use feepay_runtime::pki::TrustAnchors;
use feepay_runtime::settings::{self, catalog, DatabaseSettings};
use prometheus::{HistogramVec, IntCounterVec, Registry};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = feepay_runtime::service::LOOKUP;

/// The OpenAPI document of the public API.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Debug, Clone)]
pub struct LookupSettings {
    pub database: DatabaseSettings,
    /// `FEEPAY_LOOKUP_ADDR` (default `127.0.0.1:8080`): the public server.
    pub addr: SocketAddr,
    /// `FEEPAY_LOOKUP_OPS_ADDR` (default `127.0.0.1:9104`): metrics and health, not public.
    pub ops_addr: SocketAddr,
    /// `FEEPAY_LOOKUP_PUBLIC_URL` (default `http://127.0.0.1:8080`): the address citizens use;
    /// the QR code on a receipt page links to `<public url>/tra-cuu/<code>`.
    pub public_url: String,
    /// `FEEPAY_LOOKUP_RATE_PER_MINUTE` (default 120) and `FEEPAY_LOOKUP_BURST` (default 30):
    /// requests allowed per client address.
    pub rate_per_minute: u32,
    pub burst: u32,
    /// `FEEPAY_LOOKUP_MIN_RESPONSE_MS` (default 100): every answer to a lookup code takes at
    /// least this long, found or not, so timing tells nothing about which codes exist.
    pub min_response: Duration,
    /// `FEEPAY_LOOKUP_PROXY_HOPS` (default 0): how many reverse proxies stand in front; the
    /// client is the address that many hops from the right of `X-Forwarded-For` + the peer,
    /// so an address a client writes in the header itself is never believed.
    pub proxy_hops: usize,
    /// `FEEPAY_LOOKUP_HEADER_TIMEOUT_SECS` (default 10): a client must send its request
    /// head within this; `FEEPAY_LOOKUP_REQUEST_TIMEOUT_SECS` (default 20): the whole
    /// request, body included, within this (408 after).
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    /// `FEEPAY_LOOKUP_MAX_CONCURRENT` (default 256): requests served at once; more wait.
    pub max_concurrent: usize,
    /// `FEEPAY_TRUST_ANCHORS` (default `.local/pki/ca.pem`): the CA certificates (PEM) a
    /// receipt's signing certificate must chain to. Read at start-up.
    pub trust_anchors: std::path::PathBuf,
}

impl LookupSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(LookupSettings {
            database: DatabaseSettings::from_env()?,
            addr: settings::parse(&catalog::LOOKUP_ADDR)?,
            ops_addr: settings::parse(&catalog::LOOKUP_OPS_ADDR)?,
            public_url: settings::get(&catalog::LOOKUP_PUBLIC_URL).trim_end_matches('/').into(),
            rate_per_minute: settings::parse(&catalog::LOOKUP_RATE_PER_MINUTE)?,
            burst: settings::parse(&catalog::LOOKUP_BURST)?,
            min_response: Duration::from_millis(settings::parse(&catalog::LOOKUP_MIN_RESPONSE_MS)?),
            proxy_hops: match settings::opt(&catalog::LOOKUP_PROXY_HOPS) {
                Some(_) => settings::parse(&catalog::LOOKUP_PROXY_HOPS)?,
                // The former switch: one proxy.
                None => usize::from(settings::parse::<bool>(&catalog::LOOKUP_TRUST_FORWARDED)?),
            },
            header_timeout: Duration::from_secs(settings::parse(&catalog::LOOKUP_HEADER_TIMEOUT_SECS)?),
            request_timeout: Duration::from_secs(settings::parse(&catalog::LOOKUP_REQUEST_TIMEOUT_SECS)?),
            max_concurrent: settings::parse(&catalog::LOOKUP_MAX_CONCURRENT)?,
            trust_anchors: settings::get(&catalog::TRUST_ANCHORS).into(),
        })
    }
}

#[derive(Clone)]
struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

struct Shared {
    store: Store,
    trust: TrustAnchors,
    pages: Pages,
    limiter: RateLimiter,
    settings: LookupSettings,
    metrics: Metrics,
}

type St = State<Arc<Shared>>;

pub struct App {
    pub addr: SocketAddr,
    pub ops_addr: SocketAddr,
    shutdown: CancellationToken,
    public: tokio::task::JoinHandle<()>,
    ops: tokio::task::JoinHandle<()>,
}

/// The public routes, for the OpenAPI cross-check: (method, path) as written in the document.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/receipts/{code}"),
    ("get", "/api/v1/receipts/{code}/document"),
    ("post", "/api/v1/verify"),
    ("get", "/api/v1/keys"),
    ("get", "/openapi.json"),
];

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
            for outcome in ["found", "not_found", "not_authentic", "limited", "error"] {
                metrics.requests.with_label_values(&[route, outcome]);
            }
        }
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
            trust,
            pages: Pages::new(),
            limiter: RateLimiter::new(settings.rate_per_minute, settings.burst),
            settings: settings.clone(),
            metrics,
        });
        let limits =
            http::EdgeLimits { header_read_timeout: settings.header_timeout, shutdown_grace: Duration::from_secs(5) };
        let (addr, public) = http::serve_public(settings.addr, router(shared), limits, shutdown.clone())
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
        .route("/xac-thuc", get(verify_code_page).post(verify_upload_page))
        .route("/api/v1/verify", post(verify_api))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(UPLOAD_LIMIT));
    Router::new()
        .route("/", get(index))
        .route("/tra-cuu", get(lookup_form))
        .route("/tra-cuu/{code}", get(receipt_page))
        .route("/tra-cuu/{code}/bien-lai.xml", get(document))
        .route("/api/v1/receipts/{code}", get(receipt_json))
        .route("/api/v1/receipts/{code}/document", get(document))
        .route("/api/v1/keys", get(keys))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .layer(RequestBodyLimitLayer::new(4096))
        .merge(uploads)
        .layer(middleware::from_fn_with_state(shared.clone(), limit))
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

/// Largest receipt document accepted for verification.
const UPLOAD_LIMIT: usize = 1024 * 1024;

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

async fn limit(State(shared): St, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let ip = limit_key(client_ip(&shared, req.headers(), peer));
    match shared.limiter.check(ip) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let route = route_of(req.uri().path());
            shared.metrics.requests.with_label_values(&[route, "limited"]).inc();
            let secs = wait.as_secs() + 1;
            let wants_json = req.uri().path().starts_with("/api/");
            let mut resp = if wants_json {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(serde_json::json!({"error": "rate_limited", "message": format!("Quá nhiều yêu cầu; thử lại sau {secs} giây."), "retryAfterSeconds": secs})),
                )
                    .into_response()
            } else {
                (StatusCode::TOO_MANY_REQUESTS, Html(shared.pages.limited(secs))).into_response()
            };
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            resp
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
    async fn find(&self, typed: &str, started: Instant) -> Result<Option<StoredReceipt>, StatusCode> {
        let code = normalize_lookup_code(typed).unwrap_or_else(|| "-".repeat(19));
        let found = self.store.by_code(&code).await;
        tokio::time::sleep_until((started + self.settings.min_response).into()).await;
        found.map_err(|e| {
            tracing::error!(error = %e, "receipt lookup failed");
            StatusCode::SERVICE_UNAVAILABLE
        })
    }

    fn count(&self, route: &str, outcome: &str, started: Instant) {
        self.metrics.requests.with_label_values(&[route, outcome]).inc();
        self.metrics.duration.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    }

    async fn view(&self, s: &StoredReceipt) -> ReceiptView {
        let replaced_by = match s.replaced_by {
            Some(id) => self.store.by_id(id).await.ok().flatten().map(|n| Replacement {
                number: format!("{:07}", n.number),
                symbol: n.symbol.clone(),
                url: format!("/tra-cuu/{}", n.receipt.lookup_code),
            }),
            None => None,
        };
        ReceiptView {
            status: if s.cancelled { "cancelled" } else { "issued" },
            cancelled_at: s.cancelled_at.map(feepay_domain::receipt::rfc3339),
            cancel_reason: s.cancel_reason.clone(),
            replaced_by,
            receipt: public_receipt(&s.receipt),
            document_url: format!("/api/v1/receipts/{}/document", s.receipt.lookup_code),
        }
    }
}

/// What a person sees when the database cannot be reached.
const UNAVAILABLE_HTML: &str =
    "<!DOCTYPE html><html lang=\"vi\"><meta charset=\"utf-8\"><p>Hệ thống tạm thời không phục vụ được; vui lòng thử lại sau.</p></html>";

fn unavailable_json() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"error": "unavailable", "message": "Hệ thống tạm thời không phục vụ được; vui lòng thử lại sau."})),
    )
        .into_response()
}

fn not_found_json() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not_found", "message": "Không tìm thấy biên lai với mã tra cứu này."})),
    )
        .into_response()
}

async fn index(State(shared): St) -> Html<String> {
    Html(shared.pages.index())
}

#[derive(serde::Deserialize)]
struct CodeQuery {
    #[serde(default)]
    ma: String,
}

async fn lookup_form(Query(q): Query<CodeQuery>) -> Redirect {
    let code = normalize_lookup_code(&q.ma)
        .unwrap_or_else(|| q.ma.chars().filter(char::is_ascii_alphanumeric).take(32).collect());
    if code.is_empty() {
        Redirect::to("/")
    } else {
        Redirect::to(&format!("/tra-cuu/{code}"))
    }
}

async fn receipt_page(State(shared): St, Path(code): Path<String>) -> Response {
    let started = Instant::now();
    match shared.find(&code, started).await {
        Ok(Some(s)) => {
            let view = shared.view(&s).await;
            let url = format!("{}/tra-cuu/{}", shared.settings.public_url, s.receipt.lookup_code);
            shared.count("page", "found", started);
            Html(shared.pages.receipt(&s, &view, &url)).into_response()
        }
        Ok(None) => {
            shared.count("page", "not_found", started);
            (StatusCode::NOT_FOUND, Html(shared.pages.not_found())).into_response()
        }
        Err(status) => {
            shared.count("page", "error", started);
            (status, Html(UNAVAILABLE_HTML)).into_response()
        }
    }
}

async fn receipt_json(State(shared): St, Path(code): Path<String>) -> Response {
    let started = Instant::now();
    match shared.find(&code, started).await {
        Ok(Some(s)) => {
            let view = shared.view(&s).await;
            shared.count("api_receipt", "found", started);
            Json(view).into_response()
        }
        Ok(None) => {
            shared.count("api_receipt", "not_found", started);
            not_found_json()
        }
        Err(_) => {
            shared.count("api_receipt", "error", started);
            unavailable_json()
        }
    }
}

fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

async fn document(State(shared): St, Path(code): Path<String>) -> Response {
    let started = Instant::now();
    match shared.find(&code, started).await {
        Ok(Some(s)) => {
            shared.count("document", "found", started);
            let name = format!("bien-lai-{}-{}-{:07}.xml", safe_name(&s.template), safe_name(&s.symbol), s.number);
            (
                [
                    (header::CONTENT_TYPE, "application/xml; charset=utf-8".to_string()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
                ],
                s.document,
            )
                .into_response()
        }
        Ok(None) => {
            shared.count("document", "not_found", started);
            not_found_json()
        }
        Err(_) => {
            shared.count("document", "error", started);
            unavailable_json()
        }
    }
}

async fn keys(State(shared): St) -> Response {
    let started = Instant::now();
    match shared.store.keys().await {
        Ok(k) => {
            shared.count("keys", "found", started);
            let certificates: Vec<_> = k
                .certificates
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "fingerprint": c.fingerprint,
                        "agencyCode": c.agency_code,
                        "serial": c.serial,
                        "subject": c.subject,
                        "issuer": c.issuer,
                        "taxCode": c.tax_code,
                        "validFrom": feepay_domain::receipt::rfc3339(c.not_before),
                        "validUntil": feepay_domain::receipt::rfc3339(c.not_after),
                        "certificatePem": feepay_runtime::pki::pem("CERTIFICATE", &c.certificate),
                    })
                })
                .collect();
            Json(serde_json::json!({
                "certificates": certificates,
                "trustAnchors": shared.trust.roots().iter().filter_map(|r| r.to_pem().ok()).map(|p| String::from_utf8_lossy(&p).into_owned()).collect::<Vec<_>>(),
                "legacyKeys": {
                    "format": "Ed25519 public keys of layout 1.0 receipts, 32 bytes in lowercase hex; the receipt's <Signature KeyId> names the key",
                    "keys": k.legacy_keys,
                },
            }))
            .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "loading keys failed");
            shared.count("keys", "error", started);
            unavailable_json()
        }
    }
}

/// Verifies by lookup code: the stored document goes through the same checks as an upload.
async fn verify_code(shared: &Shared, typed: &str, started: Instant) -> Result<Option<Verdict>, StatusCode> {
    let Some(s) = shared.find(typed, started).await? else {
        return Ok(None);
    };
    verify::verify(&shared.store, &shared.trust, &s.document).await.map(Some).map_err(|e| {
        tracing::error!(error = %e, "verification failed");
        StatusCode::SERVICE_UNAVAILABLE
    })
}

fn verdict_outcome(v: &Verdict) -> &'static str {
    if v.authentic {
        "found"
    } else {
        "not_authentic"
    }
}

async fn verify_api(State(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    if body.iter().all(u8::is_ascii_whitespace) {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "bad_request", "message": "Gửi tài liệu biên lai (application/xml) hoặc {\"lookupCode\": \"XXXX-XXXX-XXXX-XXXX\"} (application/json)."})),
        )
            .into_response();
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let result = if is_json {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct ByCode {
            lookup_code: String,
        }
        let Ok(req) = serde_json::from_slice::<ByCode>(&body) else {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "bad_request", "message": "Send {\"lookupCode\": \"XXXX-XXXX-XXXX-XXXX\"} as JSON, or the receipt document as application/xml."})),
            )
                .into_response();
        };
        verify_code(&shared, &req.lookup_code, started).await
    } else {
        let Ok(doc) = std::str::from_utf8(&body) else {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "bad_request", "message": "The document is not UTF-8 text."})),
            )
                .into_response();
        };
        verify::verify(&shared.store, &shared.trust, doc).await.map(Some).map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
    };
    match result {
        Ok(Some(v)) => {
            shared.count("verify", verdict_outcome(&v), started);
            Json(v).into_response()
        }
        Ok(None) => {
            shared.count("verify", "not_found", started);
            not_found_json()
        }
        Err(_) => {
            shared.count("verify", "error", started);
            unavailable_json()
        }
    }
}

async fn verify_code_page(State(shared): St, Query(q): Query<CodeQuery>) -> Response {
    let started = Instant::now();
    match verify_code(&shared, &q.ma, started).await {
        Ok(Some(v)) => {
            shared.count("verify", verdict_outcome(&v), started);
            Html(shared.pages.verdict(&v)).into_response()
        }
        Ok(None) => {
            shared.count("verify", "not_found", started);
            (StatusCode::NOT_FOUND, Html(shared.pages.not_found())).into_response()
        }
        Err(status) => {
            shared.count("verify", "error", started);
            (status, Html(UNAVAILABLE_HTML)).into_response()
        }
    }
}

async fn verify_upload_page(State(shared): St, mut form: Multipart) -> Response {
    let started = Instant::now();
    let mut document = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("document") {
            document = field.bytes().await.ok();
            break;
        }
    }
    let Some(doc) = document.and_then(|b| String::from_utf8(b.to_vec()).ok()).filter(|d| !d.trim().is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Html("<!DOCTYPE html><html lang=\"vi\"><meta charset=\"utf-8\"><p>Vui lòng chọn tệp biên lai điện tử (.xml) để xác thực.</p><a href=\"/\">Quay lại</a></html>"),
        )
            .into_response();
    };
    match verify::verify(&shared.store, &shared.trust, &doc).await {
        Ok(v) => {
            shared.count("verify", verdict_outcome(&v), started);
            Html(shared.pages.verdict(&v)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "verification failed");
            shared.count("verify", "error", started);
            (StatusCode::SERVICE_UNAVAILABLE, Html(UNAVAILABLE_HTML)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_describes_exactly_the_api_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> =
            API_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        served.sort();
        assert_eq!(documented, served);
        // Every $ref resolves.
        let text = OPENAPI;
        for r in text.split("\"$ref\": \"#/").skip(1) {
            let path = r.split('"').next().expect("ref");
            let mut node = &doc;
            for part in path.split('/') {
                node = &node[part];
            }
            assert!(!node.is_null(), "unresolved $ref #/{path}");
        }
    }
}
