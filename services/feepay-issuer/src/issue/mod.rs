//! The receipt issuer's core, everything but Kafka: one batch of payments and refunds in a
//! few database transactions.
//!
//! Exactly-once effects over at-least-once delivery: a payment id is recorded in `payments`
//! in the same transaction as its receipts, so a redelivered event finds it and does
//! nothing. Numbers come from `series_counters` rows locked in key order for the whole
//! transaction: a rollback returns the numbers, a commit makes them final, and two issuer
//! instances queue on the lock instead of racing.
//!
//! Rooms: [`intake`] splits a batch into groups and runs them; [`payments`] stores and
//! decides one group; [`numbering`] numbers, seals and inserts receipts; [`refunds`]
//! applies refunds; [`corrections`] operators' cancellations and replacements; [`events`]
//! the events the issuer emits; [`tally`] the metrics and logs of committed work.

mod corrections;
mod events;
mod intake;
mod numbering;
mod payments;
mod refunds;
mod summaries;
mod tally;
mod tax;

pub use corrections::{Corrected, Correction, CorrectionKind, PayerCorrection};
pub use events::ReceiptIssuedBodies;
pub use intake::Processed;

use crate::metrics::IssuerMetrics;
use crate::signing::Signing;
use feepay_domain::payment::Payment;
use feepay_proto::v1;
use feepay_proto::Message;
use feepay_runtime::clock::Clock;
use feepay_runtime::convert::{OverLimit, Refund};
use feepay_runtime::envelope::BodyFormat;
use feepay_runtime::ids::subject;
use feepay_runtime::outbox::OutboxEvent;
use feepay_runtime::parking::ParkReason;
use feepay_runtime::refdata::{self, LoadedReference};
use feepay_runtime::settings::Topics;
use sea_orm::{DatabaseConnection, DbErr};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

/// Namespace of receipt ids (UUID v5), so a receipt id is stable for its cause.
const RECEIPT_NS: Uuid = Uuid::from_u128(0x6d1f_52a4_0c5e_4b8e_9a51_8f2c_3e7a_1b90);

/// A decoded event of a batch.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A valid payment; the hash is over its canonical protobuf encoding, so the same event
    /// in JSON or protobuf has the same hash.
    Payment { payment: Payment, hash: String },
    /// A payment that breaks a business limit: recorded and rejected, never dead-lettered.
    OverLimit { breach: OverLimit, hash: String },
    /// A valid refund.
    Refund { refund: Refund, raw: v1::PaymentRefunded, hash: String },
    /// A refund that breaks a business limit: recorded and rejected.
    RefundOverLimit { refund_id: String, payment_id: String, detail: String, raw: v1::PaymentRefunded, hash: String },
}

fn hash_of<M: Message>(m: &M) -> String {
    hex::encode(Sha256::digest(m.encode_to_vec()))
}

impl Incoming {
    pub fn payment(payment: Payment, raw: &v1::PaymentSucceeded) -> Self {
        Incoming::Payment { payment, hash: hash_of(raw) }
    }

    pub fn over_limit(breach: OverLimit, raw: &v1::PaymentSucceeded) -> Self {
        Incoming::OverLimit { breach, hash: hash_of(raw) }
    }

    pub fn refund(refund: Refund, raw: v1::PaymentRefunded) -> Self {
        let hash = hash_of(&raw);
        Incoming::Refund { refund, raw, hash }
    }

    pub fn refund_over_limit(refund_id: String, payment_id: String, detail: String, raw: v1::PaymentRefunded) -> Self {
        let hash = hash_of(&raw);
        Incoming::RefundOverLimit { refund_id, payment_id, detail, raw, hash }
    }

    /// What the event is about: `payment:<id>` or `refund:<id>` (parked events are keyed by it).
    pub fn subject(&self) -> String {
        match self {
            Incoming::Payment { payment, .. } => subject::payment(&payment.payment_id),
            Incoming::OverLimit { breach, .. } => subject::payment(&breach.payment_id),
            Incoming::Refund { refund, .. } => subject::refund(&refund.refund_id),
            Incoming::RefundOverLimit { refund_id, .. } => subject::refund(refund_id),
        }
    }

