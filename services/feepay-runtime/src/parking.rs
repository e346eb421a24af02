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

/// The reason code of a dead letter handed back by an operator for replay (a retry request
/// from the start; see [`request_replay`]).
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
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        /// The record's headers as `(name, value)` pairs.
        pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
            serde_json::from_value::<Vec<(String, String)>>(self.headers.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, hex::decode(v).unwrap_or_default()))
                .collect()
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

/// The columns a new row takes from the event itself.
fn new_row(e: &NewParked, now: chrono::DateTime<Utc>) -> entity::ActiveModel {
    let headers: Vec<(String, String)> = e.headers.iter().map(|(k, v)| (k.clone(), hex::encode(v))).collect();
    entity::ActiveModel {
        service: Set(e.service.clone()),
        topic: Set(e.topic.clone()),
        partition: Set(e.partition),
        offset: Set(e.offset),
        record_key: Set(e.key.clone()),
        headers: Set(serde_json::to_value(headers).unwrap_or_default()),
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

/// Hands an event back to the service that owns its topic as a retry request (a dead
/// letter an operator checked and perhaps edited): that service applies it through its
/// normal path, as it does parked events, so the operator needs no right to write to the
/// broker. Returns the row's id, or `None` when the same event is open already (parked or
/// waiting for its retry).
pub async fn request_replay(
    db: &impl ConnectionTrait,
    e: &NewParked,
    why: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<i64>, DbErr> {
    use entity::Column as C;
    let row = entity::ActiveModel {
        reason_code: Set(REPLAY.to_string()),
        reason: Set(why.to_string()),
        status: Set(Status::RetryRequested),
        attempts: Set(0),
        retry_requested_by: Set(Some(by.to_string())),
        retry_requested_at: Set(Some(now)),
        ..new_row(e, now)
    };
    let inserted = entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([C::Service, C::Subject, C::ContentHash])
                .target_and_where(Expr::col(C::Status).ne("resolved"))
                .do_nothing()
                .to_owned(),
        )
        .exec(db)
        .await;
    match inserted {
        Ok(r) => Ok(Some(r.last_insert_id)),
        Err(DbErr::RecordNotInserted) => Ok(None),
        Err(e) => Err(e),
    }
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
