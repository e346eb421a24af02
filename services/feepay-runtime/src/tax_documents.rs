//! The documents signed for the tax authority (`tax_documents`): usage reports and notices
//! of receipts issued in error. Written by the issuer in the transaction that makes them
//! due; read by operators (`receiptctl tax`).

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{QueryOrder, QuerySelect, Set};

/// The `tax_documents` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "tax_documents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub document_id: Uuid,
        pub kind: String,
        pub agency_code: String,
        pub period: Option<String>,
        pub receipt_id: Option<Uuid>,
        #[serde(skip)]
        pub document: String,
        pub document_hash: String,
        pub key_id: String,
        pub created_at: DateTimeUtc,
        /// A daily summary's number among the sender's documents of its day.
        pub sequence: Option<i32>,
        /// A daily summary's submission of its day: 0 the first, then supplements.
        pub supplement: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as TaxDocument;

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// BC26/BLĐT.
    UsageReport,
    /// 04/SS-CTĐT.
    ErrorNotice,
    /// 01/TH-BLĐT.
    DailySummary,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::UsageReport => "usage_report",
            Kind::ErrorNotice => "error_notice",
            Kind::DailySummary => "daily_summary",
        }
    }

    pub fn from_code(s: &str) -> Option<Kind> {
        match s {
            "usage_report" => Some(Kind::UsageReport),
            "error_notice" => Some(Kind::ErrorNotice),
            "daily_summary" => Some(Kind::DailySummary),
            _ => None,
        }
    }

    /// The form's number, as the tax authority names it.
    pub fn form(self) -> &'static str {
        match self {
            Kind::UsageReport => "BC26/BLĐT",
            Kind::ErrorNotice => "04/SS-CTĐT",
            Kind::DailySummary => "01/TH-BLĐT",
        }
    }
}

/// Records a document; `false` when one of the same kind already exists for the same period
/// (report) or receipt (notice) — another instance made it first.
pub async fn insert(db: &impl ConnectionTrait, doc: TaxDocument) -> Result<bool, DbErr> {
    let row = entity::ActiveModel {
        document_id: Set(doc.document_id),
        kind: Set(doc.kind),
        agency_code: Set(doc.agency_code),
        period: Set(doc.period),
        receipt_id: Set(doc.receipt_id),
        document: Set(doc.document),
        document_hash: Set(doc.document_hash),
        key_id: Set(doc.key_id),
        created_at: Set(doc.created_at),
        sequence: Set(doc.sequence),
        supplement: Set(doc.supplement),
    };
    let n = entity::Entity::insert(row)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(n == 1)
}

/// Documents, newest first, optionally of one kind or agency.
pub async fn list(
    db: &impl ConnectionTrait,
    kind: Option<Kind>,
    agency: Option<&str>,
    limit: u64,
) -> Result<Vec<TaxDocument>, DbErr> {
    let mut q = entity::Entity::find();
    if let Some(k) = kind {
        q = q.filter(entity::Column::Kind.eq(k.code()));
    }
    if let Some(a) = agency {
        q = q.filter(entity::Column::AgencyCode.eq(a));
    }
    q.order_by_desc(entity::Column::CreatedAt).limit(limit).all(db).await
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<TaxDocument>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// Whether the usage report of an agency for a period exists.
pub async fn has_report(db: &impl ConnectionTrait, agency: &str, period: &str) -> Result<bool, DbErr> {
    Ok(entity::Entity::find()
        .filter(entity::Column::Kind.eq(Kind::UsageReport.code()))
        .filter(entity::Column::AgencyCode.eq(agency))
        .filter(entity::Column::Period.eq(period))
        .count(db)
        .await?
        > 0)
}
