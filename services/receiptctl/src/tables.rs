//! receiptctl's views of the services' tables, as sea-orm entities naming the columns the
//! commands show. They are read models: the issuer owns `receipts` and `payments`, the
//! notifier `deliveries`. The one write an operator makes here directly is putting a
//! delivery back in the queue (`deliveries resend`), which the notifier then sends.

/// The issuer's `receipts`, as listed, shown, audited and reported.
pub mod receipts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "receipts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub receipt_id: Uuid,
        pub payment_id: String,
        pub agency_code: String,
        pub template: String,
        pub symbol: String,
        pub year: i32,
        pub number: i32,
        pub total: i64,
        pub waived: i64,
        /// `issued` or `cancelled`.
        pub status: String,
        pub issued_at: DateTimeUtc,
        pub lookup_code: String,
        pub previous_hash: String,
        pub document_hash: String,
        pub document: String,
        pub receipt_pb: Vec<u8>,
        pub cancelled_at: Option<DateTimeUtc>,
        pub cancel_reason: Option<String>,
        pub replaced_by: Option<Uuid>,
        pub replaced_at: Option<DateTimeUtc>,
        pub range_from: i32,
        pub delegate_code: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::payments::Entity",
            from = "Column::PaymentId",
            to = "super::payments::Column::PaymentId"
        )]
        Payment,
    }

    impl Related<super::payments::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Payment.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}

    /// A receipt named by an operator: its id or its lookup code.
    pub fn named(receipt: &str) -> sea_orm::Condition {
        feepay_runtime::sql::id_or_code(Column::ReceiptId, Column::LookupCode, receipt)
    }
}

/// The issuer's `payments`, for dossier codes and the daily reconciliation.
pub mod payments {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub payment_id: String,
        pub agency_code: String,
        pub dossier_code: String,
        pub provider: String,
        pub total_paid: i64,
        pub paid_at: DateTimeUtc,
        /// `issued`, `waived` or `rejected`.
        pub status: String,
        pub reason: Option<String>,
        pub detail: Option<String>,
        /// The waived lines (`AssessedLine` as JSON), for a payment with any.
        pub waived_lines: Option<Json>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The issuer's `refunds`, for the demo's progress.
pub mod refunds {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub refund_id: String,
        pub payment_id: String,
        /// `pending`, `applied`, `rejected` or `parked`.
        pub status: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The notifier's `deliveries`.
pub mod deliveries {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub notification_id: String,
        pub kind: String,
        pub payment_id: String,
        pub receipt_id: Option<String>,
        pub agency_code: String,
        pub recipient: Option<String>,
        /// `queued`, `sent`, `failed` or `skipped`.
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
