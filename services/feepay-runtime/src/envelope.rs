//! CloudEvents 1.0 Kafka protocol binding, binary mode.
//!
//! Attributes travel as headers (`ce_specversion`, `ce_id`, `ce_source`, `ce_type`,
//! `ce_time`, `content-type`); the Kafka value is the event body, either protobuf
//! (`application/protobuf`) or the canonical proto3 JSON mapping (`application/json`).

use chrono::{DateTime, SecondsFormat, Utc};
use feepay_proto::{EventType, Message};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt;
use std::str::FromStr;

/// Largest body accepted (1 MiB): anything bigger is dead-lettered as absurd.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Body encoding of produced events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Protobuf,
    Json,
}

impl BodyFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Protobuf => "application/protobuf",
            BodyFormat::Json => "application/json",
        }
    }

    /// The format of a stored content type (anything but JSON is protobuf, as written).
    pub fn of_content_type(content_type: &str) -> Self {
        if content_type == BodyFormat::Json.content_type() {
            BodyFormat::Json
        } else {
            BodyFormat::Protobuf
        }
    }
}

impl FromStr for BodyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "protobuf" => Ok(BodyFormat::Protobuf),
            "json" => Ok(BodyFormat::Json),
            other => Err(format!("expected protobuf or json, got {other}")),
        }
    }
}

/// CloudEvents attributes of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub time: Option<DateTime<Utc>>,
    pub content_type: String,
}

/// Encodes a message body in the chosen format.
pub fn encode_body<T: Message + Serialize>(msg: &T, format: BodyFormat) -> Vec<u8> {
    match format {
        BodyFormat::Protobuf => msg.encode_to_vec(),
        BodyFormat::Json => serde_json::to_vec(msg).expect("generated types always serialise"),
    }
}

/// Headers of an outgoing event.
pub fn headers_for<T: EventType>(id: &str, source: &str, time: DateTime<Utc>, format: BodyFormat) -> OwnedHeaders {
    let time = time.to_rfc3339_opts(SecondsFormat::Millis, true);
    OwnedHeaders::new()
        .insert(Header { key: "ce_specversion", value: Some("1.0") })
        .insert(Header { key: "ce_id", value: Some(id) })
        .insert(Header { key: "ce_source", value: Some(source) })
        .insert(Header { key: "ce_type", value: Some(T::TYPE) })
        .insert(Header { key: "ce_time", value: Some(time.as_str()) })
        .insert(Header { key: "content-type", value: Some(format.content_type()) })
}

/// Headers from stored attributes (used by the outbox relay).
pub fn headers_from(attrs: &Attributes) -> OwnedHeaders {
    let mut h = OwnedHeaders::new()
        .insert(Header { key: "ce_specversion", value: Some("1.0") })
        .insert(Header { key: "ce_id", value: Some(attrs.id.as_str()) })
        .insert(Header { key: "ce_source", value: Some(attrs.source.as_str()) })
        .insert(Header { key: "ce_type", value: Some(attrs.ty.as_str()) });
    if let Some(t) = attrs.time {
        let t = t.to_rfc3339_opts(SecondsFormat::Millis, true);
        h = h.insert(Header { key: "ce_time", value: Some(t.as_str()) });
    }
    h.insert(Header { key: "content-type", value: Some(attrs.content_type.as_str()) })
}

/// Why an incoming record is not a usable event; each becomes a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Stable label: `unsupported_content_type`, `undecodable`, `wrong_type`, `too_large`, `invalid`.
    pub code: &'static str,
    pub detail: String,
}

impl DecodeError {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        DecodeError { code, detail: detail.into() }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for DecodeError {}

/// A header value as UTF-8.
pub fn header<'a>(headers: Option<&'a BorrowedHeaders>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Decodes a body given its content type. The `content-type` header may carry parameters
/// (`application/json; charset=utf-8`); a missing header means protobuf, the default.
pub fn decode_body<T: Message + Default + DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, DecodeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DecodeError::new("too_large", format!("body of {} bytes exceeds {MAX_BODY_BYTES}", body.len())));
    }
    let ct = content_type.unwrap_or("application/protobuf").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match ct.as_str() {
        "application/protobuf" | "application/x-protobuf" | "application/vnd.google.protobuf" => {
            T::decode(body).map_err(|e| DecodeError::new("undecodable", format!("protobuf: {e}")))
        }
        "application/json" | "application/cloudevents+json" => {
            serde_json::from_slice(body).map_err(|e| DecodeError::new("undecodable", format!("json: {e}")))
        }
        other => Err(DecodeError::new(
            "unsupported_content_type",
            format!("content-type {other:?} is neither application/protobuf nor application/json"),
        )),
    }
}

/// Decodes a consumed (or parked) record's event and checks its CloudEvents type.
pub fn decode_record<T: Message + Default + DeserializeOwned + EventType>(
    record: &crate::consumer::Record<'_>,
) -> Result<T, DecodeError> {
    decode_parts(record.ce_type, record.content_type, record.payload)
}

fn decode_parts<T: Message + Default + DeserializeOwned + EventType>(
    ce_type: Option<&str>,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> Result<T, DecodeError> {
    if let Some(ty) = ce_type {
        if ty != T::TYPE {
            return Err(DecodeError::new("wrong_type", format!("ce_type {ty:?} where {} was expected", T::TYPE)));
        }
    }
    let body = body.ok_or_else(|| DecodeError::new("undecodable", "record has no value"))?;
    decode_body(content_type, body)
}

/// Decodes an event and checks its CloudEvents type when present.
pub fn decode<T: Message + Default + DeserializeOwned + EventType>(
    headers: Option<&BorrowedHeaders>,
    body: Option<&[u8]>,
) -> Result<T, DecodeError> {
    decode_parts(header(headers, "ce_type"), header(headers, "content-type"), body)
}
