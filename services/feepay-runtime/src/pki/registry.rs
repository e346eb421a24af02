//! The register of signing certificates (`signing_certificates`): written by the issuer
//! when it loads its signers, read by the lookup service (`/api/v1/keys`) and operators.

use super::signers::AgencySigner;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{QueryOrder, Set};

/// The `signing_certificates` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "signing_certificates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub fingerprint: String,
        pub agency_code: String,
        pub serial: String,
        pub subject: String,
        pub issuer: String,
        pub tax_code: Option<String>,
        pub not_before: DateTimeUtc,
        pub not_after: DateTimeUtc,
        pub key_store: String,
        #[serde(skip)]
        pub certificate: Vec<u8>,
        pub registered_at: DateTimeUtc,
        pub registered_by: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as RegisteredCertificate;

/// Registers certificates not registered yet (a certificate is registered once).
pub async fn register<'a>(
    db: &impl ConnectionTrait,
    signers: impl IntoIterator<Item = &'a AgencySigner>,
    by: &str,
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    let rows: Vec<entity::ActiveModel> = signers
        .into_iter()
        .map(|s| entity::ActiveModel {
            fingerprint: Set(s.info.fingerprint.clone()),
            agency_code: Set(s.agency.clone()),
            serial: Set(s.info.serial.clone()),
            subject: Set(s.info.subject.clone()),
            issuer: Set(s.info.issuer.clone()),
            tax_code: Set(s.info.tax_code.clone()),
            not_before: Set(s.info.not_before),
            not_after: Set(s.info.not_after),
            key_store: Set(s.kind.to_string()),
            certificate: Set(s.chain()[0].clone()),
            registered_at: Set(now),
            registered_by: Set(by.to_string()),
        })
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    entity::Entity::insert_many(rows)
        .on_conflict(OnConflict::column(entity::Column::Fingerprint).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(n)
}

/// Every registered certificate, by agency then validity.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<RegisteredCertificate>, DbErr> {
    entity::Entity::find()
        .order_by_asc(entity::Column::AgencyCode)
        .order_by_asc(entity::Column::NotBefore)
        .all(db)
        .await
}

/// One registered certificate by fingerprint.
pub async fn get(db: &impl ConnectionTrait, fingerprint: &str) -> Result<Option<RegisteredCertificate>, DbErr> {
    entity::Entity::find_by_id(fingerprint.to_string()).one(db).await
}
