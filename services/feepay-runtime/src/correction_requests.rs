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

/// The oldest pending requests, locked for this transaction (others skip them).
pub async fn take_pending(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<CorrectionRequest>, DbErr> {
    entity::Entity::find()
        // The constant lets PostgreSQL use the partial index `correction_requests_pending`.
        .filter(crate::sql::equals_constant(entity::Column::Status, "pending"))
        .order_by_asc(entity::Column::RequestId)
        .limit(limit)
        .lock_with_behavior(sea_orm::sea_query::LockType::Update, sea_orm::sea_query::LockBehavior::SkipLocked)
        .all(db)
        .await
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
