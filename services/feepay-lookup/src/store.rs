//! Reads receipts, signing certificates and legacy keys for the lookup service. Read-only:
//! this service never writes.

use feepay_proto::v1;
use feepay_runtime::pki::registry::{self, RegisteredCertificate};
use feepay_runtime::signing_keys::{self, PublicKey};
use feepay_runtime::sql::stmt;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;
use uuid::Uuid;

/// A receipt as stored, with its current state.
#[derive(Debug, Clone)]
pub struct StoredReceipt {
    pub receipt: v1::Receipt,
    pub receipt_id: Uuid,
    pub agency_code: String,
    pub template: String,
    pub symbol: String,
    pub year: i32,
    pub number: i32,
    pub cancelled: bool,
    pub cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cancel_reason: Option<String>,
    pub replaced_by: Option<Uuid>,
    pub replaces: Option<Uuid>,
    pub document: String,
    pub document_hash: String,
    pub previous_hash: String,
    pub issued_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "receipt_id, agency_code, template, symbol, year, number, status, cancelled_at, cancel_reason, replaced_by, replaces, document, document_hash, previous_hash, receipt_pb, issued_at";

fn from_row(r: &QueryResult) -> Result<StoredReceipt, DbErr> {
    let pb: Vec<u8> = r.try_get("", "receipt_pb")?;
    let status: String = r.try_get("", "status")?;
    Ok(StoredReceipt {
        receipt: v1::Receipt::decode(pb.as_slice()).map_err(|e| DbErr::Custom(format!("stored receipt: {e}")))?,
        receipt_id: r.try_get("", "receipt_id")?,
        agency_code: r.try_get("", "agency_code")?,
        template: r.try_get("", "template")?,
        symbol: r.try_get("", "symbol")?,
        year: r.try_get("", "year")?,
        number: r.try_get("", "number")?,
        cancelled: status == "cancelled",
        cancelled_at: r.try_get("", "cancelled_at")?,
        cancel_reason: r.try_get("", "cancel_reason")?,
        replaced_by: r.try_get("", "replaced_by")?,
        replaces: r.try_get("", "replaces")?,
        document: r.try_get("", "document")?,
        document_hash: r.try_get("", "document_hash")?,
        previous_hash: r.try_get("", "previous_hash")?,
        issued_at: r.try_get("", "issued_at")?,
    })
}

/// The neighbours of a receipt in its series and year, for the chain check.
#[derive(Debug, Clone, Default)]
pub struct Neighbours {
    /// Document hash of the receipt numbered one less, if any.
    pub previous_document_hash: Option<String>,
    /// `previous_hash` written in the receipt numbered one more, if any.
    pub next_previous_hash: Option<String>,
}

/// What the issuer has published to verify its receipts: the registered signing
/// certificates (layout 2.0.0, XML signatures) and the Ed25519 keys of layout 1.0.
#[derive(Debug, Default)]
pub struct Published {
    pub certificates: Vec<RegisteredCertificate>,
    pub legacy_keys: Vec<PublicKey>,
}

impl Published {
    /// The agency a signer (certificate fingerprint or legacy key id) is registered for.
    pub fn agency_of(&self, key_id: &str) -> Option<&str> {
        self.certificates
            .iter()
            .find(|c| c.fingerprint == key_id)
            .map(|c| c.agency_code.as_str())
            .or_else(|| self.legacy_keys.iter().find(|k| k.key_id == key_id).map(|k| k.agency_code.as_str()))
    }
}

/// The published signers and when they were read.
type CachedKeys = Option<(Instant, Arc<Published>)>;

/// Database access with a short-lived cache of the published signers.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    keys: Arc<RwLock<CachedKeys>>,
}

/// How long the signer list is cached; a newly registered certificate is seen within this time.
const KEYS_TTL: Duration = Duration::from_secs(30);

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Store { db, keys: Arc::new(RwLock::new(None)) }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// By lookup code (already normalised). The same query runs whatever the code looks like.
    pub async fn by_code(&self, code: &str) -> Result<Option<StoredReceipt>, DbErr> {
        let row = self
            .db
            .query_one(stmt(format!("SELECT {COLUMNS} FROM receipts WHERE lookup_code = $1"), vec![code.into()]))
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn by_id(&self, id: Uuid) -> Result<Option<StoredReceipt>, DbErr> {
        let row = self
            .db
            .query_one(stmt(format!("SELECT {COLUMNS} FROM receipts WHERE receipt_id = $1"), vec![id.into()]))
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn neighbours(&self, r: &StoredReceipt) -> Result<Neighbours, DbErr> {
        let rows = self
            .db
            .query_all(stmt(
                "SELECT number, document_hash, previous_hash FROM receipts WHERE agency_code = $1 AND template = $2 AND symbol = $3 AND year = $4 AND number IN ($5, $6)",
                vec![
                    r.agency_code.clone().into(),
                    r.template.clone().into(),
                    r.symbol.clone().into(),
                    r.year.into(),
                    (r.number - 1).into(),
                    (r.number + 1).into(),
                ],
            ))
            .await?;
        let mut n = Neighbours::default();
        for row in rows {
            let number: i32 = row.try_get("", "number")?;
            if number == r.number - 1 {
                n.previous_document_hash = Some(row.try_get("", "document_hash")?);
            } else {
                n.next_previous_hash = Some(row.try_get("", "previous_hash")?);
            }
        }
        Ok(n)
    }

    /// Every registered certificate and legacy key (cached for 30 s).
    pub async fn keys(&self) -> Result<Arc<Published>, DbErr> {
        if let Some((at, keys)) = self.keys.read().await.as_ref() {
            if at.elapsed() < KEYS_TTL {
                return Ok(keys.clone());
            }
        }
        let keys = Arc::new(Published {
            certificates: registry::list(&self.db).await?,
            legacy_keys: signing_keys::load(&self.db).await?,
        });
        *self.keys.write().await = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }
}
