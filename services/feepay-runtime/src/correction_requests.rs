//! Operators' correction requests (`correction_requests`): `receiptctl` queues them, the
//! issuer carries them out in its own transaction (it holds the keys) and records the
//! outcome, which `receiptctl` waits for.

use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect, Set};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "correction_requests")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub request_id: i64,
        pub receipt: String,
        /// `cancel`, `notify`, `replace` or `correct` (the issuer chooses notify or replace).
        pub kind: String,
        pub reason: String,
        pub replace: Option<Json>,
        pub actor: String,
        pub status: String,
        pub outcome: Option<Json>,
        pub requested_at: DateTimeUtc,
        pub done_at: Option<DateTimeUtc>,
        /// The login that filed it, stamped by the database (never by the client).
        pub db_login: Option<String>,
        /// Tries that could not be carried out yet, the last one's error, and when the next
        /// try is due (migration 0017).
        pub attempts: i32,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as CorrectionRequest;

/// Queues a request; returns its id.
pub async fn request(
    db: &impl ConnectionTrait,
    receipt: &str,
    kind: &str,
    reason: &str,
    replace: Option<serde_json::Value>,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<i64, DbErr> {
    let row = entity::ActiveModel {
        receipt: Set(receipt.to_string()),
        kind: Set(kind.to_string()),
        reason: Set(reason.to_string()),
        replace: Set(replace),
        actor: Set(actor.to_string()),
        status: Set("pending".into()),
        requested_at: Set(now),
        ..Default::default()
    };
    Ok(entity::Entity::insert(row).exec(db).await?.last_insert_id)
}

/// The oldest pending requests that are due (never tried, or their next try has come),
/// locked for this transaction (others skip them).
pub async fn take_pending(
    db: &impl ConnectionTrait,
    limit: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<CorrectionRequest>, DbErr> {
    use sea_orm::Condition;
    entity::Entity::find()
        // The constant lets PostgreSQL use the partial index `correction_requests_pending`.
        .filter(crate::sql::equals_constant(entity::Column::Status, "pending"))
        .filter(
            Condition::any().add(entity::Column::NextAttemptAt.is_null()).add(entity::Column::NextAttemptAt.lte(now)),
        )
        .order_by_asc(entity::Column::RequestId)
        .limit(limit)
        .lock_with_behavior(sea_orm::sea_query::LockType::Update, sea_orm::sea_query::LockBehavior::SkipLocked)
        .all(db)
        .await
}

/// The delay before the next try of a request that failed `attempts` times: 5 s, doubling,
/// at most 10 minutes.
pub fn retry_delay(attempts: i32) -> chrono::Duration {
    let secs = 5i64.saturating_mul(1i64 << attempts.clamp(0, 20)).min(600);
    chrono::Duration::seconds(secs)
}

/// The request could not be carried out now: it stays pending with its error and waits for
/// its next try, and the requests after it go on.
pub async fn postpone(
    db: &impl ConnectionTrait,
    r: &CorrectionRequest,
    error: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .col_expr(entity::Column::Attempts, Expr::value(r.attempts + 1))
        .col_expr(entity::Column::LastError, Expr::value(error.chars().take(2000).collect::<String>()))
        .col_expr(entity::Column::NextAttemptAt, Expr::value(now + retry_delay(r.attempts)))
        .filter(entity::Column::RequestId.eq(r.request_id))
        .filter(entity::Column::Status.eq("pending"))
        .exec(db)
        .await
        .map(|_| ())
}

/// Records the outcome (`done` or `refused`).
pub async fn finish(
    db: &impl ConnectionTrait,
    id: i64,
    status: &str,
    outcome: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .col_expr(entity::Column::Status, Expr::value(status))
        .col_expr(entity::Column::Outcome, Expr::value(outcome))
        .col_expr(entity::Column::DoneAt, Expr::value(now))
        .filter(entity::Column::RequestId.eq(id))
        .filter(entity::Column::Status.eq("pending"))
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<CorrectionRequest>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

#[cfg(test)]
mod tests {
    use super::retry_delay;

    #[test]
    fn a_waiting_request_is_tried_again_sooner_first_and_at_least_every_ten_minutes() {
        let secs: Vec<i64> = [0, 1, 2, 6, 7, 30, i32::MAX].iter().map(|&a| retry_delay(a).num_seconds()).collect();
        assert_eq!(secs, [5, 10, 20, 320, 600, 600, 600]);
    }
}
