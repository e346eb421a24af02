//! Parked events: events that fail on their own, kept durably with their reason while the
//! rest of their batch (and every other agency) goes on. They are visible (a metric per
//! reason, an alert, `receiptctl parked list`) and retried on an operator's request after
//! the fix, by the service that owns them, through its normal path.
//!
//! One open row per event (service, subject, content hash): an event redelivered and
//! parked again updates its row.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{DatabaseConnection, QueryOrder, QuerySelect, Set};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Reason codes a service parks with (the labels of the parked metrics).
pub const REASONS: &[&str] = &[
    "no_signing_key",
    SIGNER_UNAVAILABLE,
    "certificate_invalid",
    "series_exhausted",
    "series_unknown",
    "series_unregistered",
    "no_form_in_force",
    "stored_row_corrupt",
    "undecodable",
    "unexpected_error",
    REPLAY,
    "replay_refused",
];

/// The reason code of an event whose signer could not be reached (a token restarting, an
/// HSM failing over): retried by its service by itself ([`retry_automatically`]).
pub const SIGNER_UNAVAILABLE: &str = "signer_unavailable";

/// The reason code of a dead letter handed back by an operator for replay (a retry request
/// from the start, made by the database from the recorded dead letter; see
/// [`request_replay`]).
pub const REPLAY: &str = "dead_letter_replay";

/// Why an event was parked: a stable code (one of [`REASONS`]) and a precise detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkReason {
    pub code: &'static str,
    pub detail: String,
}

impl ParkReason {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        debug_assert!(REASONS.contains(&code), "unknown park reason {code}");
        ParkReason { code, detail: detail.into() }
    }
}

/// The state of a parked event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a fix and an operator's retry.
    #[sea_orm(string_value = "parked")]
    Parked,
    /// An operator asked for a retry; the owning service applies it within seconds.
    #[sea_orm(string_value = "retry_requested")]
    RetryRequested,
    /// Applied after a retry (or after a redelivery once the cause was fixed).
    #[sea_orm(string_value = "resolved")]
    Resolved,
}

/// The `parked_events` table.
pub mod entity {
    use super::Status;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "parked_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub service: String,
        pub topic: String,
        pub partition: i32,
        pub offset: i64,
        pub record_key: Vec<u8>,
        pub headers: Json,
        pub payload: Vec<u8>,
        pub content_hash: String,
        pub subject: String,
        pub agency_code: Option<String>,
        pub reason_code: String,
        pub reason: String,
        pub status: Status,
        pub attempts: i32,
        pub parked_at: DateTimeUtc,
        pub last_attempt_at: DateTimeUtc,
        pub retry_requested_by: Option<String>,
        pub retry_requested_at: Option<DateTimeUtc>,
        pub resolved_at: Option<DateTimeUtc>,
        /// The login that inserted the row, stamped by the database.
        pub db_login: Option<String>,
        /// The dead letter a replay request was made of (by `feepay_request_replay`).
        pub dead_letter_id: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        /// The record's headers as `(name, value)` pairs.
        pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
            super::headers_from_json(&self.headers)
        }
    }
}

pub use entity::Model as Parked;

/// An event to park, with the record it came in.
#[derive(Debug, Clone)]
pub struct NewParked {
    pub service: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
    pub subject: String,
    pub agency: Option<String>,
}

/// Record headers as stored (`[[name, hex value], ...]`, here and in `dead_letters`).
pub fn headers_to_json(headers: impl IntoIterator<Item = (String, Vec<u8>)>) -> serde_json::Value {
    let pairs: Vec<(String, String)> = headers.into_iter().map(|(k, v)| (k, hex::encode(v))).collect();
    serde_json::to_value(pairs).unwrap_or_default()
}

/// Stored headers back as `(name, value)` pairs.
pub fn headers_from_json(headers: &serde_json::Value) -> Vec<(String, Vec<u8>)> {
    serde_json::from_value::<Vec<(String, String)>>(headers.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, hex::decode(v).unwrap_or_default()))
        .collect()
}

