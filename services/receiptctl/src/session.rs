//! A command's session: the database connection, the schema check, the caller and the
//! confirmation prompt.

use crate::access::{self, Actor};
use anyhow::Context;
use feepay_runtime::settings::DatabaseSettings;
use sea_orm::DatabaseConnection;

pub async fn db(url: &str) -> anyhow::Result<DatabaseConnection> {
    let s = DatabaseSettings { url: feepay_runtime::settings::Secret::new(url), ..DatabaseSettings::from_env()? };
    feepay_runtime::db::connect(&s).await.context("connecting to PostgreSQL (FEEPAY_DATABASE_URL)")
}

/// How to reach the database and who claims to be calling.
#[derive(Debug, Clone)]
pub struct Conn {
    pub database_url: String,
    pub token: Option<String>,
    pub operator: String,
}

/// Connects, checks that the schema is current and resolves the caller.
pub async fn session(conn: &Conn) -> anyhow::Result<(DatabaseConnection, Actor)> {
    let db = db(&conn.database_url).await?;
    // Only `receiptctl migrate`, run as the schema's owner, changes the schema.
    let behind = feepay_runtime::db::schema_behind(&db).await?;
    if !behind.is_empty() {
        anyhow::bail!(
            "the database schema is behind ({} migration(s) not applied, from {}): run `receiptctl migrate` with the migrator's database URL",
            behind.len(),
            behind[0]
        );
    }
    let actor = access::authenticate(&db, conn.token.as_deref(), &conn.operator).await?;
    Ok((db, actor))
}

pub fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} type yes to confirm: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(true)
    } else {
        eprintln!("nothing changed");
        Ok(false)
    }
}

/// The time a command acts at: the operator's own clock.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use feepay_runtime::clock::Clock as _;
    feepay_runtime::clock::SystemClock.now()
}
