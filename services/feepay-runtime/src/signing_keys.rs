//! The public halves of the agency signing keys, as registered in the database.
//!
//! Whoever signs registers its public keys before signing; whoever verifies reads them here.
//! A key id names one key forever: registering a different key under a known id fails.

use crate::sql::stmt;
use ed25519_dalek::VerifyingKey;
use feepay_domain::receipt::public_key_from_hex;
use sea_orm::{ConnectionTrait, DbErr};

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

/// Registers `(agency, key_id, public hex)` triples; already registered identical keys are
/// left as they are.
pub async fn register(
    db: &impl ConnectionTrait,
    keys: &[(String, String, String)],
    by: &str,
) -> Result<(), RegisterError> {
    for (agency, key_id, public) in keys {
        db.execute(stmt(
            "INSERT INTO signing_keys (key_id, agency_code, public_key, registered_by) VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
            vec![key_id.clone().into(), agency.clone().into(), public.clone().into(), by.into()],
        ))
        .await?;
        let row = db
            .query_one(stmt("SELECT public_key FROM signing_keys WHERE key_id = $1", vec![key_id.clone().into()]))
            .await?;
        let stored: String = row.map(|r| r.try_get("", "public_key")).transpose()?.unwrap_or_default();
        if stored != *public {
            return Err(RegisterError::Reused(key_id.clone()));
        }
    }
    Ok(())
}

/// Every registered key, by key id.
pub async fn load(db: &impl ConnectionTrait) -> Result<Vec<PublicKey>, DbErr> {
    let rows = db
        .query_all(stmt(
            "SELECT key_id, agency_code, algorithm, public_key, registered_at FROM signing_keys ORDER BY agency_code, registered_at, key_id",
            vec![],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let at: chrono::DateTime<chrono::Utc> = r.try_get("", "registered_at")?;
            Ok(PublicKey {
                key_id: r.try_get("", "key_id")?,
                agency_code: r.try_get("", "agency_code")?,
                algorithm: r.try_get("", "algorithm")?,
                public_key: r.try_get("", "public_key")?,
                registered_at: feepay_domain::receipt::rfc3339(at),
            })
        })
        .collect()
}
