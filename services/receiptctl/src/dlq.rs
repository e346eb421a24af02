//! Dead letters as their services put them on record (`dead_letters`, read under
//! row-level security: an operator sees those of the agencies in scope): decode what can
//! be decoded now, and hand one back to the service that recorded it after a fix (a replay
//! request made by the database from the recorded record, applied by that service; the
//! operator has no right on the broker at all).

use feepay_proto::v1;
use feepay_runtime::dead_letter::OnRecord;
use feepay_runtime::envelope;
use feepay_runtime::ids::subject;
use feepay_runtime::settings::Topics;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// Dead letters on record in the caller's scope, newest first: of one topic, and only
/// those never replayed unless `all`.
pub async fn list(db: &DatabaseConnection, topic: Option<&str>, all: bool) -> Result<Vec<OnRecord>, DbErr> {
    use feepay_runtime::dead_letter::record::entity::{Column as C, Entity};
    let mut q = Entity::find().order_by_desc(C::Id).limit(1000);
    if let Some(t) = topic {
        q = q.filter(C::Topic.eq(t));
    }
    if !all {
        q = q.filter(C::Replays.eq(0));
    }
    q.all(db).await
}

/// A dead letter's event as it decodes now.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The event as canonical JSON.
    pub json: serde_json::Value,
    /// What it is about, as its consumer names it (`payment:<id>`, ...).
    pub subject: String,
}

/// A record: its topic, headers and value.
pub struct Body<'a> {
    pub topic: &'a str,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: &'a [u8],
}

impl<'a> Body<'a> {
    /// The recorded record of `dl`.
    pub fn recorded(dl: &'a OnRecord) -> Self {
        Body { topic: &dl.topic, headers: dl.headers(), value: &dl.payload }
    }

    /// The record of `dl` with `value` of `content_type` in place of its own.
    pub fn edited(dl: &'a OnRecord, value: &'a [u8], content_type: &str) -> Self {
        let mut headers: Vec<_> =
            dl.headers().into_iter().filter(|(k, _)| !k.eq_ignore_ascii_case("content-type")).collect();
        headers.push(("content-type".into(), content_type.as_bytes().to_vec()));
        Body { topic: &dl.topic, headers, value }
    }

    fn owned_headers(&self) -> OwnedHeaders {
        self.headers.iter().fold(OwnedHeaders::new(), |acc, (k, v)| acc.insert(Header { key: k, value: Some(v) }))
    }
}

/// The event decoded and validated exactly as its consumer does, so "decodes" means
/// "would be accepted", or why it cannot be.
pub fn decode(topics: &Topics, b: &Body<'_>) -> Result<Decoded, String> {
    let headers = b.owned_headers();
    let h = Some(headers.as_borrowed());
    let body = Some(b.value);
    let t = b.topic;
    use feepay_runtime::convert;
    if t == topics.payments_succeeded {
        let e = envelope::decode::<v1::PaymentSucceeded>(h, body).map_err(|e| e.to_string())?;
        convert::parse_payment(&e).map_err(|e| format!("invalid: {e}"))?;
        Ok(Decoded { json: serde_json::to_value(&e).unwrap_or_default(), subject: subject::payment(&e.payment_id) })
    } else if t == topics.payments_refunded {
        let e = envelope::decode::<v1::PaymentRefunded>(h, body).map_err(|e| e.to_string())?;
        convert::parse_refund(&e).map_err(|e| format!("invalid: {e}"))?;
        Ok(Decoded { json: serde_json::to_value(&e).unwrap_or_default(), subject: subject::refund(&e.refund_id) })
    } else if t == topics.assessment_requested {
        let e = envelope::decode::<v1::FeeAssessmentRequested>(h, body).map_err(|e| e.to_string())?;
        let _ = convert::parse_assessment_request(&e).map_err(|e| format!("invalid: {e}"))?;
        Ok(Decoded {
            json: serde_json::to_value(&e).unwrap_or_default(),
            subject: subject::assessment(&e.assessment_id),
        })
    } else {
        Err(format!("receiptctl has no decoder for topic {t}; its service checks it when replayed"))
    }
}

/// Names the headers of a record for display (values of `ce_*` and content type).
pub fn header_summary(dl: &OnRecord) -> String {
    let b = Body::recorded(dl);
    let headers = b.owned_headers();
    headers
        .iter()
        .filter(|h| h.key.starts_with("ce_") || h.key == "content-type")
        .map(|h| format!("{}={}", h.key, String::from_utf8_lossy(h.value.unwrap_or_default())))
        .collect::<Vec<_>>()
        .join(" ")
}
