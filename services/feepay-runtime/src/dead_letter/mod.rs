//! Dead letters: an event that cannot be decoded goes to `<topic>.dlq` with its reason and
//! everything needed to replay it.
//!
//! A dead letter always fits: the original value travels inside it up to
//! `FEEPAY_DLQ_INLINE_MAX_BYTES`; a larger value is stored in PostgreSQL
//! (`dead_letter_payloads`, keyed by its SHA-256) and the dead letter carries its hash,
//! size and a reference instead. Headers are kept within a fixed budget
//! ([`MAX_HEADERS_BYTES`], the envelope's own `ce_*` and `content-type` first): a record with
//! a thousand headers cannot make its dead letter too large; what is dropped is flagged. The
//! producer's `message.max.bytes` (`FEEPAY_KAFKA_MESSAGE_MAX_BYTES`) must leave room for the
//! inline limit plus the envelope; settings refuse a combination that would not.

pub mod record;

pub use record::{check_replay, Identity, OnRecord};

use crate::envelope::DecodeError;
use crate::retry::Backoff;
use crate::settings::{catalog, dlq_topic, parse, SettingError};
use chrono::{DateTime, Utc};
use feepay_proto::v1::{DeadLetter, RecordHeader};
use feepay_proto::Message as _;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, Set};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Header values longer than this are dropped from a dead letter (and flagged).
pub const MAX_HEADER_VALUE: usize = 1024;
/// Header keys longer than this are dropped from a dead letter (and flagged).
pub const MAX_HEADER_KEY: usize = 256;
/// All headers a dead letter carries, keys, values and 8 bytes of framing each, fit in this.
pub const MAX_HEADERS_BYTES: usize = 16 * 1024;
/// Room left in a record for everything but the inline value: the headers' budget, the
/// key (at most [`MAX_HEADER_VALUE`]), the reason (at most 4 000 characters, 16 000 bytes),
/// the record's own headers and the rest of the envelope.
pub const ENVELOPE_ROOM: usize = 64 * 1024;
const _: () = assert!(MAX_HEADERS_BYTES + MAX_HEADER_VALUE + 4 * 4000 + 8 * 1024 < ENVELOPE_ROOM);

/// The headers a dead letter keeps, in their original order, and whether any was dropped:
/// the envelope's headers (`ce_*`, `content-type`, which a replay needs) before the rest,
/// each within the key and value limits, all within [`MAX_HEADERS_BYTES`].
pub fn kept_headers(headers: Vec<(String, Vec<u8>)>) -> (Vec<RecordHeader>, bool) {
    let fits = |(k, v): &(String, Vec<u8>)| k.len() <= MAX_HEADER_KEY && v.len() <= MAX_HEADER_VALUE;
    let envelope = |k: &str| k.starts_with("ce_") || k == "content-type";
    let mut keep = vec![false; headers.len()];
    let mut used = 0usize;
    for pass_envelope in [true, false] {
        for (i, h) in headers.iter().enumerate() {
            if envelope(&h.0) != pass_envelope || !fits(h) {
                continue;
            }
            let cost = h.0.len() + h.1.len() + 8;
            if used + cost <= MAX_HEADERS_BYTES {
                used += cost;
                keep[i] = true;
            }
        }
    }
    let dropped = keep.iter().any(|k| !k);
    let kept = headers
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|((key, value), _)| RecordHeader { key, value })
        .collect();
    (kept, dropped)
}

/// How dead letters are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterSettings {
    /// `FEEPAY_DLQ_INLINE_MAX_BYTES` (default 262144): largest original value carried inside
    /// a dead letter; larger ones go to `dead_letter_payloads`.
    pub inline_max_bytes: usize,
}

impl DeadLetterSettings {
    /// Reads the inline limit and checks it against the producer's record limit.
    pub fn from_env(message_max_bytes: usize) -> Result<Self, SettingError> {
        let inline_max_bytes: usize = parse(&catalog::DLQ_INLINE_MAX_BYTES)?;
        let s = DeadLetterSettings { inline_max_bytes };
        s.check(message_max_bytes)?;
        Ok(s)
    }

