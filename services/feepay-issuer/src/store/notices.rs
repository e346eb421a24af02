//! The `receipt_notices` table: errors notified on a receipt without reissuing it (Circular
//! 91/2026/TT-BTC Art. 20.1). The receipt stands as signed; the notice says what was wrong and
//! what is right, and its 04/SS-CTĐT is in `tax_documents` under the same id.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "receipt_notices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub notice_id: Uuid,
    pub receipt_id: Uuid,
    pub reason: String,
    /// The payer fields as they should read.
    pub corrections: Json,
    pub request_id: Option<i64>,
    pub notified_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
