//! The `audit_log` table: who did what, when and why. Rows are only ever inserted, in the
//! transaction of the action they record; the database stamps the time and the login
//! (trigger `audit_log_login`, migration 0011), so a row cannot claim another login.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::NotSet, Set};

/// The `audit_log` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub at: DateTimeUtc,
        pub actor: String,
        pub action: String,
        pub target: String,
        pub reason: Option<String>,
        pub details: Option<Json>,
        /// The database login that wrote the row (set by the trigger).
        pub db_login: Option<String>,
        /// The agency the row concerns, derived by the database (trigger `audit_log_agency`,
        /// migration 0015); operator logins read the rows of their scope.
        pub agency_code: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One action to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub actor: &'a str,
    /// A dotted verb, e.g. `receipt.cancel`, `reference.load`, `delivery.resend`.
    pub action: &'a str,
    pub target: &'a str,
    pub reason: Option<&'a str>,
    pub details: serde_json::Value,
}

/// Records an action in the caller's transaction.
pub async fn record(db: &impl ConnectionTrait, e: Entry<'_>) -> Result<(), DbErr> {
    let row = entity::ActiveModel {
        id: NotSet,
        at: NotSet,
        actor: Set(e.actor.to_string()),
        action: Set(e.action.to_string()),
        target: Set(e.target.to_string()),
        reason: Set(e.reason.map(str::to_string)),
        details: Set(Some(e.details)),
        db_login: NotSet,
        agency_code: NotSet,
    };
    entity::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}
