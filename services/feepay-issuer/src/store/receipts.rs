//! The `receipts` table: one row per receipt ever issued, never deleted (a rule turns a
//! DELETE into nothing); a replaced (or, before 1 July 2026, cancelled) receipt keeps its
//! number and names its replacement.

use sea_orm::entity::prelude::*;

/// Issued; replaced by a receipt that names it (Circular 91/2026/TT-BTC Art. 20.2); or
/// cancelled under the rules before 1 July 2026 (with its reason and replacement, if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Status {
    #[sea_orm(string_value = "issued")]
    Issued,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    #[sea_orm(string_value = "replaced")]
    Replaced,
}

/// How the receipt reaches the tax authority (from the form version it was issued under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Transmission {
    /// Counted in the usage report BC26/BLĐT of its period.
    #[sea_orm(string_value = "usage_report")]
    UsageReport,
    /// Listed in the summary 01/TH-BLĐT of its day.
    #[sea_orm(string_value = "daily_summary")]
    DailySummary,
}

impl From<feepay_domain::forms::Transmission> for Transmission {
    fn from(t: feepay_domain::forms::Transmission) -> Self {
        match t {
            feepay_domain::forms::Transmission::UsageReport => Transmission::UsageReport,
            feepay_domain::forms::Transmission::DailySummary => Transmission::DailySummary,
        }
    }
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
    /// The first number of the range it was numbered in (its counter).
    pub range_from: i32,
    /// The delegate that issued it, signing and transmitting (Decree 254/2026/NĐ-CP Art. 25).
    pub delegate_code: Option<String>,
    pub replaced_at: Option<DateTimeUtc>,
    pub transmission: Transmission,
    /// The summary 01/TH-BLĐT that listed it.
    pub summary_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A receipt named by an operator: its id or its lookup code.
pub fn named(receipt: &str) -> sea_orm::Condition {
    feepay_runtime::sql::id_or_code(Column::ReceiptId, Column::LookupCode, receipt)
}
