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

/// Connects without creating anything: what services do (the database and its schema are
/// the migrator's; see [`schema_behind`]).
pub async fn connect_existing(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    try_connect_with(settings.url.expose(), settings.max_connections, settings.lock_timeout).await
}

async fn try_connect(url: &str, max: u32) -> Result<DatabaseConnection, DbErr> {
    try_connect_with(url, max, Duration::from_secs(10)).await
}

async fn try_connect_with(url: &str, max: u32, lock_timeout: Duration) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_string());
    let lock_timeout_ms = lock_timeout.as_millis().to_string();
    opts.max_connections(max)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // Multi-row inserts have a different text for each row count; a small prepared
        // statement cache keeps client and server memory bounded under load. A bounded
        // lock wait turns a row held elsewhere (another instance during a rebalance, an
        // operator's session) into a transient error that is retried, not a hang.
        .map_sqlx_postgres_opts(move |o| {
            o.statement_cache_capacity(16).options([("lock_timeout", lock_timeout_ms.as_str())])
        });
    Database::connect(opts).await
}

/// The SQLSTATE of a database error, when the server gave one.
pub fn sqlstate(e: &DbErr) -> Option<String> {
    let rt = match e {
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return None,
    };
    match rt {
        sea_orm::RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(d)) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The migrations this build knows that the database has not applied yet (empty when the
/// schema is current). Reads `seaql_migrations` only, so a service's role needs no more.
pub async fn schema_behind(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let applied: std::collections::BTreeSet<String> = match db
        .query_all(Statement::from_string(db.get_database_backend(), "SELECT version FROM seaql_migrations"))
        .await
    {
        Ok(rows) => rows.iter().filter_map(|r| r.try_get::<String>("", "version").ok()).collect(),
        // No migration table yet: nothing applied.
        Err(e) if sqlstate(&e).as_deref() == Some("42P01") => Default::default(),
        Err(e) => return Err(e),
    };
    Ok(Migrator::migrations().iter().map(|m| m.name().to_string()).filter(|n| !applied.contains(n)).collect())
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

/// The migrations, applied in order and recorded in `seaql_migrations`: SQL files under
/// `src/migrations/`, never edited once released.
pub struct Migrator;

/// One SQL file of `src/migrations/`.
struct SqlFile {
    name: &'static str,
    sql: &'static str,
}

impl MigrationName for SqlFile {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SqlFile {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(self.sql).await.map(|_| ())
    }
}

macro_rules! sql_migrations {
    ($($name:literal => $file:literal),* $(,)?) => {
        vec![$(Box::new(SqlFile { name: $name, sql: include_str!(concat!("migrations/", $file)) }) as Box<dyn MigrationTrait>),*]
    };
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        sql_migrations![
            "m0001_initial" => "0001_initial.sql",
            "m0002_deliveries" => "0002_deliveries.sql",
            "m0003_keys_operators" => "0003_keys_operators.sql",
            "m0004_outbox_receipt_ref" => "0004_outbox_receipt_ref.sql",
            "m0005_lz4_documents" => "0005_lz4_documents.sql",
            "m0006_parking" => "0006_parking.sql",
            "m0007_certificates" => "0007_certificates.sql",
            "m0008_tax_documents" => "0008_tax_documents.sql",
            "m0009_correction_requests" => "0009_correction_requests.sql",
            "m0010_roles" => "0010_roles.sql",
            "m0011_operator_scope" => "0011_operator_scope.sql",
            "m0012_replays_through_the_service" => "0012_replays_through_the_service.sql",
            "m0013_decree_254" => "0013_decree_254.sql",
            "m0014_retries_through_a_function" => "0014_retries_through_a_function.sql",
            "m0015_audit_log_scope" => "0015_audit_log_scope.sql",
            "m0016_deliveries_requeue_only" => "0016_deliveries_requeue_only.sql",
            "m0017_corrections_wait_apart" => "0017_corrections_wait_apart.sql",
            "m0018_dead_letters_on_record" => "0018_dead_letters_on_record.sql",
            "m0019_delivery_leases" => "0019_delivery_leases.sql",
            "m0020_retention" => "0020_retention.sql",
            "m0021_revocation_final" => "0021_revocation_final.sql",
            "m0022_certificate_revocations" => "0022_certificate_revocations.sql",
        ]
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
