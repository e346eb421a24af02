//! The `payments` table: one row per payment id ever seen, the idempotency record, with
//! what was decided for it.

use sea_orm::entity::prelude::*;

/// What the payment got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Status {
    /// One or more receipts.
    #[sea_orm(string_value = "issued")]
    Issued,
    /// Nothing left to pay after the waivers: a notice, no receipt.
    #[sea_orm(string_value = "waived")]
    Waived,
    /// Refused with a reason (`payments.rejected`).
    #[sea_orm(string_value = "rejected")]
    Rejected,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_id: String,
    pub content_hash: String,
    pub agency_code: String,
    pub dossier_code: String,
    pub provider: String,
    pub total_paid: i64,
    pub paid_at: DateTimeUtc,
    pub status: Status,
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// The waived lines (`AssessedLine` as JSON), for a payment with any.
    pub waived_lines: Option<Json>,
    /// How often the id came again with other content (the first version stands).
    pub conflicts: i32,
    pub processed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
