//! Transactional outbox: events are inserted in the same transaction as the state change
//! that causes them, then a relay publishes them at least once, in insertion order, and
//! deletes what the broker acknowledged. Event ids are stable, so consumers deduplicate.

use crate::envelope::{encode_body, Attributes, BodyFormat};
use crate::metrics::OutboxMetrics;
use crate::sql::{rows_per_statement, stmt};
use chrono::{DateTime, Utc};
use feepay_proto::{EventType, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseConnection, DatabaseTransaction, QueryOrder, QuerySelect, Set, TransactionTrait};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub topic: String,
    pub key: String,
    pub ce_id: String,
    pub ce_type: String,
    pub ce_source: String,
    pub content_type: String,
    pub payload: Vec<u8>,
    /// For a `ReceiptIssued` event: the receipt whose stored protobuf and document make the
    /// event (the payload is then empty and built by the relay).
    pub receipt_ref: Option<uuid::Uuid>,
}

impl OutboxEvent {
    /// Encodes a message for the outbox.
    pub fn new<T: Message + Serialize + EventType>(
        topic: &str,
        key: &str,
        id: &str,
        source: &str,
        msg: &T,
        format: BodyFormat,
    ) -> Self {
        OutboxEvent {
            topic: topic.to_string(),
            key: key.to_string(),
            ce_id: id.to_string(),
            ce_type: T::TYPE.to_string(),
            ce_source: source.to_string(),
            content_type: format.content_type().to_string(),
            payload: encode_body(msg, format),
            receipt_ref: None,
        }
    }

    /// A `ReceiptIssued` event for a receipt inserted in the same transaction, by reference.
    pub fn receipt_issued(
        topic: &str,
        key: &str,
        id: &str,
        source: &str,
        receipt_id: uuid::Uuid,
        format: BodyFormat,
    ) -> Self {
        OutboxEvent {
            topic: topic.to_string(),
            key: key.to_string(),
            ce_id: id.to_string(),
            ce_type: <feepay_proto::v1::ReceiptIssued as EventType>::TYPE.to_string(),
            ce_source: source.to_string(),
            content_type: format.content_type().to_string(),
            payload: Vec::new(),
            receipt_ref: Some(receipt_id),
        }
    }
}

/// The `outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub producer: String,
        pub topic: String,
        pub key: String,
        pub ce_id: String,
        pub ce_type: String,
        pub ce_source: String,
        pub content_type: String,
        pub payload: Vec<u8>,
        pub created_at: DateTimeUtc,
        /// The row whose stored body makes the event (see [`super::ReferencedBodies`]).
        pub receipt_ref: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Builds the bodies of events stored by reference: a service whose events repeat a row it
/// keeps anyway (the issuer's `ReceiptIssued` is the receipt row) stores only the row's id
/// in the outbox, and the relay asks the service for the body when it publishes. The outbox
/// itself knows no other table.
#[async_trait::async_trait]
pub trait ReferencedBodies: Send + Sync {
    /// The body of each referenced event, read in the relay's transaction. A reference
    /// missing from the answer is an error: the relay stops and retries.
    async fn bodies(
        &self,
        txn: &DatabaseTransaction,
        refs: &[(uuid::Uuid, BodyFormat)],
    ) -> Result<HashMap<uuid::Uuid, Vec<u8>>, DbErr>;
}

/// Inserts events for `producer` (the service name) in the caller's transaction. Takes the
/// events by value so their payloads are moved into the statement, not copied.
pub async fn insert<C: ConnectionTrait>(conn: &C, producer: &str, events: Vec<OutboxEvent>) -> Result<(), DbErr> {
    const COLS: usize = 9;
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let rows: Vec<entity::ActiveModel> = events
            .by_ref()
            .take(rows_per_statement(COLS))
            .map(|e| entity::ActiveModel {
                producer: Set(producer.to_string()),
                topic: Set(e.topic),
                key: Set(e.key),
                ce_id: Set(e.ce_id),
                ce_type: Set(e.ce_type),
                ce_source: Set(e.ce_source),
                content_type: Set(e.content_type),
                payload: Set(e.payload),
                receipt_ref: Set(e.receipt_ref),
                ..Default::default()
            })
            .collect();
        entity::Entity::insert_many(rows).exec_without_returning(conn).await?;
    }
    Ok(())
}

/// Publishes one service's outbox.
pub struct Relay {
    pub db: DatabaseConnection,
    pub producer: FutureProducer,
    pub name: String,
    pub batch: u64,
    pub metrics: OutboxMetrics,
    /// Builds the bodies of events stored by reference, for a service that stores any.
    pub bodies: Option<std::sync::Arc<dyn ReferencedBodies>>,
    /// Measures how long events waited.
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
}

