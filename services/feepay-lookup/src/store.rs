//! Reads receipts, signing certificates and legacy keys for the lookup service. Read-only:
//! this service never writes.

use feepay_proto::v1;
use feepay_runtime::pki::registry::{self, RegisteredCertificate, Revocation};
use feepay_runtime::signing_keys::{self, PublicKey};
use prost::Message;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};
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
    pub range_from: i32,
    /// `issued`, `replaced`, or (before 1 July 2026) `cancelled`.
    pub status: String,
    pub cancelled: bool,
    pub cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub replaced_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cancel_reason: Option<String>,
    pub replaced_by: Option<Uuid>,
    pub replaces: Option<Uuid>,
    pub document: String,
    pub document_hash: String,
    pub previous_hash: String,
    pub issued_at: chrono::DateTime<chrono::Utc>,
}

/// The lookup's read model of the issuer's `receipts` table: the columns it shows and
/// checks, nothing it could write (its database role may only read them).
pub mod receipts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "receipts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub receipt_id: Uuid,
        pub agency_code: String,
        pub template: String,
        pub symbol: String,
        pub year: i32,
        pub number: i32,
        /// `issued`, `replaced` or `cancelled`.
        pub status: String,
        pub lookup_code: String,
        pub cancelled_at: Option<DateTimeUtc>,
        pub replaced_at: Option<DateTimeUtc>,
        pub range_from: i32,
        pub cancel_reason: Option<String>,
        pub replaced_by: Option<Uuid>,
        pub replaces: Option<Uuid>,
        pub document: String,
        pub document_hash: String,
        pub previous_hash: String,
        pub receipt_pb: Vec<u8>,
        pub issued_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn stored(r: receipts::Model) -> Result<StoredReceipt, DbErr> {
    Ok(StoredReceipt {
        receipt: v1::Receipt::decode(r.receipt_pb.as_slice())
            .map_err(|e| DbErr::Custom(format!("stored receipt: {e}")))?,
        receipt_id: r.receipt_id,
        agency_code: r.agency_code,
        template: r.template,
        symbol: r.symbol,
        year: r.year,
        number: r.number,
        range_from: r.range_from,
        cancelled: r.status == "cancelled",
        status: r.status,
        cancelled_at: r.cancelled_at,
        replaced_at: r.replaced_at,
        cancel_reason: r.cancel_reason,
        replaced_by: r.replaced_by,
        replaces: r.replaces,
        document: r.document,
        document_hash: r.document_hash,
        previous_hash: r.previous_hash,
        issued_at: r.issued_at,
    })
}

/// The lookup's read model of `receipt_notices`: errors notified on a receipt.
pub mod notices {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "receipt_notices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub notice_id: Uuid,
        pub receipt_id: Uuid,
        pub reason: String,
        pub corrections: Json,
        pub notified_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The columns of `refunds` the lookup may read.
pub mod refunds {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub refund_id: String,
        pub payment_id: String,
        pub status: String,
        pub allocation: Option<Json>,
        pub applied_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A refund recorded on a receipt: how much, when.
#[derive(Debug, Clone)]
pub struct RefundOn {
    pub amount: i64,
    pub recorded_at: Option<chrono::DateTime<chrono::Utc>>,
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
    /// The revocation list, by certificate fingerprint.
    pub revocations: std::collections::HashMap<String, Revocation>,
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
        receipts::Entity::find()
            .filter(receipts::Column::LookupCode.eq(code))
            .one(&self.db)
            .await?
            .map(stored)
            .transpose()
    }

    pub async fn by_id(&self, id: Uuid) -> Result<Option<StoredReceipt>, DbErr> {
        receipts::Entity::find_by_id(id).one(&self.db).await?.map(stored).transpose()
    }

    pub async fn neighbours(&self, r: &StoredReceipt) -> Result<Neighbours, DbErr> {
        use receipts::Column as C;
        let rows: Vec<(i32, String, String)> = receipts::Entity::find()
            .select_only()
            .columns([C::Number, C::DocumentHash, C::PreviousHash])
            .filter(C::AgencyCode.eq(r.agency_code.as_str()))
            .filter(C::Template.eq(r.template.as_str()))
            .filter(C::Symbol.eq(r.symbol.as_str()))
            .filter(C::Year.eq(r.year))
            .filter(C::RangeFrom.eq(r.range_from))
            .filter(C::Number.is_in([r.number - 1, r.number + 1]))
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut n = Neighbours::default();
        for (number, document_hash, previous_hash) in rows {
            if number == r.number - 1 {
                n.previous_document_hash = Some(document_hash);
            } else {
                n.next_previous_hash = Some(previous_hash);
            }
        }
        Ok(n)
    }

    /// The errors notified on a receipt, oldest first.
    pub async fn notices(&self, receipt_id: Uuid) -> Result<Vec<notices::Model>, DbErr> {
        use sea_orm::QueryOrder;
        notices::Entity::find()
            .filter(notices::Column::ReceiptId.eq(receipt_id))
            .order_by_asc(notices::Column::NotifiedAt)
            .all(&self.db)
            .await
    }

    /// The refunds recorded on a receipt (its payment's refunds, the part on this receipt).
    pub async fn refunds_on(&self, r: &StoredReceipt) -> Result<Vec<RefundOn>, DbErr> {
        let rows = refunds::Entity::find()
            .select_only()
            .columns([
                refunds::Column::RefundId,
                refunds::Column::PaymentId,
                refunds::Column::Status,
                refunds::Column::Allocation,
                refunds::Column::AppliedAt,
            ])
            .filter(refunds::Column::PaymentId.eq(r.receipt.payment_id.as_str()))
            .filter(refunds::Column::Status.eq("applied"))
            .all(&self.db)
            .await?;
        let id = r.receipt_id.to_string();
        Ok(rows
            .into_iter()
            .filter_map(|f| {
                let amount: i64 = f
                    .allocation
                    .as_ref()?
                    .as_array()?
                    .iter()
                    .filter(|e| e["receipt_id"].as_str() == Some(id.as_str()))
                    .filter_map(|e| e["amount"].as_i64())
                    .sum();
                (amount > 0).then_some(RefundOn { amount, recorded_at: f.applied_at })
            })
            .collect())
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
            revocations: registry::revocations(&self.db).await?,
        });
        *self.keys.write().await = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }
}