    /// The agency of a payment (refunds name only their payment).
    pub fn agency(&self) -> Option<&str> {
        match self {
            Incoming::Payment { payment, .. } => Some(&payment.agency_code),
            Incoming::OverLimit { breach, .. } => Some(&breach.agency_code),
            _ => None,
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub receipts_issued: usize,
    pub payments_issued: usize,
    pub payments_waived: usize,
    pub payments_rejected: usize,
    pub duplicates: usize,
    pub conflicts: usize,
    pub refunds_applied: usize,
    pub refunds_pending: usize,
    pub refunds_rejected: usize,
    pub receipts_cancelled: usize,
    pub receipts_replaced: usize,
}

impl BatchOutcome {
    fn add(&mut self, o: &BatchOutcome) {
        self.receipts_issued += o.receipts_issued;
        self.payments_issued += o.payments_issued;
        self.payments_waived += o.payments_waived;
        self.payments_rejected += o.payments_rejected;
        self.duplicates += o.duplicates;
        self.conflicts += o.conflicts;
        self.refunds_applied += o.refunds_applied;
        self.refunds_pending += o.refunds_pending;
        self.refunds_rejected += o.refunds_rejected;
        self.receipts_cancelled += o.receipts_cancelled;
        self.receipts_replaced += o.receipts_replaced;
    }
}

/// An event that failed on its own, named so it can be left out and parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    /// A payment of the batch.
    Payment(String, ParkReason),
    /// A refund of the batch.
    Refund(String, ParkReason),
    /// A refund stored earlier, applied when its payment came.
    StoredRefund(String, ParkReason),
}

/// Why a batch (or an operator's correction) failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("no reference data loaded: run `receiptctl reference load` first")]
    NoReference,
    #[error("reference data: {0}")]
    Reference(String),
    /// Receipts of these payments cannot be issued, for the reason given (exhausted series,
    /// no usable signer). Attributed to culprits by the caller.
    #[error("{}: {}", .1.code, .1.detail)]
    Blocked(Vec<String>, ParkReason),
    /// The thing being done failed for a reason of its own (a stored row that does not
    /// decode, a series that left the reference data). Attributed by the caller.
    #[error("{}: {}", .0.code, .0.detail)]
    Permanent(ParkReason),
    /// Events that failed on their own: the transaction rolled back; park them and go on.
    #[error("events failed on their own: {0:?}")]
    Culprits(Vec<Culprit>),
    #[error("no receipt with id or lookup code {0}")]
    NotFound(String),
    #[error("receipt {0} is no longer valid (cancelled or replaced); correct the receipt that replaced it instead")]
    NotIssued(String),
    #[error("invalid correction: {0}")]
    Invalid(String),
    #[error("a batch worker stopped: {0}")]
    Worker(String),
}

impl IssueError {
    /// Blames `culprit` for a failure of its own (blocked receipts, a permanent failure).
    fn blame(self, culprit: impl FnOnce(ParkReason) -> Culprit) -> IssueError {
        match self {
            IssueError::Blocked(_, reason) | IssueError::Permanent(reason) => {
                IssueError::Culprits(vec![culprit(reason)])
            }
            other => other,
        }
    }
}

/// The receipt issuer's core: everything but Kafka.
pub struct Issuer {
    pub db: DatabaseConnection,
    pub signing: Signing,
    pub clock: Arc<dyn Clock>,
    pub metrics: IssuerMetrics,
    pub topics: Topics,
    pub format: BodyFormat,
    /// CloudEvents source of produced events.
    pub source: String,
    /// Concurrent transactions per batch (payments split by agency); 1 = one transaction.
    pub workers: usize,
    reference: refdata::Cache,
    /// Series whose registration the tax authority accepted (seen once, never undone).
    registered: std::sync::Mutex<std::collections::BTreeSet<numbering::SeriesKey>>,
    /// When the day's summaries 01/TH-BLĐT are made (GMT+7), `FEEPAY_TAX_SUMMARY_CUTOFF`.
    pub summary_cutoff: chrono::NaiveTime,
}

/// The changes of one transaction, committed together: events for the outbox, counts for
/// the batch's outcome, and the metrics and logs to emit once it has committed.
#[derive(Default)]
struct Work {
    outbox: Vec<OutboxEvent>,
    outcome: BatchOutcome,
    tally: tally::Tally,
}

