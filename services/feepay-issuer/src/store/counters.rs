//! The `series_counters` table: the last number and the last document hash of each
//! collector, template, symbol, year and number range (the collector's own, or a
//! delegate's: Decree 254/2026/NĐ-CP Art. 25.5). A counter is locked for the whole transaction that
//! inserts its receipts, so a rollback rolls it back too and no number is burnt.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "series_counters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub agency: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub template: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub symbol: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub year: i32,
    /// The first number of the range.
    #[sea_orm(primary_key, auto_increment = false)]
    pub range_from: i32,
    pub last_number: i32,
    pub last_hash: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
