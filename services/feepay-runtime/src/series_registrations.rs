//! The tax authority's acceptance of a collector's series (`series_registrations`): an
//! operator records the notice 01/TB-ĐKĐT (`receiptctl series register`), the issuer reads it
//! before numbering a receipt of a form version that needs it (Circular 91/2026/TT-BTC
//! Art. 17: registration before use).

use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, Set};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "series_registrations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub agency_code: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub template: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub letters: String,
        /// Number and date of the acceptance notice 01/TB-ĐKĐT.
        pub notice: String,
        pub accepted_on: Date,
        pub recorded_by: String,
        /// The login that recorded it, stamped by the database.
        pub db_login: Option<String>,
        pub recorded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as Registration;

/// An acceptance to record.
#[derive(Debug, Clone)]
pub struct Acceptance<'a> {
    pub agency: &'a str,
    pub template: &'a str,
    pub letters: &'a str,
    pub notice: &'a str,
    pub accepted_on: chrono::NaiveDate,
}

/// Records an acceptance; `false` when the series was already registered.
pub async fn record(
    db: &impl ConnectionTrait,
    a: &Acceptance<'_>,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let row = entity::ActiveModel {
        agency_code: Set(a.agency.to_string()),
        template: Set(a.template.to_string()),
        letters: Set(a.letters.to_string()),
        notice: Set(a.notice.to_string()),
        accepted_on: Set(a.accepted_on),
        recorded_by: Set(actor.to_string()),
        db_login: Set(None),
        recorded_at: Set(now),
    };
    let n = entity::Entity::insert(row)
        .on_conflict(sea_orm::sea_query::OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(n == 1)
}

/// Every registration, by agency.
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<Registration>, DbErr> {
    entity::Entity::find()
        .order_by_asc(entity::Column::AgencyCode)
        .order_by_asc(entity::Column::Template)
        .order_by_asc(entity::Column::Letters)
        .all(db)
        .await
}
