//! The public halves of the agency signing keys, as registered in the database.
//!
//! Whoever signs registers its public keys before signing; whoever verifies reads them here.
//! A key id names one key forever: registering a different key under a known id fails.

use ed25519_dalek::VerifyingKey;
use feepay_domain::receipt::public_key_from_hex;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, QueryOrder, QuerySelect};

/// A registered public key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublicKey {
    #[serde(rename = "keyId")]
    pub key_id: String,
    #[serde(rename = "agencyCode")]
    pub agency_code: String,
    pub algorithm: String,
    /// Ed25519 public key, 32 bytes in lowercase hex.
    #[serde(rename = "publicKey")]
    pub public_key: String,
    #[serde(rename = "registeredAt")]
    pub registered_at: String,
}

impl PublicKey {
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        public_key_from_hex(&self.public_key).ok()
    }
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("key id {0} is already registered with a different public key; a key id must never be reused — give the new key a new id")]
    Reused(String),
}

/// The `signing_keys` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "signing_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: String,
        pub agency_code: String,
        pub algorithm: String,
        /// Ed25519 public key, 32 bytes in lowercase hex.
        pub public_key: String,
        pub registered_at: DateTimeUtc,
        pub registered_by: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Registers `(agency, key_id, public hex)` triples; already registered identical keys are
/// left as they are.
pub async fn register(
    db: &impl ConnectionTrait,
    keys: &[(String, String, String)],
    by: &str,
) -> Result<(), RegisterError> {
    for (agency, key_id, public) in keys {
        entity::Entity::insert(entity::ActiveModel {
            key_id: Set(key_id.clone()),
            agency_code: Set(agency.clone()),
            public_key: Set(public.clone()),
            registered_by: Set(by.to_string()),
            ..Default::default()
        })
        .on_conflict(OnConflict::column(entity::Column::KeyId).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
        let stored: Option<String> = entity::Entity::find_by_id(key_id.as_str())
            .select_only()
            .column(entity::Column::PublicKey)
            .into_tuple()
            .one(db)
            .await?;
        if stored.as_ref() != Some(public) {
            return Err(RegisterError::Reused(key_id.clone()));
        }
    }
    Ok(())
}

/// Every registered key, by key id.
pub async fn load(db: &impl ConnectionTrait) -> Result<Vec<PublicKey>, DbErr> {
    use entity::Column as C;
    let rows = entity::Entity::find()
        .order_by_asc(C::AgencyCode)
        .order_by_asc(C::RegisteredAt)
        .order_by_asc(C::KeyId)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| PublicKey {
            key_id: r.key_id,
            agency_code: r.agency_code,
            algorithm: r.algorithm,
            public_key: r.public_key,
            registered_at: feepay_domain::receipt::rfc3339(r.registered_at),
        })
        .collect())
}
