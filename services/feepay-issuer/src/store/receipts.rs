//! The `receipts` table: one row per receipt ever issued, never deleted (a rule turns a
//! DELETE into nothing); a cancelled receipt keeps its number and names its replacement.

use sea_orm::entity::prelude::*;

/// Issued, or cancelled (with its reason, and its replacement when there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Status {
    #[sea_orm(string_value = "issued")]
    Issued,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "receipts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub receipt_id: Uuid,
    pub payment_id: String,
    pub agency_code: String,
    pub template: String,
    pub symbol: String,
    pub year: i32,
    pub number: i32,
    pub total: i64,
    pub waived: i64,
    pub status: Status,
    pub issued_at: DateTimeUtc,
    pub lookup_code: String,
    pub key_id: String,
    pub signature: String,
    pub previous_hash: String,
    pub document_hash: String,
    /// The signed XML document, as issued.
    pub document: String,
    /// The receipt as the `Receipt` protobuf (its status follows the row's).
    pub receipt_pb: Vec<u8>,
    pub replaces: Option<Uuid>,
    pub replaced_by: Option<Uuid>,
    pub cancelled_at: Option<DateTimeUtc>,
    pub cancel_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A receipt named by an operator: its id or its lookup code.
pub fn named(receipt: &str) -> sea_orm::Condition {
    feepay_runtime::sql::id_or_code(Column::ReceiptId, Column::LookupCode, receipt)
}
