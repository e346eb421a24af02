//! The consumer driver that every consuming service runs (issuer, assessor, notifier):
//!
//! receive a batch → decode → dead-letter what cannot be decoded → apply the effects under
//! the failure policy → dead letters acknowledged → commit the offsets → record metrics.
//!
//! Failure policy:
//! - **Transient** (database or broker unreachable, serialization failure, lock timeout,
//!   missing reference data): the same items are applied again after a bounded, jittered
//!   backoff until they commit or the process stops. Nothing is committed meanwhile, and a
//!   batch held longer than `FEEPAY_CONSUMER_STALL_SECS` marks the consumer stalled.
//! - **Permanent for some events**, named by the handler (no usable key, exhausted series,
//!   ...): those events are parked durably with their reason (`crate::parking`); the rest
//!   of the batch commits.
//! - **Poison** (an error the handler cannot pin on an event): the batch is bisected until
//!   the failing event is alone, which is then parked with the error as its reason.
//!
//! Offsets move only after the effects, the parked events and the dead letters are
//! durable. Every handler is idempotent on its events' identity, so a redelivered or
//! re-applied part of a batch does nothing twice.

mod retries;

use crate::dead_letter::{self, DeadLetterSettings};
use crate::envelope::{header, DecodeError};
use crate::kafka::client_config;
use crate::metrics::ConsumerMetrics;
use crate::parking::{self, ParkReason};
use crate::retry::Backoff;
use crate::settings::{BatchSettings, GroupProtocol, KafkaSettings};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use sea_orm::DatabaseConnection;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What is known of a consumer between its batches: its assignment (kept current by the
/// rebalance callbacks), its lag, and whether it is making progress. Readiness reads it.
#[derive(Debug)]
pub struct ConsumerState {
    assignment: RwLock<BTreeSet<(String, i32)>>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last committed batch (or of the start).
    last_progress_ms: AtomicI64,
    /// Milliseconds since `epoch` at which the batch in hand was received; -1 when idle.
    busy_since_ms: AtomicI64,
    /// Messages behind the end of the assigned partitions, from the last check.
    lag: AtomicI64,
    stall_after: Duration,
}

impl ConsumerState {
    pub fn new(stall_after: Duration) -> Self {
        ConsumerState {
            assignment: RwLock::new(BTreeSet::new()),
            epoch: Instant::now(),
            last_progress_ms: AtomicI64::new(0),
            busy_since_ms: AtomicI64::new(-1),
            lag: AtomicI64::new(0),
            stall_after,
        }
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    /// The assigned partitions as `topic/partition`.
    pub fn assignment(&self) -> Vec<String> {
        self.assignment.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(t, p)| format!("{t}/{p}")).collect()
    }

    pub fn assigned(&self) -> bool {
        !self.assignment.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Partitions added by a rebalance. Under an eager protocol every rebalance revokes
    /// everything and assigns the new set; under a cooperative one (and KIP-848's consumer
    /// protocol) each rebalance adds or removes only some, so the assignment is kept as a
    /// set that rebalances change rather than replace.
    fn assign(&self, tpl: &TopicPartitionList) {
        let mut set = self.assignment.write().unwrap_or_else(|e| e.into_inner());
        set.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
    }

    /// No partitions: the consumer that held them is gone.
    fn clear(&self) {
        self.assignment.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Partitions taken away by a rebalance.
    fn revoke(&self, tpl: &TopicPartitionList) {
        let mut set = self.assignment.write().unwrap_or_else(|e| e.into_inner());
        for e in tpl.elements() {
            set.remove(&(e.topic().to_string(), e.partition()));
        }
    }

    fn busy(&self) {
        self.busy_since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn progressed(&self) {
        self.last_progress_ms.store(self.now_ms(), Ordering::Relaxed);
        self.busy_since_ms.store(-1, Ordering::Relaxed);
    }

    pub fn set_lag(&self, lag: i64) {
        self.lag.store(lag, Ordering::Relaxed);
    }

    pub fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// True when a batch has been held (retried) longer than the stall limit, or when
    /// messages wait and nothing was committed for that long.
    pub fn stalled(&self) -> bool {
        let now = self.now_ms();
        let limit = self.stall_after.as_millis() as i64;
        let busy = self.busy_since_ms.load(Ordering::Relaxed);
        let held_too_long = busy >= 0 && now - busy > limit;
        let idle_behind = self.lag() > 0 && now - self.last_progress_ms.load(Ordering::Relaxed) > limit;
        held_too_long || idle_behind
    }
}

/// The rebalance callbacks keep [`ConsumerState::assignment`] current, so readiness says
/// the moment partitions are assigned or revoked instead of at the next poll.
pub struct DriverContext {
    state: Arc<ConsumerState>,
}

impl ClientContext for DriverContext {}

impl ConsumerContext for DriverContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.state.assign(tpl);
                tracing::info!(added = tpl.count(), holding = self.state.assignment().len(), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                self.state.revoke(tpl);
                tracing::info!(removed = tpl.count(), holding = self.state.assignment().len(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// The consumer type of the services.
pub type GroupConsumer = StreamConsumer<DriverContext>;

/// The service's consumer, made again when librdkafka reports a fatal error (a client
/// instance is unusable after one: for example a static member fenced by the group
/// coordinator after a failover). The driver and the monitor always use the current one.
pub struct ConsumerHandle {
    current: std::sync::RwLock<Arc<GroupConsumer>>,
    make: Box<dyn Fn() -> Result<GroupConsumer, KafkaError> + Send + Sync>,
    state: Arc<ConsumerState>,
}

impl ConsumerHandle {
    /// A consumer from `make`, which is called again to replace it after a fatal error.
    pub fn new(
        state: Arc<ConsumerState>,
        make: impl Fn() -> Result<GroupConsumer, KafkaError> + Send + Sync + 'static,
    ) -> Result<Self, KafkaError> {
        let first = make()?;
        Ok(ConsumerHandle { current: std::sync::RwLock::new(Arc::new(first)), make: Box::new(make), state })
    }

    pub fn get(&self) -> Arc<GroupConsumer> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the consumer with a new one, which joins the group afresh.
    pub fn renew(&self) -> Result<(), KafkaError> {
        let new = Arc::new((self.make)()?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        self.state.clear();
        Ok(())
    }
}

/// Whether librdkafka says this client instance can no longer be used.
pub fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumptionFatal(_))
}

/// A consumer in the service's group that never commits on its own: offsets are committed
/// by the driver only after a batch's effects are durable.
pub fn group_consumer(
    s: &KafkaSettings,
    topics: &[&str],
    state: Arc<ConsumerState>,
) -> Result<ConsumerHandle, KafkaError> {
    let (s, topics, st) = (s.clone(), topics.iter().map(|t| t.to_string()).collect::<Vec<_>>(), state.clone());
    ConsumerHandle::new(state, move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        make_group_consumer(&s, &topics, st.clone())
    })
}

fn make_group_consumer(
    s: &KafkaSettings,
    topics: &[&str],
    state: Arc<ConsumerState>,
) -> Result<GroupConsumer, KafkaError> {
    let mut config = client_config(s);
    config
        .set("group.id", &s.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", s.fetch_wait_ms.to_string())
        // A record batch larger than these is still returned whole (Kafka's KIP-74), so a
        // record up to the broker's limit is always read; see `FEEPAY_KAFKA_FETCH_MAX_BYTES`.
        .set("max.partition.fetch.bytes", s.fetch_max_bytes.to_string())
        .set("fetch.max.bytes", s.fetch_max_bytes.to_string())
        .set("receive.message.max.bytes", (s.fetch_max_bytes + 1_048_576).to_string())
        // Bound the prefetch buffer (librdkafka's default is 64 MiB per consumer).
        .set("queued.max.messages.kbytes", "8192");
    match s.group_protocol {
        GroupProtocol::Classic => {
            config
                .set("group.protocol", "classic")
                .set("session.timeout.ms", s.session_timeout_ms.to_string())
                .set("heartbeat.interval.ms", (s.session_timeout_ms / 3).max(100).to_string())
                .set("partition.assignment.strategy", "cooperative-sticky");
        }
        // Timeouts and assignment are the broker's under KIP-848.
        GroupProtocol::Consumer => {
            config.set("group.protocol", "consumer");
        }
    }
    if let Some(id) = &s.group_instance_id {
        config.set("group.instance.id", id);
    }
    let c: GroupConsumer = config.create_with_context(DriverContext { state })?;
    c.subscribe(topics)?;
    Ok(c)
}

/// A record as the handlers decode it: where it came from, its key, CloudEvents type and
/// content type, and its body. Built from a consumed message or from a parked event.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: &'a [u8],
    pub ce_type: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub payload: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    pub fn of(m: &'a BorrowedMessage<'a>) -> Self {
        Record {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().unwrap_or_default(),
            ce_type: header(m.headers(), "ce_type"),
            content_type: header(m.headers(), "content-type"),
            payload: m.payload(),
        }
    }
}

/// A record's headers as owned pairs (for dead letters and parked events).
pub fn owned_headers(m: &BorrowedMessage<'_>) -> Vec<(String, Vec<u8>)> {
    m.headers()
        .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
        .unwrap_or_default()
}

/// Why applying a batch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Not the events' fault (a dependency is down, a lock timed out): retry them all.
    #[error("{0}")]
    Transient(String),
    /// Caused by some event of the batch, which one is not known: bisect to find it.
    #[error("{0}")]
    Poison(String),
}

impl Failure {
    /// Classifies a database error: data errors (SQLSTATE classes 22 and 23) are caused by
    /// an event; everything else (connection, serialization, lock timeout, permission,
    /// resources) is not, and is retried.
    pub fn from_db(e: &sea_orm::DbErr) -> Failure {
        match crate::db::sqlstate(e) {
            Some(code) if code.starts_with("22") || code.starts_with("23") => Failure::Poison(e.to_string()),
            _ => Failure::Transient(e.to_string()),
        }
    }
}

/// What a committed batch did.
#[derive(Debug, Default)]
pub struct Applied {
    /// `(topic, outcome, count)` for `<service>_events_processed_total`, counted after the
    /// commit.
    pub outcomes: Vec<(String, &'static str, u64)>,
    /// Items (index into the slice given to `apply`) that failed on their own and were left
    /// out of the committed effects: the driver parks them.
    pub park: Vec<(usize, ParkReason)>,
}

impl Applied {
    pub fn count(&mut self, topic: &str, outcome: &'static str, n: usize) {
        if n > 0 {
            self.outcomes.push((topic.to_string(), outcome, n as u64));
        }
    }
}

/// The service-specific part of consuming.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    type Item: Send + Sync;

    /// Decodes and validates one record, or says why it is a dead letter.
    fn decode(&self, record: &Record<'_>) -> Result<Self::Item, DecodeError>;

    /// What the item is about (`payment:<id>`, `refund:<id>`, ...): parked events are
    /// keyed by it.
    fn subject(&self, item: &Self::Item) -> String;

    /// The agency an item concerns, if any (shown with parked events).
    fn agency(&self, item: &Self::Item) -> Option<String>;

    /// What a record is ([`dead_letter::Identity`]), read without validating the rest: kept
    /// with its dead letter, and compared with an operator's edited body before a replay
    /// is applied. `None` when not even that can be read (an edited replay is then refused).
    fn identity(&self, record: &Record<'_>) -> Option<dead_letter::Identity>;

    /// Applies the items' effects durably; idempotent on the items' identities.
    async fn apply(&self, items: &[Self::Item]) -> Result<Applied, Failure>;
}

/// Runs a service's consumer.
pub struct Driver<H: Handler> {
    /// Metric prefix and producer name, e.g. `feepay_issuer`.
    pub service: &'static str,
    pub consumer: Arc<ConsumerHandle>,
    pub state: Arc<ConsumerState>,
    pub producer: FutureProducer,
    pub db: DatabaseConnection,
    pub handler: Arc<H>,
    pub batch: BatchSettings,
    pub dead_letters: DeadLetterSettings,
    pub metrics: ConsumerMetrics,
    /// Times parked rows and dead letters.
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// The process is stopping: leave without committing.
struct Stopped;

impl<H: Handler> Driver<H> {
    /// Consumes until shutdown, and applies the parked events operators asked to retry.
    /// The batch in hand is finished (or, while it is being retried, abandoned uncommitted)
    /// before returning.
    pub async fn run(&self, shutdown: &CancellationToken) {
        tokio::join!(self.consume(shutdown), self.retry_loop(shutdown));
    }

    /// Every two seconds, the parked events of this service an operator asked to retry.
    async fn retry_loop(&self, shutdown: &CancellationToken) {
        loop {
            match self.retry_requested().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "looking for parked events to retry failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn consume(&self, shutdown: &CancellationToken) {
        let mut receive_backoff = Backoff::batch();
        while !shutdown.is_cancelled() {
            let consumer = self.consumer.get();
            let batch = match self.receive(&consumer, shutdown).await {
                Ok(b) if b.is_empty() => continue,
                Ok(b) => b,
                Err(e) if is_fatal(&e) => {
                    tracing::error!(error = %e, "the Kafka consumer failed for good; joining the group again with a new one");
                    drop(consumer);
                    if let Err(e) = self.consumer.renew() {
                        tracing::error!(error = %e, "making a new Kafka consumer failed; retrying");
                    }
                    if !receive_backoff.wait(shutdown).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed");
                    if !receive_backoff.wait(shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            receive_backoff = Backoff::batch();
            self.state.busy();
            let started = Instant::now();
            if self.process(&consumer, &batch, shutdown).await.is_err() {
                break;
            }
            self.state.progressed();
            self.metrics.batch_size.observe(batch.len() as f64);
            self.metrics.batch_duration.observe(started.elapsed().as_secs_f64());
        }
    }

    /// Receives up to the batch size: waits for the first record (or shutdown), then takes
    /// what arrives within the linger.
    async fn receive<'c>(
        &self,
        consumer: &'c GroupConsumer,
        shutdown: &CancellationToken,
    ) -> Result<Vec<BorrowedMessage<'c>>, KafkaError> {
        let mut batch = Vec::new();
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(batch),
            m = consumer.recv() => m?,
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + self.batch.linger;
        while batch.len() < self.batch.max_events {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka error while filling a batch");
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    async fn process(
        &self,
        consumer: &GroupConsumer,
        batch: &[BorrowedMessage<'_>],
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let mut items = Vec::with_capacity(batch.len());
        let mut origin = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            self.metrics.consumed.with_label_values(&[m.topic()]).inc();
            match self.handler.decode(&Record::of(m)) {
                Ok(item) => {
                    items.push(item);
                    origin.push(i);
                }
                Err(e) => {
                    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), reason = %e, "event dead-lettered");
                    dead.push((i, e));
                }
            }
        }
        // 1. Effects, durably, with what fails on its own parked.
        if !items.is_empty() {
            self.apply_isolating(&items, &origin, batch, shutdown).await?;
        }
        // 2. Dead letters, acknowledged by the broker.
        for (i, e) in &dead {
            let dl = dead_letter::of(&batch[*i], e, self.service, self.clock.now());
            let identity = self.handler.identity(&Record::of(&batch[*i]));
            if !dead_letter::send_durably(
                &self.producer,
                &self.db,
                &self.dead_letters,
                dl.clone(),
                identity.as_ref(),
                shutdown,
            )
            .await
            {
                return Err(Stopped);
            }
            self.metrics.count_dead_letter(&dl);
        }
        // 3. Only now the offsets.
        if let Err(e) = commit(consumer, batch) {
            // Not fatal: the events are redelivered and found again without effect.
            tracing::warn!(error = %e, "offset commit failed; the batch will be redelivered and deduplicated");
        }
        Ok(())
    }

    /// Applies `items`, retrying transient failures and bisecting poison until every item
    /// is either committed or parked.
    async fn apply_isolating(
        &self,
        items: &[H::Item],
        origin: &[usize],
        batch: &[BorrowedMessage<'_>],
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        // A stack of ranges still to apply, the whole batch first.
        let mut todo: Vec<Range<usize>> = Vec::new();
        todo.push(0..items.len());
        while let Some(range) = todo.pop() {
            match self.apply_retrying(&items[range.clone()], shutdown).await? {
                Ok(applied) => {
                    for (i, reason) in applied.park {
                        let at = range.start + i;
                        self.park(&items[at], &batch[origin[at]], reason, shutdown).await?;
                    }
                    for (topic, outcome, n) in applied.outcomes {
                        self.metrics.processed.with_label_values(&[&topic, outcome]).inc_by(n);
                    }
                }
                Err(poison) if range.len() == 1 => {
                    tracing::error!(error = %poison, "an event fails on its own; parking it");
                    let reason = ParkReason::new("unexpected_error", poison);
                    self.park(&items[range.start], &batch[origin[range.start]], reason, shutdown).await?;
                }
                Err(poison) => {
                    tracing::warn!(error = %poison, events = range.len(), "part of a batch fails; bisecting to find the event");
                    let mid = range.start + range.len() / 2;
                    // Earlier events first, to keep the batch's order.
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
            }
        }
        Ok(())
    }

    /// Applies until success or poison; transient failures are retried with backoff.
    async fn apply_retrying(
        &self,
        items: &[H::Item],
        shutdown: &CancellationToken,
    ) -> Result<Result<Applied, String>, Stopped> {
        let mut backoff = Backoff::batch();
        loop {
            match self.handler.apply(items).await {
                Ok(applied) => return Ok(Ok(applied)),
                Err(Failure::Poison(e)) => {
                    self.metrics.batch_failures.inc();
                    return Ok(Err(e));
                }
                Err(Failure::Transient(e)) => {
                    self.metrics.batch_failures.inc();
                    tracing::error!(error = %e, events = items.len(), "batch failed, retrying");
                    if !backoff.wait(shutdown).await {
                        return Err(Stopped);
                    }
                }
            }
        }
    }

    async fn park(
        &self,
        item: &H::Item,
        m: &BorrowedMessage<'_>,
        reason: ParkReason,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let event = parking::NewParked {
            service: self.service.to_string(),
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().unwrap_or_default().to_vec(),
            headers: owned_headers(m),
            payload: m.payload().unwrap_or_default().to_vec(),
            subject: self.handler.subject(item),
            agency: self.handler.agency(item),
        };
        let mut backoff = Backoff::batch();
        loop {
            match parking::park(&self.db, &event, &reason, self.clock.now()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "parking an event failed, retrying");
                    if !backoff.wait(shutdown).await {
                        return Err(Stopped);
                    }
                }
            }
        }
        tracing::warn!(subject = %event.subject, topic = %event.topic, reason = reason.code, detail = %reason.detail, "event parked");
        self.metrics.parked.with_label_values(&[&event.topic, reason.code]).inc();
        Ok(())
    }
}

/// Commits, per partition, the offset after the last record of the batch. Asynchronous: it
/// is only issued after the batch's effects are durable, and a lost commit only means a
/// redelivery, so waiting for the broker's answer would add a round trip per batch.
pub fn commit<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    batch: &[BorrowedMessage<'_>],
) -> Result<(), KafkaError> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = next.entry((m.topic(), m.partition())).or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    if next.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    consumer.commit(&tpl, CommitMode::Async)
}

/// Every few seconds until shutdown: broker reachability, lag per assigned partition (high
/// watermark minus the committed offset), the stall flag, and this service's open parked
/// events by reason.
pub fn spawn_monitor(
    consumer: Arc<ConsumerHandle>,
    state: Arc<ConsumerState>,
    readiness: Arc<crate::http::Readiness>,
    metrics: ConsumerMetrics,
    db: DatabaseConnection,
    service: &'static str,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let (c, m) = (consumer.get(), metrics.clone());
            let checked = tokio::task::spawn_blocking(move || {
                let broker_ok = c.fetch_metadata(None, Duration::from_secs(2)).is_ok();
                let mut total = 0i64;
                if let Ok(assignment) = c.assignment() {
                    let committed = c.committed_offsets(assignment.clone(), Duration::from_secs(2)).ok();
                    for e in assignment.elements() {
                        let Ok((low, high)) = c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
                        else {
                            continue;
                        };
                        let done = committed
                            .as_ref()
                            .and_then(|t| t.find_partition(e.topic(), e.partition()))
                            .and_then(|p| p.offset().to_raw())
                            .filter(|o| *o >= 0)
                            .unwrap_or(low);
                        let lag = (high - done).max(0);
                        total += lag;
                        m.lag.with_label_values(&[e.topic(), &e.partition().to_string()]).set(lag);
                    }
                }
                (broker_ok, total)
            })
            .await;
            if let Ok((broker_ok, lag)) = checked {
                readiness.broker.store(broker_ok, Ordering::Relaxed);
                state.set_lag(lag);
            }
            let stalled = state.stalled();
            if stalled && metrics.stalled.get() == 0 {
                tracing::error!(lag = state.lag(), "consumer makes no progress while events wait");
            }
            metrics.stalled.set(i64::from(stalled));
            if let Ok(open) = parking::open_by_reason(&db, service).await {
                for reason in parking::REASONS {
                    metrics.parked_open.with_label_values(&[reason]).set(open.get(*reason).copied().unwrap_or(0));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    });
}
