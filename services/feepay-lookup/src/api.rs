//! The public JSON API. Each handler carries its OpenAPI description (`#[utoipa::path]`) and
//! is registered through `utoipa-axum`'s router, so the document served at `/openapi.json`
//! is generated from the routes and the types the handlers return: it cannot drift from
//! them. `services/feepay-lookup/openapi.json` is a copy for integrators, kept equal by a
//! test (`feepay-lookup openapi` prints it).

use crate::app::{Shared, St};
use crate::failure::{ErrorBody, Failure};
use crate::page::ReceiptView;
use crate::verify::{self, Verdict};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest receipt document accepted for verification.
pub const UPLOAD_LIMIT: usize = 1024 * 1024;

/// Largest body of any other request.
pub const BODY_LIMIT: usize = 4096;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "feepay receipt lookup and verification",
        version = "1.0.0",
        description = "Public API of feepay-lookup. Anyone holding an e-receipt (biên lai điện tử) can fetch it by its lookup code (mã tra cứu), download the signed document, verify a document (XML Signature, certificate chain, record, status, hash chain), and read the signing certificates and trust anchors. Lookup codes are 16 Crockford base-32 characters (XXXX-XXXX-XXXX-XXXX; case, spaces and hyphens are ignored; I and L read as 1, O as 0). A malformed code and an unknown code get the same 404 answer after the same minimum time. Requests are rate limited per client address (429 with Retry-After). Error messages are in Vietnamese. Human pages in Vietnamese are served at /, /tra-cuu/{code} and /xac-thuc; they are not part of this API."
    ),
    servers((url = "http://127.0.0.1:8080"))
)]
struct ApiDoc;

/// The API's routes with their descriptions; bodies are refused on their declared length
/// before a byte is read (1 MiB for verification, 4 KiB elsewhere).
fn api() -> OpenApiRouter<Arc<Shared>> {
    let small = OpenApiRouter::new()
        .routes(routes!(receipt))
        .routes(routes!(receipt_document))
        .routes(routes!(keys))
        .routes(routes!(openapi_json))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    let uploads = OpenApiRouter::new()
        .routes(routes!(verify_document))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(UPLOAD_LIMIT));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(small).merge(uploads)
}

/// The API's routes, for the public server.
pub fn router() -> axum::Router<Arc<Shared>> {
    api().split_for_parts().0
}

/// The OpenAPI document, generated from the routes (pretty JSON).
pub fn openapi() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut text = api().split_for_parts().1.to_pretty_json().expect("the OpenAPI document serialises");
        text.push('\n');
        text
    })
}

/// The lookup code of a receipt, as typed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ByCode {
    #[schema(example = "7K3M-Q9TX-2HRB-5WCE")]
    pub lookup_code: String,
}

/// A receipt by its lookup code.
#[utoipa::path(
    get,
    path = "/api/v1/receipts/{code}",
    params(("code" = String, Path, description = "Lookup code (mã tra cứu)", example = "7K3M-Q9TX-2HRB-5WCE")),
    responses(
        (status = 200, description = "The receipt, its status and where to download the signed document", body = ReceiptView),
        (status = 404, description = "No receipt with this code (also for malformed codes)", body = ErrorBody),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database cannot be reached; try again later", body = ErrorBody),
    )
)]
pub async fn receipt(State(shared): St, Path(code): Path<String>) -> Response {
    let started = Instant::now();
    match shared.find(&code, started).await {
        Ok(Some(s)) => {
            let view = shared.view(&s).await;
            shared.count("api_receipt", "found", started);
            Json(view).into_response()
        }
        Ok(None) => {
            shared.count("api_receipt", "not_found", started);
            Failure::NotFound.json()
        }
        Err(f) => {
            shared.count("api_receipt", "error", started);
            f.json()
        }
    }
}

fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// What opens the full document besides the lookup code.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct SecondFactor {
    /// The last 6 characters of the payer's personal ID, passport number or tax code, or
    /// the dossier code (mã hồ sơ): the signed document holds the payer's identifiers in
    /// full, so a lookup code alone opens only the masked view.
    pub xac_minh: Option<String>,
}

