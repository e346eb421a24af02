//! Operators of `receiptctl` (`operators`): their role, agency scope and the PostgreSQL
//! login each is bound to. The database enforces the scope of a bound login (row-level
//! security, migration 0011); the issuer reads the binding to check who asked for a
//! correction before carrying it out.

use sea_orm::entity::prelude::*;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "operators")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub role: String,
        /// An agency code (its subtree) or `*`.
        pub scope: String,
        pub token_sha256: String,
        pub created_at: DateTimeUtc,
        pub created_by: String,
        pub revoked_at: Option<DateTimeUtc>,
        pub db_login: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as Operator;

/// The operator bound to a database login, revoked or not.
pub async fn bound_to(db: &impl ConnectionTrait, login: &str) -> Result<Option<Operator>, DbErr> {
    entity::Entity::find().filter(entity::Column::DbLogin.eq(login)).one(db).await
}