/// The columns a new row takes from the event itself.
fn new_row(e: &NewParked, now: chrono::DateTime<Utc>) -> entity::ActiveModel {
    entity::ActiveModel {
        service: Set(e.service.clone()),
        topic: Set(e.topic.clone()),
        partition: Set(e.partition),
        offset: Set(e.offset),
        record_key: Set(e.key.clone()),
        headers: Set(headers_to_json(e.headers.iter().cloned())),
        payload: Set(e.payload.clone()),
        content_hash: Set(hex::encode(Sha256::digest(&e.payload))),
        subject: Set(e.subject.clone()),
        agency_code: Set(e.agency.clone()),
        parked_at: Set(now),
        last_attempt_at: Set(now),
        ..Default::default()
    }
}

/// Parks an event, or, when it is parked already, counts another attempt and keeps the
/// newest reason.
pub async fn park(
    db: &impl ConnectionTrait,
    e: &NewParked,
    reason: &ParkReason,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use entity::Column as C;
    let row = entity::ActiveModel {
        reason_code: Set(reason.code.to_string()),
        reason: Set(reason.detail.clone()),
        status: Set(Status::Parked),
        attempts: Set(1),
        ..new_row(e, now)
    };
    entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([C::Service, C::Subject, C::ContentHash])
                .target_and_where(Expr::col(C::Status).ne("resolved"))
                .value(C::Attempts, Expr::col((entity::Entity, C::Attempts)).add(1))
                .update_columns([C::LastAttemptAt, C::ReasonCode, C::Reason])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Retry requests of a service, oldest first, at most `limit`.
pub async fn requested(db: &DatabaseConnection, service: &str, limit: u64) -> Result<Vec<Parked>, DbErr> {
    use entity::Column as C;
    entity::Entity::find()
        .filter(C::Service.eq(service))
        // The constant lets PostgreSQL use the partial index `parked_events_retry`.
        .filter(crate::sql::equals_constant(C::Status, "retry_requested"))
        .order_by_asc(C::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The retried event was applied.
pub async fn resolve(db: &DatabaseConnection, id: i64, now: DateTime<Utc>) -> Result<(), DbErr> {
    use entity::Column as C;
    entity::Entity::update_many()
        .col_expr(C::Status, Expr::value(Status::Resolved))
        .col_expr(C::ResolvedAt, Expr::value(now))
        .col_expr(C::LastAttemptAt, Expr::value(now))
        .filter(C::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The retried event failed again: parked with the new reason.
pub async fn park_again(
    db: &DatabaseConnection,
    id: i64,
    reason: &ParkReason,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use entity::Column as C;
    entity::Entity::update_many()
        .col_expr(C::Status, Expr::value(Status::Parked))
        .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
        .col_expr(C::LastAttemptAt, Expr::value(now))
        .col_expr(C::ReasonCode, Expr::value(reason.code))
        .col_expr(C::Reason, Expr::value(reason.detail.clone()))
        .filter(C::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Marks parked events of `subjects` resolved: they were just applied through a
/// redelivery, after their cause was fixed.
pub async fn resolve_subjects(
    db: &impl ConnectionTrait,
    service: &str,
    subjects: Vec<String>,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    use entity::Column as C;
    if subjects.is_empty() {
        return Ok(0);
    }
    let r = entity::Entity::update_many()
        .col_expr(C::Status, Expr::value(Status::Resolved))
        .col_expr(C::ResolvedAt, Expr::value(now))
        .filter(C::Service.eq(service))
        .filter(C::Status.ne(Status::Resolved))
        .filter(crate::sql::any_of(C::Subject, subjects))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// Open (not resolved) parked events of a service, counted by reason code.
pub async fn open_by_reason(db: &DatabaseConnection, service: &str) -> Result<BTreeMap<String, i64>, DbErr> {
    use entity::Column as C;
    let rows: Vec<(String, i64)> = entity::Entity::find()
        .select_only()
        .column(C::ReasonCode)
        .column_as(C::Id.count(), "n")
        .filter(C::Service.eq(service))
        .filter(C::Status.ne(Status::Resolved))
        .group_by(C::ReasonCode)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Parked events for operators: open ones (or all with `include_resolved`), newest first.
pub async fn list(db: &DatabaseConnection, include_resolved: bool, limit: u64) -> Result<Vec<Parked>, DbErr> {
    use entity::Column as C;
    let mut q = entity::Entity::find();
    if !include_resolved {
        q = q.filter(C::Status.ne(Status::Resolved));
    }
    q.order_by_desc(C::Id).limit(limit).all(db).await
}

/// One parked event.
pub async fn get(db: &DatabaseConnection, id: i64) -> Result<Option<Parked>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// Reasons a service retries by itself: the cause goes away without anyone changing
/// anything.
pub const RETRIED_AUTOMATICALLY: &[&str] = &[SIGNER_UNAVAILABLE];

/// Turns this service's parked events of [`RETRIED_AUTOMATICALLY`] reasons into retry
/// requests once their wait is over: 5 s after the first attempt, doubling per attempt up
/// to 10 minutes. Returns how many.
pub async fn retry_automatically(db: &impl ConnectionTrait, service: &str, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let codes: Vec<String> = RETRIED_AUTOMATICALLY.iter().map(|c| String::from(*c)).collect();
    let r = db
        .execute(crate::sql::stmt(
            "UPDATE parked_events SET status = 'retry_requested', retry_requested_by = '(automatic)', retry_requested_at = $2 \
             WHERE service = $1 AND status = 'parked' AND reason_code = ANY($3) \
               AND last_attempt_at + LEAST(interval '5 seconds' * power(2, LEAST(attempts, 8) - 1), interval '10 minutes') <= $2",
            vec![service.into(), now.into(), codes.into()],
        ))
        .await?;
    Ok(r.rows_affected())
}

/// What became of a replay request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayAsked {
    /// Written as this parked event; the owning service applies it within seconds.
    Requested(i64),
    /// The same event is parked or waiting for its retry already: nothing written.
    Open,
    /// Replayed before, and `again` was not asked: nothing written.
    ReplayedBefore,
    /// No dead letter with this id in the caller's scope.
    Unknown,
}

/// Hands dead letter `dead_letter` back to the service that recorded it, as a retry request
/// applied through its normal path (the operator needs no right on the broker), through the
/// database's `feepay_request_replay` (migration 0018): the request copies the recorded
/// record, with `edited` (body, content type) in place of its value when given; for an
/// operator login the database checks role and scope, names the requester and writes the
/// audit row in the same statement; `by` counts only for a caller that is no operator login.
pub async fn request_replay(
    db: &impl ConnectionTrait,
    dead_letter: i64,
    edited: Option<(&[u8], &str)>,
    reason: &str,
    by: &str,
    again: bool,
) -> Result<ReplayAsked, DbErr> {
    let (body, content_type): (Option<Vec<u8>>, Option<String>) = match edited {
        Some((b, ct)) => (Some(b.to_vec()), Some(ct.to_string())),
        None => (None, None),
    };
    let row = db
        .query_one(crate::sql::stmt(
            "SELECT outcome, parked_id FROM feepay_request_replay($1, $2, $3, $4, $5, $6)",
            vec![dead_letter.into(), body.into(), content_type.into(), reason.into(), by.into(), again.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("feepay_request_replay returned no row".into()))?;
    let outcome: String = row.try_get("", "outcome")?;
    let parked: Option<i64> = row.try_get("", "parked_id")?;
    Ok(match (outcome.as_str(), parked) {
        ("requested", Some(id)) => ReplayAsked::Requested(id),
        ("open", _) => ReplayAsked::Open,
        ("replayed_before", _) => ReplayAsked::ReplayedBefore,
        _ => ReplayAsked::Unknown,
    })
}

/// What became of a retry request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAsked {
    /// The owning service applies it within seconds.
    Requested,
    /// It was not parked (already requested, or resolved): nothing changed.
    NotParked(String),
    /// No parked event with this id in the caller's scope.
    Unknown,
}

/// Asks the owning service to apply a parked event again, through the database's
/// `feepay_request_retry` (migration 0014): for an operator login the database checks the
/// role and scope, names the requester from its operator row and writes the audit row in
/// the same statement; `by` counts only for a caller that is no operator login (the owner).
pub async fn request_retry(db: &impl ConnectionTrait, id: i64, reason: &str, by: &str) -> Result<RetryAsked, DbErr> {
    let row = db
        .query_one(crate::sql::stmt(
            "SELECT feepay_request_retry($1, $2, $3) AS outcome",
            vec![id.into(), reason.into(), by.into()],
        ))
        .await?;
    let outcome: Option<String> = match row {
        Some(r) => r.try_get("", "outcome")?,
        None => None,
    };
    Ok(match outcome.as_deref() {
        Some("retry_requested") => RetryAsked::Requested,
        Some(other) => RetryAsked::NotParked(other.to_string()),
        None => RetryAsked::Unknown,
    })
}
