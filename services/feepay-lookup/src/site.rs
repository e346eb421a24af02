//! The Vietnamese pages citizens use: the lookup form, a receipt's page (printable, with its
//! QR code), and verification by code or by uploading the document. Failures render as
//! pages through [`Failure::page`].

use crate::app::St;
use crate::failure::Failure;
use crate::verify;
use axum::extract::{Multipart, Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use feepay_domain::receipt::normalize_lookup_code;
use std::time::Instant;

pub async fn index(State(shared): St) -> Html<String> {
    Html(shared.pages.index())
}

#[derive(serde::Deserialize)]
pub struct CodeQuery {
    #[serde(default)]
    ma: String,
}

/// The form's target: the code normalised into the receipt page's address.
pub async fn lookup_form(Query(q): Query<CodeQuery>) -> Redirect {
    let code = normalize_lookup_code(&q.ma)
        .unwrap_or_else(|| q.ma.chars().filter(char::is_ascii_alphanumeric).take(32).collect());
    if code.is_empty() {
        Redirect::to("/")
    } else {
        Redirect::to(&format!("/tra-cuu/{code}"))
    }
}

pub async fn receipt_page(State(shared): St, Path(code): Path<String>) -> Response {
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
            Failure::NotFound.page(&shared.pages)
        }
        Err(f) => {
            shared.count("page", "error", started);
            f.page(&shared.pages)
        }
    }
}

pub async fn verify_code_page(State(shared): St, Query(q): Query<CodeQuery>) -> Response {
    let started = Instant::now();
    match shared.verify_code(&q.ma, started).await {
        Ok(Some(v)) => {
            shared.count("verify", verify::outcome(&v), started);
            Html(shared.pages.verdict(&v)).into_response()
        }
        Ok(None) => {
            shared.count("verify", "not_found", started);
            Failure::NotFound.page(&shared.pages)
        }
        Err(f) => {
            shared.count("verify", f.outcome(), started);
            f.page(&shared.pages)
        }
    }
}

pub async fn verify_upload_page(State(shared): St, mut form: Multipart) -> Response {
    let started = Instant::now();
    let mut document = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("document") {
            document = field.bytes().await.ok();
            break;
        }
    }
    let Some(doc) = document.and_then(|b| String::from_utf8(b.to_vec()).ok()).filter(|d| !d.trim().is_empty()) else {
        return Failure::BadRequest("Vui lòng chọn tệp biên lai điện tử (.xml) để xác thực.").page(&shared.pages);
    };
    match verify::verify(&shared.store, &shared.checker, &doc).await {
        Ok(v) => {
            shared.count("verify", verify::outcome(&v), started);
            Html(shared.pages.verdict(&v)).into_response()
        }
        Err(e) => {
            let f = e.failure();
            shared.count("verify", f.outcome(), started);
            f.page(&shared.pages)
        }
    }
}