    pub fn check(&self, message_max_bytes: usize) -> Result<(), SettingError> {
        if self.inline_max_bytes + ENVELOPE_ROOM > message_max_bytes {
            return Err(SettingError {
                name: "FEEPAY_DLQ_INLINE_MAX_BYTES".into(),
                message: format!(
                    "{} plus {ENVELOPE_ROOM} bytes of envelope exceeds FEEPAY_KAFKA_MESSAGE_MAX_BYTES ({message_max_bytes}); \
                     a dead letter could not be produced",
                    self.inline_max_bytes
                ),
            });
        }
        Ok(())
    }
}

impl Default for DeadLetterSettings {
    fn default() -> Self {
        DeadLetterSettings { inline_max_bytes: 256 * 1024 }
    }
}

/// The record as a dead letter with its reason; the value is inline here and moved out by
/// [`send_durably`] when too large.
pub fn of(m: &BorrowedMessage<'_>, err: &DecodeError, service: &str, now: DateTime<Utc>) -> DeadLetter {
    let (headers, truncated) = kept_headers(crate::consumer::owned_headers(m));
    let value = m.payload().unwrap_or_default();
    DeadLetter {
        original_topic: m.topic().to_string(),
        original_partition: m.partition(),
        original_offset: m.offset(),
        original_key: m.key().unwrap_or_default().iter().take(MAX_HEADER_VALUE).copied().collect(),
        original_value: value.to_vec(),
        original_headers: headers,
        reason_code: err.code.to_string(),
        reason: err.detail.chars().take(4000).collect(),
        service: service.to_string(),
        dead_lettered_at: Some(feepay_proto::timestamp(now.timestamp(), now.timestamp_subsec_nanos() as i32)),
        original_value_sha256: hex::encode(Sha256::digest(value)),
        original_value_size: value.len() as u64,
        original_value_ref: String::new(),
        original_headers_truncated: truncated,
    }
}

/// Where a stored payload is named in a dead letter.
pub fn payload_ref(sha256: &str) -> String {
    format!("postgres:dead_letter_payloads/{sha256}")
}

