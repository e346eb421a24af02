//! The `refunds` table: each refund event once, kept until its payment has been seen and
//! the refund applied or refused. Applied: recorded against the receipts it falls on, which
//! stay as they are (since 1 July 2026), or, before, by cancelling and replacing them.

use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Status {
    /// Waiting for its payment.
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "applied")]
    Applied,
    #[sea_orm(string_value = "rejected")]
    Rejected,
    /// Could not be applied on its own; see `parked_events`.
    #[sea_orm(string_value = "parked")]
    Parked,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refunds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub refund_id: String,
    pub payment_id: String,
    pub content_hash: String,
    pub status: Status,
    pub detail: Option<String>,
    /// The `PaymentRefunded` event as received.
    pub refund_pb: Vec<u8>,
    pub received_at: DateTimeUtc,
    pub applied_at: Option<DateTimeUtc>,
    /// What was given back on which receipt: `[{receipt_id, fee_code, amount}]`.
    pub allocation: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
