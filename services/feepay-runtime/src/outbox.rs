//! Transactional outbox: events are inserted in the same transaction as the state change
//! that causes them, then a relay publishes them at least once, in insertion order, and
//! deletes what the broker acknowledged. Event ids are stable, so consumers deduplicate.

use crate::envelope::{encode_body, Attributes, BodyFormat};
use crate::metrics::OutboxMetrics;
use crate::sql::{placeholders, rows_per_statement, stmt};
use chrono::{DateTime, Utc};
use feepay_proto::{EventType, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};
use serde::Serialize;
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

/// Builds the `ReceiptIssued` event of a stored receipt: its protobuf as issued and its
/// signed document.
fn receipt_issued_body(receipt_pb: &[u8], document: String, content_type: &str) -> Result<Vec<u8>, DbErr> {
    let mut receipt = feepay_proto::v1::Receipt::decode(receipt_pb)
        .map_err(|e| DbErr::Custom(format!("stored receipt does not decode: {e}")))?;
    // The event tells of the issue; a later cancellation has its own event.
    receipt.status = feepay_proto::v1::ReceiptStatus::Issued as i32;
    let event = feepay_proto::v1::ReceiptIssued { receipt: Some(receipt), signed_document: document };
    let format = if content_type == BodyFormat::Json.content_type() { BodyFormat::Json } else { BodyFormat::Protobuf };
    Ok(encode_body(&event, format))
}

/// Inserts events for `producer` (the service name) in the caller's transaction. Takes the
/// events by value so their payloads are moved into the statement, not copied.
pub async fn insert<C: ConnectionTrait>(conn: &C, producer: &str, events: Vec<OutboxEvent>) -> Result<(), DbErr> {
    const COLS: usize = 9;
    let per_statement = rows_per_statement(COLS);
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<OutboxEvent> = events.by_ref().take(per_statement).collect();
        let n = chunk.len();
        let mut values: Vec<Value> = Vec::with_capacity(n * COLS);
        for e in chunk {
            values.push(producer.into());
            values.push(e.topic.into());
            values.push(e.key.into());
            values.push(e.ce_id.into());
            values.push(e.ce_type.into());
            values.push(e.ce_source.into());
            values.push(e.content_type.into());
            values.push(e.payload.into());
            values.push(e.receipt_ref.into());
        }
        let sql = format!(
            "INSERT INTO outbox (producer, topic, key, ce_id, ce_type, ce_source, content_type, payload, receipt_ref) VALUES {}",
            placeholders(n, COLS)
        );
        conn.execute(stmt(sql, values)).await?;
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
        let txn = self.db.begin().await?;
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
        let rows = txn
            .query_all(stmt(
                "SELECT o.id, o.topic, o.key, o.ce_id, o.ce_type, o.ce_source, o.content_type, o.payload, o.created_at, \
                        o.receipt_ref, r.receipt_pb, r.document \
                 FROM outbox o LEFT JOIN receipts r ON r.receipt_id = o.receipt_ref \
                 WHERE o.producer = $1 ORDER BY o.id LIMIT $2",
                vec![self.name.clone().into(), (self.batch as i64).into()],
            ))
            .await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(RelayPass::Published(0));
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut sends = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("", "id")?;
            let topic: String = r.try_get("", "topic")?;
            let key: String = r.try_get("", "key")?;
            let created_at: DateTime<Utc> = r.try_get("", "created_at")?;
            let content_type: String = r.try_get("", "content_type")?;
            let payload: Vec<u8> = match r.try_get::<Option<uuid::Uuid>>("", "receipt_ref")? {
                None => r.try_get("", "payload")?,
                Some(receipt) => {
                    let pb: Option<Vec<u8>> = r.try_get("", "receipt_pb")?;
                    let document: Option<String> = r.try_get("", "document")?;
                    match (pb, document) {
                        (Some(pb), Some(doc)) => receipt_issued_body(&pb, doc, &content_type)?,
                        _ => {
                            return Err(DbErr::Custom(format!(
                                "outbox row {id} names receipt {receipt}, which does not exist"
                            ))
                            .into())
                        }
                    }
                }
            };
            let attrs = Attributes {
                id: r.try_get("", "ce_id")?,
                source: r.try_get("", "ce_source")?,
                ty: r.try_get("", "ce_type")?,
                time: Some(created_at),
                content_type,
            };
            ids.push(id);
            let producer = self.producer.clone();
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
        txn.execute(stmt("DELETE FROM outbox WHERE id = ANY($1)", vec![ids.into()])).await?;
        txn.commit().await?;
        self.metrics.published.inc_by(results.len() as u64);
        Ok(RelayPass::Published(results.len()))
    }

    /// Updates the backlog gauges.
    pub async fn observe_backlog(&self) -> Result<(), DbErr> {
        let row = self
            .db
            .query_one(stmt(
                "SELECT count(*)::BIGINT AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::FLOAT8 AS age \
                 FROM outbox WHERE producer = $1",
                vec![self.name.clone().into()],
            ))
            .await?;
        if let Some(r) = row {
            self.metrics.backlog.set(r.try_get::<i64>("", "n")?);
            self.metrics.oldest_age.set(r.try_get::<f64>("", "age")?);
        }
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