/// The stored payloads of oversized dead letters.
pub mod payload {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letter_payloads")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sha256: String,
        pub size: i64,
        pub payload: Vec<u8>,
        pub topic: String,
        pub partition: i32,
        pub offset: i64,
        pub stored_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// When the dead letter was made (the time its record carries).
pub(crate) fn dead_lettered_at(dl: &DeadLetter) -> DateTime<Utc> {
    crate::convert::from_ts(dl.dead_lettered_at.as_ref()).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Moves an oversized value out of the dead letter into PostgreSQL (idempotently).
async fn store_payload(db: &DatabaseConnection, dl: &mut DeadLetter) -> Result<(), DbErr> {
    let row = payload::ActiveModel {
        sha256: Set(dl.original_value_sha256.clone()),
        size: Set(dl.original_value.len() as i64),
        payload: Set(std::mem::take(&mut dl.original_value)),
        topic: Set(dl.original_topic.clone()),
        partition: Set(dl.original_partition),
        offset: Set(dl.original_offset),
        stored_at: Set(dead_lettered_at(dl)),
    };
    payload::Entity::insert(row)
        .on_conflict(OnConflict::column(payload::Column::Sha256).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    dl.original_value_ref = payload_ref(&dl.original_value_sha256);
    Ok(())
}

/// A stored payload by its SHA-256.
pub async fn load_payload(db: &DatabaseConnection, sha256: &str) -> Result<Option<Vec<u8>>, DbErr> {
    Ok(payload::Entity::find_by_id(sha256.to_string()).one(db).await?.map(|p| p.payload))
}

/// Produces a dead letter to `<topic>.dlq` and waits until the broker has it. The value is
/// the `DeadLetter` protobuf; `dlq_reason` and `dlq_reason_code` headers make it readable
/// with any Kafka client.
pub async fn send(producer: &FutureProducer, dl: &DeadLetter) -> Result<(), rdkafka::error::KafkaError> {
    let topic = dlq_topic(&dl.original_topic);
    let id = crate::ids::event::dead_letter(&dl.original_topic, dl.original_partition, dl.original_offset);
    let now = dead_lettered_at(dl);
    let reason: String = dl.reason.chars().take(512).collect();
    let headers: OwnedHeaders =
        crate::envelope::headers_for::<DeadLetter>(&id, &dl.service, now, crate::envelope::BodyFormat::Protobuf)
            .insert(Header { key: "dlq_reason_code", value: Some(dl.reason_code.as_str()) })
            .insert(Header { key: "dlq_reason", value: Some(reason.as_str()) });
    let body = dl.encode_to_vec();
    let record = FutureRecord::to(&topic).key(&dl.original_key).payload(&body).headers(headers);
    producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
}

/// Records a dead letter in `dead_letters`, then sends it (its value moved to PostgreSQL
/// first when over the inline limit), retrying with backoff until the broker acknowledges it. Returns false when shutdown came
/// first: the caller must then stop without committing offsets, so the event is redelivered
/// and dead-lettered again after the restart.
pub async fn send_durably(
    producer: &FutureProducer,
    db: &DatabaseConnection,
    settings: &DeadLetterSettings,
    mut dl: DeadLetter,
    identity: Option<&Identity>,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::batch();
    // On record first: that row is what operators read and what a replay is made of.
    while let Err(e) = record::record(db, &dl, identity).await {
        tracing::error!(error = %e, "recording a dead letter failed, retrying");
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
    let mut backoff = Backoff::batch();
    while dl.original_value.len() > settings.inline_max_bytes {
        match store_payload(db, &mut dl).await {
            Ok(()) => {
                tracing::info!(topic = %dl.original_topic, size = dl.original_value_size, sha256 = %dl.original_value_sha256, "dead letter's value stored in PostgreSQL");
            }
            Err(e) => {
                tracing::error!(error = %e, "storing an oversized dead letter's value failed, retrying");
                if !backoff.wait(shutdown).await {
                    return false;
                }
            }
        }
    }
    let mut backoff = Backoff::batch();
    loop {
        match send(producer, &dl).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(error = %e, topic = %dl.original_topic, "dead letter not accepted by the broker, retrying")
            }
        }
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_limit_must_leave_room_in_a_record() {
        assert!(DeadLetterSettings { inline_max_bytes: 256 * 1024 }.check(1_000_000).is_ok());
        let e = DeadLetterSettings { inline_max_bytes: 990_000 }.check(1_000_000).unwrap_err();
        assert!(e.to_string().contains("FEEPAY_DLQ_INLINE_MAX_BYTES"), "{e}");
    }

    fn h(k: &str, len: usize) -> (String, Vec<u8>) {
        (k.to_string(), vec![b'v'; len])
    }

    #[test]
    fn a_thousand_headers_fit_in_the_budget_and_the_envelope_is_kept() {
        let mut headers: Vec<(String, Vec<u8>)> = (0..990).map(|i| h(&format!("x-{i}"), 1024)).collect();
        headers.push(h("ce_type", 24));
        headers.push(h("content-type", 16));
        let (kept, dropped) = kept_headers(headers);
        assert!(dropped);
        let bytes: usize = kept.iter().map(|r| r.key.len() + r.value.len() + 8).sum();
        assert!(bytes <= MAX_HEADERS_BYTES, "{bytes}");
        assert!(kept.iter().any(|r| r.key == "ce_type") && kept.iter().any(|r| r.key == "content-type"));
        assert_eq!(kept.first().map(|r| r.key.as_str()), Some("x-0"), "original order");
    }

    #[test]
    fn small_headers_are_all_kept_and_long_keys_or_values_dropped() {
        let (kept, dropped) = kept_headers(vec![h("ce_id", 36), h("a", 10)]);
        assert_eq!((kept.len(), dropped), (2, false));
        let (kept, dropped) = kept_headers(vec![h("ce_id", 36), h(&"k".repeat(300), 1), h("b", 1025)]);
        assert_eq!((kept.len(), dropped), (1, true));
        // Ten thousand empty headers: the framing counts, so their number is bounded too.
        let (kept, dropped) = kept_headers((0..10_000).map(|i| h(&i.to_string(), 0)).collect());
        assert!(dropped && kept.len() < 2048, "{}", kept.len());
    }
}