/// The signed receipt document (XML, UTF-8), byte for byte as issued, for whoever also
/// knows the payer's second factor.
#[utoipa::path(
    get,
    path = "/api/v1/receipts/{code}/document",
    params(("code" = String, Path, description = "Lookup code (mã tra cứu)", example = "7K3M-Q9TX-2HRB-5WCE"), SecondFactor),
    responses(
        (status = 200, description = "The document, as an attachment", content_type = "application/xml", body = String),
        (status = 403, description = "`xac_minh` missing or not the payer's: the document holds their identifiers in full", body = ErrorBody),
        (status = 404, description = "No receipt with this code (also for malformed codes)", body = ErrorBody),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database cannot be reached; try again later", body = ErrorBody),
    )
)]
pub async fn receipt_document(
    State(shared): St,
    Path(code): Path<String>,
    axum::extract::Query(factor): axum::extract::Query<SecondFactor>,
) -> Response {
    let started = Instant::now();
    match shared.find(&code, started).await {
        Ok(Some(s))
            if !factor.xac_minh.as_deref().is_some_and(|f| crate::page::second_factor_matches(&s.receipt, f)) =>
        {
            shared.count("document", Failure::SecondFactor.outcome(), started);
            Failure::SecondFactor.json()
        }
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
            Failure::NotFound.json()
        }
        Err(f) => {
            shared.count("document", "error", started);
            f.json()
        }
    }
}

/// What a verifier needs; each receipt also carries its own certificate.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Keys {
    pub certificates: Vec<Certificate>,
    /// The CA certificates (PEM) a signing certificate must chain to.
    pub trust_anchors: Vec<String>,
    pub legacy_keys: LegacyKeys,
}

/// A registered signing certificate.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// SHA-256 of the DER certificate, lowercase hex: the keyId of what it signed.
    pub fingerprint: String,
    pub agency_code: String,
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    /// The MST: attribute of the subject.
    pub tax_code: Option<String>,
    /// RFC 3339.
    pub valid_from: String,
    pub valid_until: String,
    pub certificate_pem: String,
    /// Present once the certificate is revoked: its signatures from then on are not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revoked>,
}

/// A certificate's revocation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    /// RFC 3339.
    pub revoked_at: String,
    /// RFC 5280 reason (`key_compromise`, `superseded`, …).
    pub reason: String,
}

/// The Ed25519 keys of layout 1.0 receipts.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyKeys {
    pub format: &'static str,
    pub keys: Vec<LegacyKey>,
}

/// An Ed25519 public key of layout 1.0 receipts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyKey {
    pub key_id: String,
    pub agency_code: String,
    #[schema(example = "Ed25519")]
    pub algorithm: String,
    /// 32 bytes in lowercase hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub public_key: String,
    /// RFC 3339.
    pub registered_at: String,
}

/// The signing certificates, the trust anchors, and the Ed25519 keys of layout 1.0 receipts.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    responses(
        (status = 200, description = "What a verifier needs", body = Keys),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database cannot be reached; try again later", body = ErrorBody),
    )
)]
pub async fn keys(State(shared): St) -> Response {
    let started = Instant::now();
    let published = match shared.store.keys().await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "loading keys failed");
            shared.count("keys", "error", started);
            return Failure::Unavailable.json();
        }
    };
    shared.count("keys", "found", started);
    let certificates = published
        .certificates
        .iter()
        .map(|c| Certificate {
            fingerprint: c.fingerprint.clone(),
            agency_code: c.agency_code.clone(),
            serial: c.serial.clone(),
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            tax_code: c.tax_code.clone(),
            valid_from: feepay_domain::receipt::rfc3339(c.not_before),
            valid_until: feepay_domain::receipt::rfc3339(c.not_after),
            certificate_pem: feepay_runtime::pki::pem("CERTIFICATE", &c.certificate),
            revoked: published.revocations.get(&c.fingerprint).map(|r| Revoked {
                revoked_at: feepay_domain::receipt::rfc3339(r.revoked_at),
                reason: r.reason.clone(),
            }),
        })
        .collect();
    let trust_anchors = shared
        .checker
        .trust()
        .roots()
        .iter()
        .filter_map(|r| r.to_pem().ok())
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .collect();
    let keys = published
        .legacy_keys
        .iter()
        .map(|k| LegacyKey {
            key_id: k.key_id.clone(),
            agency_code: k.agency_code.clone(),
            algorithm: k.algorithm.clone(),
            public_key: k.public_key.clone(),
            registered_at: k.registered_at.clone(),
        })
        .collect();
    Json(Keys {
        certificates,
        trust_anchors,
        legacy_keys: LegacyKeys {
            format: "Ed25519 public keys of layout 1.0 receipts, 32 bytes in lowercase hex; the receipt's <Signature KeyId> names the key",
            keys,
        },
    })
    .into_response()
}