impl Issuer {
    pub fn new(
        db: DatabaseConnection,
        signing: Signing,
        clock: Arc<dyn Clock>,
        metrics: IssuerMetrics,
        topics: Topics,
        format: BodyFormat,
        source: String,
    ) -> Self {
        Issuer {
            db,
            signing,
            clock,
            metrics,
            topics,
            format,
            source,
            workers: 1,
            reference: refdata::Cache::new(),
            registered: Default::default(),
            summary_cutoff: chrono::NaiveTime::from_hms_opt(23, 0, 0).expect("valid time"),
        }
    }

    /// Reads the revocation list, picks up signers added or replaced since the last batch
    /// and registers their certificates before anything is signed with them.
    pub async fn refresh_signers(&self) -> Result<(), IssueError> {
        // Revocations take effect from the next batch on.
        let revoked = feepay_runtime::pki::registry::revocations(&self.db)
            .await
            .map_err(|e| IssueError::Reference(format!("reading the certificate revocation list: {e}")))?;
        self.signing.set_revocations(revoked);
        if self.signing.refresh().is_some() {
            if let Err(e) = self.register_certificates().await {
                // Registered before use: look again at the next batch.
                self.signing.invalidate();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Registers the certificates in use and sets their expiry gauges.
    pub async fn register_certificates(&self) -> Result<(), IssueError> {
        let set = self.signing.current();
        feepay_runtime::pki::registry::register(
            &self.db,
            set.all().map(|s| s.as_ref()),
            crate::metrics::SERVICE,
            self.clock.now(),
        )
        .await
        .map_err(|e| IssueError::Reference(format!("registering the signing certificates: {e}")))?;
        self.observe_certificates();
        Ok(())
    }

    /// Seconds until each certificate in use expires (negative once expired).
    pub fn observe_certificates(&self) {
        let now = self.clock.now();
        // Certificates taken out of the signers directory leave the gauge.
        self.metrics.certificate_expiry.reset();
        for s in self.signing.current().all() {
            self.metrics
                .certificate_expiry
                .with_label_values(&[&s.agency, &s.info.serial])
                .set((s.info.not_after - now).num_seconds());
        }
    }

    /// Makes the day's summaries from `cutoff` on (GMT+7).
    pub fn with_summary_cutoff(mut self, cutoff: chrono::NaiveTime) -> Self {
        self.summary_cutoff = cutoff;
        self
    }

    /// Splits each batch's payments into up to `n` concurrent transactions.
    pub fn with_workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// The reference data in use, reloaded when a newer version was stored.
    pub async fn reference(&self) -> Result<Arc<LoadedReference>, IssueError> {
        let current = self.reference.current(&self.db).await.map_err(|e| match e {
            refdata::CacheError::Missing => IssueError::NoReference,
            refdata::CacheError::Load(refdata::LoadError::Db(e)) => IssueError::from(e),
            refdata::CacheError::Load(e) => IssueError::Reference(e.to_string()),
        })?;
        let loaded = current.reference;
        if current.newly_loaded {
            let now = self.clock.now();
            let agencies: std::collections::BTreeSet<&str> =
                loaded.reference.series.iter().map(|s| s.agency.as_str()).collect();
            for agency in agencies {
                if let Err(reason) = self.signing.signer_for(&loaded.reference, agency, now) {
                    tracing::warn!(%agency, reason = reason.code, detail = %reason.detail, "an agency with a receipt series cannot sign; its payments are parked until this is fixed");
                }
            }
            self.metrics.reference_version.set(loaded.version);
            // Every series' counters at 0, so dashboards and alerts see them before the first
            // receipt, replacement or notice.
            let today = feepay_domain::numbering::date_gmt7(now);
            for s in &loaded.reference.series {
                let Some(symbol) = s.symbol_on(today) else { continue };
                let label = numbering::series_label(&s.template, &symbol);
                for m in
                    [&self.metrics.receipts_issued, &self.metrics.receipts_replaced, &self.metrics.receipts_cancelled]
                {
                    m.with_label_values(&[&s.agency, &label]);
                }
                self.metrics.errors_notified.with_label_values(&[&s.agency]);
            }
        }
        Ok(loaded)
    }

    /// Checks every series of a year: numbers 1..=n without gap or repeat and the counter at
    /// n. Returns the number of defects (missing + repeated numbers) and updates the gauge.
    pub async fn numbering_self_check(&self, year: i32) -> Result<i64, DbErr> {
        numbering::self_check(self, year).await
    }
}
