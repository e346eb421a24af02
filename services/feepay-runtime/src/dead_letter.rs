//! Dead letters: an event that cannot be decoded goes to `<topic>.dlq` with its reason and
//! everything needed to replay it.
//!
//! A dead letter always fits: the original value travels inside it up to
//! `FEEPAY_DLQ_INLINE_MAX_BYTES`; a larger value is stored in PostgreSQL
//! (`dead_letter_payloads`, keyed by its SHA-256) and the dead letter carries its hash,
//! size and a reference instead. Oversized header values are dropped and flagged. The
//! producer's `message.max.bytes` (`FEEPAY_KAFKA_MESSAGE_MAX_BYTES`) must leave room for the
//! inline limit plus the envelope; settings refuse a combination that would not.

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
/// Room left in a record for everything but the inline value.
pub const ENVELOPE_ROOM: usize = 64 * 1024;

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
    let headers = crate::consumer::owned_headers(m);
    let truncated = headers.iter().any(|(_, v)| v.len() > MAX_HEADER_VALUE);
    let value = m.payload().unwrap_or_default();
    DeadLetter {
        original_topic: m.topic().to_string(),
        original_partition: m.partition(),
        original_offset: m.offset(),
        original_key: m.key().unwrap_or_default().iter().take(MAX_HEADER_VALUE).copied().collect(),
        original_value: value.to_vec(),
        original_headers: headers
            .into_iter()
            .filter(|(_, v)| v.len() <= MAX_HEADER_VALUE)
            .map(|(key, value)| RecordHeader { key, value })
            .collect(),
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
fn dead_lettered_at(dl: &DeadLetter) -> DateTime<Utc> {
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

/// Sends a dead letter (its value moved to PostgreSQL first when over the inline limit),
/// retrying with backoff until the broker acknowledges it. Returns false when shutdown came
/// first: the caller must then stop without committing offsets, so the event is redelivered
/// and dead-lettered again after the restart.
pub async fn send_durably(
    producer: &FutureProducer,
    db: &DatabaseConnection,
    settings: &DeadLetterSettings,
    mut dl: DeadLetter,
    shutdown: &CancellationToken,
) -> bool {
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
}