/// Outcome of one relay pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPass {
    /// Another instance holds the relay lock.
    Busy,
    /// Published and deleted this many events.
    Published(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl Relay {
    /// One pass: under a transaction-scoped advisory lock (one relay per producer at a
    /// time, so order is kept), read the oldest events, publish them, delete them.
    pub async fn run_once(&self) -> Result<RelayPass, RelayError> {
        use entity::Column as C;
        let txn = self.db.begin().await?;
        // An advisory lock has no sea-orm form: it locks a name, not a row.
        let locked = txn
            .query_one(stmt(
                "SELECT pg_try_advisory_xact_lock(hashtext('outbox:' || $1)) AS ok",
                vec![self.name.clone().into()],
            ))
            .await?
            .map(|r| r.try_get::<bool>("", "ok"))
            .transpose()?
            .unwrap_or(false);
        if !locked {
            txn.rollback().await?;
            return Ok(RelayPass::Busy);
        }
        let rows = entity::Entity::find()
            .filter(C::Producer.eq(&self.name))
            .order_by_asc(C::Id)
            .limit(self.batch)
            .all(&txn)
            .await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(RelayPass::Published(0));
        }
        let refs: Vec<(uuid::Uuid, BodyFormat)> = rows
            .iter()
            .filter_map(|r| r.receipt_ref.map(|id| (id, BodyFormat::of_content_type(&r.content_type))))
            .collect();
        let mut referenced = match (&self.bodies, refs.is_empty()) {
            (_, true) => HashMap::new(),
            (Some(bodies), false) => bodies.bodies(&txn, &refs).await?,
            (None, false) => {
                return Err(DbErr::Custom(format!(
                    "{} stores events by reference but has no reader for them",
                    self.name
                ))
                .into())
            }
        };
        let mut ids = Vec::with_capacity(rows.len());
        let mut sends = Vec::with_capacity(rows.len());
        for r in rows {
            let payload = match r.receipt_ref {
                None => r.payload,
                Some(reference) => referenced.remove(&reference).ok_or_else(|| {
                    DbErr::Custom(format!("outbox row {} names {reference}, which {} does not have", r.id, self.name))
                })?,
            };
            let created_at = r.created_at;
            let attrs = Attributes {
                id: r.ce_id,
                source: r.ce_source,
                ty: r.ce_type,
                time: Some(created_at),
                content_type: r.content_type,
            };
            ids.push(r.id);
            let (producer, topic, key) = (self.producer.clone(), r.topic, r.key);
            sends.push(async move {
                let headers = crate::envelope::headers_from(&attrs);
                let record = FutureRecord::to(&topic).key(&key).payload(&payload).headers(headers);
                producer.send(record, Duration::from_secs(30)).await.map(|_| created_at).map_err(|(e, _)| e)
            });
        }
        let results = futures::future::join_all(sends).await;
        let now = self.clock.now();
        for r in &results {
            match r {
                Ok(created_at) => {
                    let age = (now - *created_at).num_milliseconds().max(0) as f64 / 1000.0;
                    self.metrics.publish_delay.observe(age);
                }
                Err(e) => {
                    txn.rollback().await?;
                    return Err(RelayError::Kafka(e.clone()));
                }
            }
        }
        entity::Entity::delete_many().filter(crate::sql::any_of(C::Id, ids)).exec(&txn).await?;
        txn.commit().await?;
        self.metrics.published.inc_by(results.len() as u64);
        Ok(RelayPass::Published(results.len()))
    }

    /// Updates the backlog gauges.
    pub async fn observe_backlog(&self) -> Result<(), DbErr> {
        use entity::Column as C;
        let (n, oldest): (i64, Option<DateTime<Utc>>) = entity::Entity::find()
            .select_only()
            .column_as(C::Id.count(), "n")
            .column_as(C::CreatedAt.min(), "oldest")
            .filter(C::Producer.eq(&self.name))
            .into_tuple()
            .one(&self.db)
            .await?
            .unwrap_or((0, None));
        let age = oldest.map(|t| (self.clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0);
        self.metrics.backlog.set(n);
        self.metrics.oldest_age.set(age);
        Ok(())
    }

    /// Runs until cancelled, then drains what is left (bounded by the caller's deadline).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut idle = Duration::from_millis(5);
        let mut last_backlog = tokio::time::Instant::now() - Duration::from_secs(10);
        loop {
            if last_backlog.elapsed() >= Duration::from_secs(2) {
                if let Err(e) = self.observe_backlog().await {
                    tracing::warn!(error = %e, "outbox backlog query failed");
                }
                last_backlog = tokio::time::Instant::now();
            }
            match self.run_once().await {
                Ok(RelayPass::Published(n)) if n > 0 => {
                    idle = Duration::from_millis(5);
                    continue;
                }
                Ok(_) => {
                    if shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, relay = %self.name, "outbox relay pass failed, retrying");
                    idle = Duration::from_millis(500);
                    if shutdown.is_cancelled() {
                        break;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.cancelled() => {}
            }
            idle = (idle * 2).min(Duration::from_millis(50));
        }
        let _ = self.observe_backlog().await;
        tracing::info!(relay = %self.name, "outbox relay stopped");
    }
}
