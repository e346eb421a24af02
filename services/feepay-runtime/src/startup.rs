//! Start-up that waits: a service binds its operations port first (reporting not ready),
//! then waits, with backoff, for PostgreSQL with a current schema and for the broker. A
//! dependency that is only late never makes a service exit.

use crate::http::Readiness;
use crate::retry::Backoff;
use crate::settings::{DatabaseSettings, KafkaSettings};
use sea_orm::DatabaseConnection;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

/// Connects to PostgreSQL and waits until the schema has every migration this build knows
/// (applied by `receiptctl migrate` or the migrate Job, never by a service). `None` when
/// shutdown came first.
pub async fn database(
    settings: &DatabaseSettings,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Option<DatabaseConnection> {
    let mut backoff = Backoff::dependency();
    let mut attempt = 0u32;
    let db = loop {
        attempt += 1;
        match crate::db::connect_existing(settings).await {
            Ok(db) => break db,
            Err(e) => tracing::warn!(attempt, error = %e, "PostgreSQL not reachable yet; waiting"),
        }
        if !backoff.wait(shutdown).await {
            return None;
        }
    };
    readiness.database.store(true, Ordering::Relaxed);
    let mut backoff = Backoff::dependency();
    loop {
        match crate::db::schema_behind(&db).await {
            Ok(pending) if pending.is_empty() => break,
            Ok(pending) => tracing::warn!(
                pending = ?pending,
                "the database schema is behind this version; waiting for `receiptctl migrate` (or the migrate Job)"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read the schema version yet; waiting"),
        }
        if !backoff.wait(shutdown).await {
            return None;
        }
    }
    readiness.schema.store(true, Ordering::Relaxed);
    Some(db)
}

/// Waits until the broker answers and every topic of the service exists (an administrator
/// creates them: `receiptctl broker setup`). False when shutdown came first.
pub async fn broker(
    kafka: &KafkaSettings,
    topics: &[String],
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::dependency();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match crate::kafka::missing_topics(kafka, topics).await {
            Ok(missing) if missing.is_empty() => {
                readiness.broker.store(true, Ordering::Relaxed);
                return true;
            }
            Ok(missing) => tracing::warn!(
                attempt,
                topics = %missing.join(", "),
                user = kafka.sasl_username.as_deref().unwrap_or("(none)"),
                "topics missing, or this broker user may not describe them; create them and grant the ACLs (receiptctl broker setup); waiting"
            ),
            Err(e) => {
                tracing::warn!(attempt, error = %e, brokers = %kafka.brokers, "broker not reachable yet; waiting")
            }
        }
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
}