/// Verify a receipt document, or the receipt with a lookup code.
///
/// Checks the XML Signature with the certificate the document carries and that
/// certificate's chain to the trust anchors (layout 2.0.0; a layout 1.0 receipt with its
/// registered Ed25519 key), that the document is the one on record, its status (issued,
/// cancelled, replaced) and its links in the series' hash chain. The verdict names the
/// signer's certificate.
#[utoipa::path(
    post,
    path = "/api/v1/verify",
    request_body(
        description = "The signed receipt document (application/xml), or a lookup code (application/json)",
        content((String = "application/xml"), (ByCode = "application/json"))
    ),
    responses(
        (status = 200, description = "The verdict (also when the document is not authentic)", body = Verdict),
        (status = 400, description = "The request cannot be read", body = ErrorBody),
        (status = 404, description = "No receipt with this code (also for malformed codes)", body = ErrorBody),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database cannot be reached (`unavailable`), or every verification slot stayed busy (`busy`, with Retry-After); try again later", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait, when busy"))),
    )
)]
pub async fn verify_document(State(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Failure::BadRequest(
            "Gửi tài liệu biên lai (application/xml) hoặc {\"lookupCode\": \"XXXX-XXXX-XXXX-XXXX\"} (application/json).",
        )
        .json();
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let result = if is_json {
        let Ok(req) = serde_json::from_slice::<ByCode>(&body) else {
            return Failure::BadRequest(
                "Gửi {\"lookupCode\": \"XXXX-XXXX-XXXX-XXXX\"} dạng JSON, hoặc tài liệu biên lai dạng application/xml.",
            )
            .json();
        };
        shared.verify_code(&req.lookup_code, started).await
    } else {
        let Ok(doc) = std::str::from_utf8(&body) else {
            return Failure::BadRequest("Tài liệu không phải văn bản UTF-8.").json();
        };
        verify::verify(&shared.store, &shared.checker, doc).await.map(Some).map_err(verify::NoVerdict::failure)
    };
    match result {
        Ok(Some(v)) => {
            shared.count("verify", verify::outcome(&v), started);
            Json(v).into_response()
        }
        Ok(None) => {
            shared.count("verify", "not_found", started);
            Failure::NotFound.json()
        }
        Err(f) => {
            shared.count("verify", f.outcome(), started);
            f.json()
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses(
        (status = 200, description = "OpenAPI 3.1", content_type = "application/json"),
        (status = 429, description = "Too many requests from this client; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_api_route_and_resolves_every_reference() {
        let doc: serde_json::Value = serde_json::from_str(openapi()).expect("the document is JSON");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        assert_eq!(
            documented,
            [
                ("get", "/api/v1/keys"),
                ("get", "/api/v1/receipts/{code}"),
                ("get", "/api/v1/receipts/{code}/document"),
                ("get", "/openapi.json"),
                ("post", "/api/v1/verify"),
            ]
            .map(|(m, p)| (m.to_string(), p.to_string()))
        );
        for r in openapi().split("\"$ref\": \"#/").skip(1) {
            let path = r.split('"').next().expect("ref");
            let mut node = &doc;
            for part in path.split('/') {
                node = &node[part];
            }
            assert!(!node.is_null(), "unresolved $ref #/{path}");
        }
        let verdict = &doc["components"]["schemas"]["Verdict"]["properties"];
        assert!(verdict["signatureValid"].is_object() && verdict["summary"].is_object(), "{verdict}");
    }

    #[test]
    fn the_committed_copy_is_the_generated_document() {
        let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
        assert!(
            committed == openapi(),
            "services/feepay-lookup/openapi.json is not the generated document: \
             run `cargo run -p feepay-lookup -- openapi > services/feepay-lookup/openapi.json`"
        );
    }
}
