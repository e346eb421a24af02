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

/// The `certificate_revocations` table: written only through `feepay_revoke_certificate`.
pub mod revocation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "certificate_revocations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub fingerprint: String,
        /// From when signatures made with the certificate are not accepted.
        pub revoked_at: DateTimeUtc,
        /// RFC 5280 reason code in snake case (`key_compromise`, `superseded`, …).
        pub reason: String,
        pub note: Option<String>,
        pub recorded_at: DateTimeUtc,
        pub recorded_by: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use revocation::Model as Revocation;

/// The reasons a revocation may give (RFC 5280 §5.3.1 less `certificateHold` and
/// `removeFromCRL`: a revocation here is final), as `feepay_revoke_certificate` accepts them.
pub const REVOCATION_REASONS: [&str; 7] = [
    "unspecified",
    "key_compromise",
    "ca_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "privilege_withdrawn",
];

/// Every revocation, by certificate fingerprint.
pub async fn revocations(db: &impl ConnectionTrait) -> Result<std::collections::HashMap<String, Revocation>, DbErr> {
    Ok(revocation::Entity::find().all(db).await?.into_iter().map(|r| (r.fingerprint.clone(), r)).collect())
}

impl Revocation {
    /// Whether a signature made at `signed_at` falls on or after the revocation.
    pub fn covers(&self, signed_at: DateTime<Utc>) -> bool {
        signed_at >= self.revoked_at
    }
}

/// What became of a revocation asked with [`revoke`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Recorded, with its audit row; the number of receipts signed with the certificate
    /// from the revocation time on.
    Revoked {
        receipts_after: i64,
    },
    AlreadyRevoked,
    /// No such certificate in the caller's scope.
    Unknown,
}

/// Revokes a certificate through `feepay_revoke_certificate`, which checks the login's
/// role and scope and writes the audit row in the same statement (`by` names the actor
/// only for a caller that is no operator login). `since` absent: from the database's now.
pub async fn revoke(
    db: &impl ConnectionTrait,
    fingerprint: &str,
    since: Option<DateTime<Utc>>,
    reason: &str,
    note: &str,
    by: &str,
) -> Result<RevokeOutcome, DbErr> {
    let row = db
        .query_one(crate::sql::stmt(
            "SELECT outcome, receipts_after FROM feepay_revoke_certificate($1, $2, $3, $4, $5)",
            vec![fingerprint.into(), since.into(), reason.into(), note.into(), by.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("feepay_revoke_certificate returned no row".into()))?;
    let outcome: String = row.try_get("", "outcome")?;
    let after: Option<i64> = row.try_get("", "receipts_after")?;
    Ok(match outcome.as_str() {
        "revoked" => RevokeOutcome::Revoked { receipts_after: after.unwrap_or(0) },
        "already_revoked" => RevokeOutcome::AlreadyRevoked,
        _ => RevokeOutcome::Unknown,
    })
}
