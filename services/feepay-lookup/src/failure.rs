//! Why a public request gets no answer it asked for, in one type: the JSON API renders it
//! as an [`ErrorBody`] and the pages as a Vietnamese page, with the same status code and
//! the same `Retry-After`.

use crate::page::Pages;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// A request the lookup service does not answer as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No receipt with this code; also for malformed codes, so an answer never tells a
    /// malformed code from an unknown one.
    NotFound,
    /// The request cannot be read; the text (Vietnamese) says what to send.
    BadRequest(&'static str),
    /// Too many requests from this client.
    RateLimited { retry_after_secs: u64 },
    /// The database cannot be reached.
    Unavailable,
    /// Every verification slot stayed busy: try again shortly.
    Busy { retry_after_secs: u64 },
    /// The full signed document needs what only the payer knows besides the lookup code.
    SecondFactor,
}

/// The JSON body of every error of the API.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// In Vietnamese.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// A stable code for programs.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    BadRequest,
    RateLimited,
    Unavailable,
    Busy,
    SecondFactorRequired,
}

/// What a person sees when the database cannot be reached.
const UNAVAILABLE: &str = "Hệ thống tạm thời không phục vụ được; vui lòng thử lại sau.";

impl Failure {
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Failure::Unavailable | Failure::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Failure::SecondFactor => StatusCode::FORBIDDEN,
        }
    }

    /// The outcome label of `feepay_lookup_requests_total` for this failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::NotFound => "not_found",
            Failure::RateLimited { .. } | Failure::Busy { .. } => "limited",
            Failure::BadRequest(_) | Failure::Unavailable => "error",
            Failure::SecondFactor => "second_factor",
        }
    }

    fn code(&self) -> ErrorCode {
        match self {
            Failure::NotFound => ErrorCode::NotFound,
            Failure::BadRequest(_) => ErrorCode::BadRequest,
            Failure::RateLimited { .. } => ErrorCode::RateLimited,
            Failure::Unavailable => ErrorCode::Unavailable,
            Failure::Busy { .. } => ErrorCode::Busy,
            Failure::SecondFactor => ErrorCode::SecondFactorRequired,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::NotFound => "Không tìm thấy biên lai với mã tra cứu này.".into(),
            Failure::BadRequest(m) => (*m).into(),
            Failure::RateLimited { retry_after_secs } => {
                format!("Quá nhiều yêu cầu; thử lại sau {retry_after_secs} giây.")
            }
            Failure::Unavailable => UNAVAILABLE.into(),
            Failure::Busy { retry_after_secs } => {
                format!("Hệ thống đang bận xác thực các tài liệu khác; vui lòng thử lại sau {retry_after_secs} giây.")
            }
            Failure::SecondFactor => "Để tải biên lai đầy đủ, nhập 6 ký tự cuối của số định danh cá nhân, số hộ chiếu \
                 hoặc mã số thuế của người nộp, hoặc mã hồ sơ."
                .into(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Failure::RateLimited { retry_after_secs } | Failure::Busy { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The API's answer: [`ErrorBody`] as JSON.
    pub fn json(self) -> Response {
        let body = ErrorBody { error: self.code(), message: self.message(), retry_after_seconds: self.retry_after() };
        self.with_retry_after((self.status(), Json(body)).into_response())
    }

    /// A page's answer: the Vietnamese page for the failure.
    pub fn page(self, pages: &Pages) -> Response {
        let html = match &self {
            Failure::NotFound => pages.not_found(),
            Failure::RateLimited { retry_after_secs } => pages.limited(*retry_after_secs),
            Failure::BadRequest(_) | Failure::Unavailable | Failure::Busy { .. } | Failure::SecondFactor => format!(
                "<!DOCTYPE html><html lang=\"vi\"><meta charset=\"utf-8\"><p>{}</p><a href=\"/\">Quay lại</a></html>",
                self.message()
            ),
        };
        self.with_retry_after((self.status(), Html(html)).into_response())
    }

    fn with_retry_after(&self, mut resp: Response) -> Response {
        if let Some(secs) = self.retry_after() {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_says_when_to_come_back_in_both_forms() {
        let json = Failure::RateLimited { retry_after_secs: 7 }.json();
        assert_eq!(json.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(json.headers()[header::RETRY_AFTER], "7");
        let page = Failure::RateLimited { retry_after_secs: 7 }.page(&Pages::new());
        assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(page.headers()[header::RETRY_AFTER], "7");
        assert!(page.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    }

    #[test]
    fn busy_verification_is_503_with_retry_after() {
        let json = Failure::Busy { retry_after_secs: 2 }.json();
        assert_eq!(json.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn messages_are_vietnamese_and_codes_stable() {
        let body = ErrorBody {
            error: Failure::Unavailable.code(),
            message: Failure::Unavailable.message(),
            retry_after_seconds: None,
        };
        let v = serde_json::to_value(body).unwrap();
        assert_eq!(v["error"], "unavailable");
        assert!(v["message"].as_str().unwrap().contains("thử lại sau"));
        assert!(v.get("retryAfterSeconds").is_none());
    }
}
