//! PostgreSQL through sea-orm: connection, database creation and migrations.

use crate::settings::DatabaseSettings;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement, TransactionTrait};
use sea_orm_migration::prelude::*;
use std::time::Duration;

/// Connects, creating the database first when it does not exist (handy on a fresh machine).
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let url = settings.url.expose();
    match try_connect(url, settings.max_connections).await {
        Ok(db) => Ok(db),
        Err(e) if e.to_string().contains("does not exist") => {
            create_database(url).await?;
            try_connect(url, settings.max_connections).await
        }
        Err(e) => Err(e),
    }
}

async fn try_connect(url: &str, max: u32) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(max)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // Multi-row inserts have a different text for each row count; a small prepared
        // statement cache keeps client and server memory bounded under load.
        .map_sqlx_postgres_opts(|o| o.statement_cache_capacity(16));
    Database::connect(opts).await
}

/// Splits `postgres://.../name?x` into the server URL (on database `postgres`) and `name`.
pub fn split_database_url(url: &str) -> Option<(String, String)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let slash = base.rfind('/')?;
    if base[..slash].ends_with('/') {
        return None;
    }
    let name = base[slash + 1..].to_string();
    let mut server = format!("{}/postgres", &base[..slash]);
    if let Some(q) = query {
        server.push('?');
        server.push_str(q);
    }
    Some((server, name))
}

/// `CREATE DATABASE name` on the same server.
pub async fn create_database(url: &str) -> Result<(), DbErr> {
    let (server, name) =
        split_database_url(url).ok_or_else(|| DbErr::Custom("cannot find a database name in the URL".to_string()))?;
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(DbErr::Custom(format!("database name {name:?} must be letters, digits and '_'")));
    }
    let admin = try_connect(&server, 1).await?;
    let r = admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await;
    admin.close().await?;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) => Err(e),
    }
}

/// `DROP DATABASE name` (tests).
pub async fn drop_database(url: &str) -> Result<(), DbErr> {
    let (server, name) = split_database_url(url).ok_or_else(|| DbErr::Custom("no database name".into()))?;
    let admin = try_connect(&server, 1).await?;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
    admin.close().await
}

/// The migrations, applied in order and recorded in `seaql_migrations`.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(Initial),
            Box::new(Deliveries),
            Box::new(KeysOperators),
            Box::new(OutboxReceiptRef),
            Box::new(Lz4Documents),
        ]
    }
}

struct Initial;

impl MigrationName for Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("migrations/0001_initial.sql")).await.map(|_| ())
    }
}

struct Deliveries;

impl MigrationName for Deliveries {
    fn name(&self) -> &str {
        "m0002_deliveries"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Deliveries {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("migrations/0002_deliveries.sql")).await.map(|_| ())
    }
}

struct KeysOperators;

impl MigrationName for KeysOperators {
    fn name(&self) -> &str {
        "m0003_keys_operators"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for KeysOperators {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(include_str!("migrations/0003_keys_operators.sql"))
            .await
            .map(|_| ())
    }
}

struct OutboxReceiptRef;

impl MigrationName for OutboxReceiptRef {
    fn name(&self) -> &str {
        "m0004_outbox_receipt_ref"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutboxReceiptRef {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(include_str!("migrations/0004_outbox_receipt_ref.sql"))
            .await
            .map(|_| ())
    }
}

struct Lz4Documents;

impl MigrationName for Lz4Documents {
    fn name(&self) -> &str {
        "m0005_lz4_documents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Lz4Documents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(include_str!("migrations/0005_lz4_documents.sql")).await.map(|_| ())
    }
}

/// Applies pending migrations. Safe to run from several processes at once: they run in one
/// transaction holding a transaction-scoped advisory lock. (A session-scoped lock would be
/// wrong here: through a pool, the unlock may go out on another connection than the lock.)
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    txn.execute(Statement::from_string(db.get_database_backend(), "SELECT pg_advisory_xact_lock(4242001)")).await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_database_url("postgres://u:p@h:5432/feepay?sslmode=disable"),
            Some(("postgres://u:p@h:5432/postgres?sslmode=disable".into(), "feepay".into()))
        );
        assert_eq!(split_database_url("postgres://h"), None);
    }
}
