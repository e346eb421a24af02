//! One batch of payments and refunds, one database transaction.
//!
//! Exactly-once effects over at-least-once delivery: a payment id is recorded in `payments`
//! in the same transaction as its receipts, so a redelivered event finds it and does
//! nothing. Numbers come from `series_counters` rows locked in key order for the whole
//! transaction: a rollback returns the numbers, a commit makes them final, and two issuer
//! instances queue on the lock instead of racing.

use crate::clock::Clock;
use crate::keys::Keyring;
use crate::metrics::IssuerMetrics;
use chrono::{DateTime, Utc};
use feepay_domain::money::Vnd;
use feepay_domain::numbering::{receipt_symbol, year_gmt7, ReceiptNumber, GENESIS_HASH};
use feepay_domain::payment::{decide, Decision, Payment, Rejection};
use feepay_domain::receipt::{generate_lookup_code, AgencyInfo, PayerInfo, ReceiptContent, Replaces};
use feepay_domain::reference::Series;
use feepay_domain::waiver::{AppliedRule, LineAssessment};
use feepay_proto::v1;
use feepay_proto::Message;
use feepay_runtime::convert::{assessed_line_pb, payer_pb, ts, Refund};
use feepay_runtime::envelope::BodyFormat;
use feepay_runtime::outbox::{self, OutboxEvent};
use feepay_runtime::refdata::{self, LoadedReference};
use feepay_runtime::settings::Topics;
use feepay_runtime::sql::{placeholders, rows_per_statement, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// Namespace of receipt ids (UUID v5), so a receipt id is stable for its cause.
const RECEIPT_NS: Uuid = Uuid::from_u128(0x6d1f_52a4_0c5e_4b8e_9a51_8f2c_3e7a_1b90);

/// A decoded, validated event of a batch.
#[derive(Debug, Clone)]
pub enum Incoming {
    Payment { payment: Payment, hash: String },
    Refund { refund: Refund, raw: v1::PaymentRefunded, hash: String },
}

impl Incoming {
    /// Builds a payment item; the hash is over the canonical protobuf encoding, so the same
    /// event in JSON or protobuf has the same hash.
    pub fn payment(payment: Payment, raw: &v1::PaymentSucceeded) -> Self {
        Incoming::Payment { payment, hash: hex::encode(Sha256::digest(raw.encode_to_vec())) }
    }
    pub fn refund(refund: Refund, raw: v1::PaymentRefunded) -> Self {
        let hash = hex::encode(Sha256::digest(raw.encode_to_vec()));
        Incoming::Refund { refund, raw, hash }
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
    }
}

/// The content hash stored under an id (`sql` selects `content_hash` by `$1`), to tell a
/// redelivery (same hash) from a conflict.
async fn stored_hash(txn: &DatabaseTransaction, sql: &'static str, id: &str) -> Result<Option<String>, DbErr> {
    txn.query_one(stmt(sql, vec![id.into()])).await?.map(|r| r.try_get::<String>("", "content_hash")).transpose()
}

/// The group (transaction) a payment of this agency goes to.
fn group_of(agency: &str, groups: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    agency.hash(&mut h);
    (h.finish() % groups.max(1) as u64) as usize
}

/// Errors that fail a batch. It is retried whole: the failed transaction committed nothing,
/// and what the batch's other transactions committed is found again as duplicates.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("no reference data loaded: run `receiptctl reference load` first")]
    NoReference,
    #[error("reference data: {0}")]
    Reference(String),
    #[error("no signing key for agency {0}")]
    NoKey(String),
    #[error("series {0} has used all 9999999 numbers of the year")]
    Exhausted(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("no receipt with id or lookup code {0}")]
    NotFound(String),
    #[error("receipt {0} is already cancelled; correct the receipt that replaced it instead")]
    NotIssued(String),
    #[error("invalid correction: {0}")]
    Invalid(String),
    #[error("a batch worker stopped: {0}")]
    Worker(String),
}

/// An operator's correction of one receipt: cancel it, or cancel it and issue a replacement
/// with corrected payer details (same lines, same amount, next number of the series).
#[derive(Debug, Clone)]
pub struct Correction {
    /// Receipt id or lookup code.
    pub receipt: String,
    /// Why (printed on the cancellation, kept in the audit log).
    pub reason: String,
    /// Who (audit log).
    pub actor: String,
    /// `Some` to replace: the payer fields to change.
    pub replace: Option<PayerCorrection>,
}

/// Payer fields to correct; `None` keeps the field as it was.
#[derive(Debug, Clone, Default)]
pub struct PayerCorrection {
    pub full_name: Option<String>,
    pub personal_id: Option<String>,
    pub tax_code: Option<String>,
    pub address: Option<String>,
}

/// What a correction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrected {
    pub cancelled: String,
    pub replacement: Option<String>,
    pub replacement_lookup_code: Option<String>,
}

/// The receipt issuer's core: everything but Kafka.
pub struct Issuer {
    pub db: DatabaseConnection,
    pub keys: Keyring,
    pub clock: Arc<dyn Clock>,
    pub metrics: IssuerMetrics,
    pub topics: Topics,
    pub format: BodyFormat,
    /// CloudEvents source of produced events.
    pub source: String,
    /// Concurrent transactions per batch (payments split by agency); 1 = one transaction.
    pub workers: usize,
    reference: RwLock<Option<Arc<LoadedReference>>>,
}

/// A receipt about to be numbered.
#[derive(Debug, Clone)]
struct ToIssue {
    receipt_id: Uuid,
    payment_id: String,
    agency: AgencyInfo,
    series: Series,
    payer: PayerInfo,
    payer_pb: v1::Payer,
    dossier_code: String,
    procedure_code: String,
    lines: Vec<LineAssessment>,
    total: Vnd,
    provider: String,
    provider_reference: String,
    replaces: Option<Replaces>,
    paid_at: Option<DateTime<Utc>>,
}

/// A receipt row to cancel.
#[derive(Debug, Clone)]
struct Cancellation {
    receipt: v1::Receipt,
    reason: String,
    refund_id: String,
    replaced_by: Option<Uuid>,
}

struct Work {
    outbox: Vec<OutboxEvent>,
    outcome: BatchOutcome,
}

fn line_from_pb(l: &v1::AssessedLine) -> Result<LineAssessment, IssueError> {
    let amount = |s: &str| Vnd::parse(s).map_err(|e| IssueError::Corrupt(format!("stored line amount: {e}")));
    let kind =
        feepay_runtime::convert::fee_kind(l.kind).ok_or_else(|| IssueError::Corrupt("stored line kind".into()))?;
    let applied = match &l.waiver {
        Some(w) => Some(AppliedRule {
            rule_id: w.rule_id.clone(),
            document_number: w.document_number.clone(),
            issuing_body: w.issuing_body.clone(),
            description: w.description.clone(),
            reduction: amount(&w.reduction)?,
        }),
        None => None,
    };
    Ok(LineAssessment {
        fee_code: l.fee_code.clone(),
        fee_name: l.fee_name.clone(),
        kind,
        quantity: l.quantity,
        base: amount(&l.base_amount)?,
        due: amount(&l.amount_due)?,
        applied,
        candidates: Vec::new(),
    })
}

/// A receipt replacing `original` (same payment, agency, series and dossier) with the given
/// payer and lines: used by partial refunds and by operators' corrections.
fn replacement_of(
    loaded: &LoadedReference,
    original: &v1::Receipt,
    receipt_id: Uuid,
    payer: v1::Payer,
    lines: Vec<LineAssessment>,
    total: Vnd,
) -> Result<ToIssue, IssueError> {
    let agency = original.agency.clone().unwrap_or_default();
    let series = loaded
        .reference
        .series
        .iter()
        .find(|s| {
            s.agency == agency.code
                && s.template == original.template_symbol
                && original.receipt_symbol.starts_with(&format!("{}-", s.letters))
        })
        .cloned()
        .ok_or_else(|| {
            IssueError::Reference(format!(
                "series {} {} is no longer in the reference data",
                original.template_symbol, original.receipt_symbol
            ))
        })?;
    Ok(ToIssue {
        receipt_id,
        payment_id: original.payment_id.clone(),
        agency: AgencyInfo { code: agency.code, name: agency.name, tax_code: agency.tax_code, address: agency.address },
        series,
        payer: payer_info(&payer),
        payer_pb: payer,
        dossier_code: original.dossier_code.clone(),
        procedure_code: original.procedure_code.clone(),
        lines,
        total,
        provider: original.provider.clone(),
        provider_reference: original.provider_reference.clone(),
        replaces: Some(Replaces {
            receipt_id: original.receipt_id.clone(),
            template: original.template_symbol.clone(),
            symbol: original.receipt_symbol.clone(),
            number: original.number.clone(),
        }),
        paid_at: None,
    })
}

fn payer_info(p: &v1::Payer) -> PayerInfo {
    PayerInfo {
        full_name: p.full_name.clone(),
        personal_id: p.personal_id.clone(),
        tax_code: p.tax_code.clone(),
        address: p.address.clone(),
    }
}

fn agency_pb(a: &AgencyInfo) -> v1::Agency {
    v1::Agency { code: a.code.clone(), name: a.name.clone(), tax_code: a.tax_code.clone(), address: a.address.clone() }
}

fn series_label(template: &str, symbol: &str) -> String {
    format!("{template}/{symbol}")
}

impl Issuer {
    pub fn new(
        db: DatabaseConnection,
        keys: Keyring,
        clock: Arc<dyn Clock>,
        metrics: IssuerMetrics,
        topics: Topics,
        format: BodyFormat,
        source: String,
    ) -> Self {
        Issuer { db, keys, clock, metrics, topics, format, source, workers: 1, reference: RwLock::new(None) }
    }

    /// Splits each batch's payments into up to `n` concurrent transactions.
    pub fn with_workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// The reference data in use, reloaded when a newer version was stored.
    pub async fn reference(&self) -> Result<Arc<LoadedReference>, IssueError> {
        let latest = refdata::latest_version(&self.db).await?.ok_or(IssueError::NoReference)?;
        if let Some(r) = self.reference.read().expect("reference lock").as_ref() {
            if r.version == latest {
                return Ok(r.clone());
            }
        }
        let loaded = refdata::load_latest(&self.db)
            .await
            .map_err(|e| IssueError::Reference(e.to_string()))?
            .ok_or(IssueError::NoReference)?;
        let missing = self.keys.missing(&loaded.reference);
        if !missing.is_empty() {
            tracing::warn!(agencies = ?missing, "agencies with a receipt series have no signing key; their payments will fail until a key is added");
        }
        tracing::info!(version = loaded.version, "reference data loaded");
        self.metrics.reference_version.set(loaded.version);
        let loaded = Arc::new(loaded);
        *self.reference.write().expect("reference lock") = Some(loaded.clone());
        Ok(loaded)
    }

    /// Processes a batch. Payments are split by agency into up to [`Issuer::workers`] groups,
    /// each in its own transaction, run concurrently: a series belongs to one agency, so the
    /// groups lock disjoint counters and the hash chains stay sequential. Conflicting
    /// duplicates and refunds follow in one more transaction once the payments committed.
    ///
    /// On error the caller retries the same batch: what already committed is found again
    /// and counted as a duplicate, so a retry never issues twice.
    pub async fn process(self: &Arc<Self>, items: &[Incoming]) -> Result<BatchOutcome, IssueError> {
        let loaded = self.reference().await?;
        let now = self.clock.now();
        let mut outcome = BatchOutcome::default();

        // The first occurrence of a payment id in the batch is the candidate; an identical
        // repeat is a duplicate, a different one a conflict (after the first is stored).
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let mut groups: Vec<Vec<(Payment, String)>> = vec![Vec::new(); self.workers];
        let mut in_batch_conflicts: Vec<(&Payment, &str)> = Vec::new();
        for item in items {
            if let Incoming::Payment { payment, hash } = item {
                match seen.get(payment.payment_id.as_str()) {
                    None => {
                        seen.insert(&payment.payment_id, hash);
                        groups[group_of(&payment.agency_code, self.workers)].push((payment.clone(), hash.clone()));
                    }
                    Some(h) if *h == hash.as_str() => outcome.duplicates += 1,
                    Some(_) => in_batch_conflicts.push((payment, hash)),
                }
            }
        }
        // Tasks, not just futures: signing is CPU work, and each group's can run on its own core.
        let tasks: Vec<_> = groups
            .into_iter()
            .filter(|g| !g.is_empty())
            .map(|g| {
                let (issuer, loaded) = (self.clone(), loaded.clone());
                tokio::spawn(async move { issuer.process_payments(&loaded, &g, now).await })
            })
            .collect();
        // Every group runs to its end (commit or rollback) before the batch is answered.
        for done in futures::future::join_all(tasks).await {
            let o = done.map_err(|e| IssueError::Worker(e.to_string()))??;
            outcome.add(&o);
        }

        let refunds: Vec<&Incoming> = items.iter().filter(|i| matches!(i, Incoming::Refund { .. })).collect();
        if in_batch_conflicts.is_empty() && refunds.is_empty() {
            return Ok(outcome);
        }
        let txn = self.db.begin().await?;
        let mut work = Work { outbox: Vec::new(), outcome: BatchOutcome::default() };
        for (p, hash) in in_batch_conflicts {
            self.record_conflict(&txn, &mut work, p, hash, now).await?;
        }
        let mut applicable = Vec::new();
        for item in refunds {
            let Incoming::Refund { refund, raw, hash } = item else { continue };
            let row = txn
                .query_one(stmt(
                    "INSERT INTO refunds (refund_id, payment_id, content_hash, status, refund_pb) VALUES ($1,$2,$3,'pending',$4) \
                     ON CONFLICT (refund_id) DO NOTHING RETURNING refund_id",
                    vec![refund.refund_id.clone().into(), refund.payment_id.clone().into(), hash.clone().into(), raw.encode_to_vec().into()],
                ))
                .await?;
            if row.is_some() {
                applicable.push(refund);
                continue;
            }
            let stored =
                stored_hash(&txn, "SELECT content_hash FROM refunds WHERE refund_id = $1", &refund.refund_id).await?;
            if stored.as_deref() == Some(hash.as_str()) {
                work.outcome.duplicates += 1;
            } else {
                work.outcome.conflicts += 1;
                self.metrics.conflicts.with_label_values(&["refund"]).inc();
            }
        }
        for refund in applicable {
            self.apply_refund(&txn, &loaded, refund, now, &mut work).await?;
        }
        outbox::insert(&txn, crate::metrics::SERVICE, work.outbox).await?;
        txn.commit().await?;
        outcome.add(&work.outcome);
        Ok(outcome)
    }

    /// One group's payments in one transaction: stored, decided, numbered, with the refunds
    /// that arrived before them applied.
    async fn process_payments(
        &self,
        loaded: &LoadedReference,
        candidates: &[(Payment, String)],
        now: DateTime<Utc>,
    ) -> Result<BatchOutcome, IssueError> {
        let txn = self.db.begin().await?;
        let mut work = Work { outbox: Vec::new(), outcome: BatchOutcome::default() };
        let decisions: Vec<Decision> =
            candidates.iter().map(|(p, _)| decide(&loaded.reference, &loaded.rules, p)).collect();
        let new_ids = self.insert_payments(&txn, candidates, &decisions).await?;
        let mut to_issue = Vec::new();
        let mut new_payment_ids = Vec::new();
        for ((p, hash), decision) in candidates.iter().zip(decisions) {
            if !new_ids.contains(p.payment_id.as_str()) {
                let stored =
                    stored_hash(&txn, "SELECT content_hash FROM payments WHERE payment_id = $1", &p.payment_id).await?;
                if stored.as_deref() == Some(hash.as_str()) {
                    work.outcome.duplicates += 1;
                } else {
                    self.record_conflict(&txn, &mut work, p, hash, now).await?;
                }
                continue;
            }
            new_payment_ids.push(p.payment_id.clone());
            self.apply_decision(loaded, p, decision, now, &mut to_issue, &mut work)?;
        }
        self.number_and_insert(&txn, loaded, to_issue, now, &mut work).await?;

        // Refunds that arrived before their payment (earlier batches) apply now.
        if !new_payment_ids.is_empty() {
            let rows = txn
                .query_all(stmt(
                    "SELECT refund_pb FROM refunds WHERE status = 'pending' AND payment_id = ANY($1) ORDER BY received_at",
                    vec![new_payment_ids.into()],
                ))
                .await?;
            for r in rows {
                let bytes: Vec<u8> = r.try_get("", "refund_pb")?;
                let raw = v1::PaymentRefunded::decode(bytes.as_slice())
                    .map_err(|e| IssueError::Corrupt(format!("stored refund: {e}")))?;
                let refund = feepay_runtime::convert::parse_refund(&raw)
                    .map_err(|e| IssueError::Corrupt(format!("stored refund: {e}")))?;
                self.apply_refund(&txn, loaded, &refund, now, &mut work).await?;
            }
        }
        outbox::insert(&txn, crate::metrics::SERVICE, work.outbox).await?;
        txn.commit().await?;
        Ok(work.outcome)
    }

    /// A payment id seen again with different content: the first version stands, the
    /// conflict is counted on the stored payment and reported.
    async fn record_conflict(
        &self,
        txn: &DatabaseTransaction,
        work: &mut Work,
        p: &Payment,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<(), IssueError> {
        work.outcome.conflicts += 1;
        self.metrics.conflicts.with_label_values(&["payment"]).inc();
        txn.execute(stmt(
            "UPDATE payments SET conflicts = conflicts + 1 WHERE payment_id = $1",
            vec![p.payment_id.clone().into()],
        ))
        .await?;
        self.reject_event(
            work,
            &p.payment_id,
            "",
            &p.agency_code,
            &p.dossier_code,
            Rejection::ConflictingDuplicate,
            &format!("payment {} was already received with different content; the first version stands", p.payment_id),
            &format!("conflict:{}", &hash[..16]),
            now,
        );
        Ok(())
    }

    async fn insert_payments(
        &self,
        txn: &DatabaseTransaction,
        candidates: &[(Payment, String)],
        decisions: &[Decision],
    ) -> Result<BTreeSet<String>, DbErr> {
        const COLS: usize = 12;
        let mut inserted = BTreeSet::new();
        let rows: Vec<(usize, &(Payment, String))> = candidates.iter().enumerate().collect();
        for chunk in rows.chunks(rows_per_statement(COLS)) {
            let mut v: Vec<Value> = Vec::with_capacity(chunk.len() * COLS);
            for (i, (p, hash)) in chunk {
                let (status, reason, detail, waived) = match &decisions[*i] {
                    Decision::Issue { waived, .. } => ("issued", None, None, waived.clone()),
                    Decision::FullyWaived { waived } => ("waived", None, None, waived.clone()),
                    Decision::Reject { reason, detail } => {
                        ("rejected", Some(reason.code().to_string()), Some(detail.clone()), Vec::new())
                    }
                };
                let waived_json = if waived.is_empty() {
                    None
                } else {
                    Some(
                        serde_json::to_value(waived.iter().map(assessed_line_pb).collect::<Vec<_>>())
                            .unwrap_or_default(),
                    )
                };
                v.extend([
                    p.payment_id.clone().into(),
                    hash.clone().into(),
                    p.agency_code.clone().into(),
                    p.dossier_code.clone().into(),
                    p.provider.clone().into(),
                    p.total_paid.dong().into(),
                    p.paid_at.into(),
                    status.into(),
                    reason.into(),
                    detail.into(),
                    waived_json.into(),
                    Utc::now().into(),
                ]);
            }
            let sql = format!(
                "INSERT INTO payments (payment_id, content_hash, agency_code, dossier_code, provider, total_paid, paid_at, status, reason, detail, waived_lines, processed_at) \
                 VALUES {} ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id",
                placeholders(chunk.len(), COLS)
            );
            for r in txn.query_all(stmt(sql, v)).await? {
                inserted.insert(r.try_get::<String>("", "payment_id")?);
            }
        }
        Ok(inserted)
    }

    #[allow(clippy::too_many_arguments)]
    fn reject_event(
        &self,
        work: &mut Work,
        payment_id: &str,
        refund_id: &str,
        agency: &str,
        dossier: &str,
        reason: Rejection,
        detail: &str,
        id_suffix: &str,
        now: DateTime<Utc>,
    ) {
        let pb_reason = match reason {
            Rejection::UnknownAgency => v1::RejectionReason::UnknownAgency,
            Rejection::UnknownFee => v1::RejectionReason::UnknownFee,
            Rejection::NoSeries => v1::RejectionReason::NoSeries,
            Rejection::AmountMismatch => v1::RejectionReason::AmountMismatch,
            Rejection::ConflictingDuplicate => v1::RejectionReason::ConflictingDuplicate,
            Rejection::InvalidRefund => v1::RejectionReason::InvalidRefund,
            Rejection::KindMismatch => v1::RejectionReason::KindMismatch,
        };
        self.metrics.payments_rejected.with_label_values(&[reason.code()]).inc();
        let msg = v1::PaymentRejected {
            payment_id: payment_id.to_string(),
            refund_id: refund_id.to_string(),
            agency_code: agency.to_string(),
            dossier_code: dossier.to_string(),
            reason: pb_reason as i32,
            detail: detail.to_string(),
            rejected_at: Some(ts(now)),
        };
        let id = format!("payment-rejected:{payment_id}:{id_suffix}");
        work.outbox.push(OutboxEvent::new(
            &self.topics.payments_rejected,
            payment_id,
            &id,
            &self.source,
            &msg,
            self.format,
        ));
    }

    fn apply_decision(
        &self,
        loaded: &LoadedReference,
        p: &Payment,
        decision: Decision,
        now: DateTime<Utc>,
        to_issue: &mut Vec<ToIssue>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let agency = |code: &str| {
            loaded.reference.agencies.get(code).map(|a| AgencyInfo {
                code: a.code.clone(),
                name: a.name.clone(),
                tax_code: a.tax_code.clone(),
                address: a.address.clone(),
            })
        };
        match decision {
            Decision::Reject { reason, detail } => {
                work.outcome.payments_rejected += 1;
                tracing::info!(payment_id = %p.payment_id, reason = reason.code(), %detail, "payment rejected");
                self.reject_event(
                    work,
                    &p.payment_id,
                    "",
                    &p.agency_code,
                    &p.dossier_code,
                    reason,
                    &detail,
                    "payment",
                    now,
                );
            }
            Decision::FullyWaived { waived } => {
                work.outcome.payments_waived += 1;
                self.count_waivers(&p.agency_code, &waived);
                let agency = agency(&p.agency_code).ok_or_else(|| IssueError::Corrupt("agency vanished".into()))?;
                self.waiver_notice(work, p, &agency, &waived, now);
            }
            Decision::Issue { receipts, waived } => {
                work.outcome.payments_issued += 1;
                let agency = agency(&p.agency_code).ok_or_else(|| IssueError::Corrupt("agency vanished".into()))?;
                if !waived.is_empty() {
                    self.count_waivers(&p.agency_code, &waived);
                    self.waiver_notice(work, p, &agency, &waived, now);
                }
                let payer_pb = payer_pb(&p.payer);
                for draft in receipts {
                    self.count_waivers(&p.agency_code, &draft.lines);
                    let key = format!(
                        "{}|{}|{}|{}",
                        p.payment_id, draft.series.agency, draft.series.template, draft.series.letters
                    );
                    to_issue.push(ToIssue {
                        receipt_id: Uuid::new_v5(&RECEIPT_NS, key.as_bytes()),
                        payment_id: p.payment_id.clone(),
                        agency: agency.clone(),
                        series: draft.series,
                        payer: payer_info(&payer_pb),
                        payer_pb: payer_pb.clone(),
                        dossier_code: p.dossier_code.clone(),
                        procedure_code: p.procedure_code.clone(),
                        lines: draft.lines,
                        total: draft.total,
                        provider: p.provider.clone(),
                        provider_reference: p.provider_reference.clone(),
                        replaces: None,
                        paid_at: Some(p.paid_at),
                    });
                }
            }
        }
        Ok(())
    }

    fn count_waivers(&self, agency: &str, lines: &[LineAssessment]) {
        for l in lines {
            if let Some(a) = &l.applied {
                self.metrics.waivers_applied.with_label_values(&[&a.rule_id]).inc();
                self.metrics.amount_waived.with_label_values(&[agency]).inc_by(a.reduction.dong() as u64);
            }
        }
    }

    fn waiver_notice(
        &self,
        work: &mut Work,
        p: &Payment,
        agency: &AgencyInfo,
        waived: &[LineAssessment],
        now: DateTime<Utc>,
    ) {
        let msg = v1::WaiverNotice {
            payment_id: p.payment_id.clone(),
            agency: Some(agency_pb(agency)),
            payer: Some(payer_pb(&p.payer)),
            dossier_code: p.dossier_code.clone(),
            procedure_code: p.procedure_code.clone(),
            lines: waived.iter().map(assessed_line_pb).collect(),
            noticed_at: Some(ts(now)),
        };
        let id = format!("waiver-notice:{}", p.payment_id);
        work.outbox.push(OutboxEvent::new(
            &self.topics.payments_waived,
            &p.payment_id,
            &id,
            &self.source,
            &msg,
            self.format,
        ));
    }

    /// Locks the counters of every series involved (in key order), assigns consecutive
    /// numbers, seals the documents, and inserts receipts, counters and events.
    async fn number_and_insert(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        to_issue: Vec<ToIssue>,
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<Vec<Uuid>, IssueError> {
        if to_issue.is_empty() {
            return Ok(Vec::new());
        }
        let year = year_gmt7(now);
        // (agency, template, symbol) → (last number, last hash)
        let mut keys: BTreeSet<(String, String, String)> = BTreeSet::new();
        for t in &to_issue {
            keys.insert((t.series.agency.clone(), t.series.template.clone(), receipt_symbol(&t.series.letters, year)));
        }
        let mut v: Vec<Value> = Vec::new();
        for (a, t, s) in &keys {
            v.extend([
                a.clone().into(),
                t.clone().into(),
                s.clone().into(),
                year.into(),
                0i32.into(),
                GENESIS_HASH.into(),
            ]);
        }
        txn.execute(stmt(
            format!(
                "INSERT INTO series_counters (agency, template, symbol, year, last_number, last_hash) VALUES {} ON CONFLICT DO NOTHING",
                placeholders(keys.len(), 6)
            ),
            v,
        ))
        .await?;
        let mut counters: BTreeMap<(String, String, String), (u32, String)> = BTreeMap::new();
        for (a, t, s) in &keys {
            // One statement per key, in key order: a stable lock order across instances.
            let row = txn
                .query_one(stmt(
                    "SELECT last_number, last_hash FROM series_counters WHERE agency = $1 AND template = $2 AND symbol = $3 AND year = $4 FOR UPDATE",
                    vec![a.clone().into(), t.clone().into(), s.clone().into(), year.into()],
                ))
                .await?
                .ok_or_else(|| IssueError::Corrupt("counter row vanished".into()))?;
            let n: i32 = row.try_get("", "last_number")?;
            counters.insert((a.clone(), t.clone(), s.clone()), (n as u32, row.try_get("", "last_hash")?));
        }

        const COLS: usize = 19;
        let mut rows: Vec<Vec<Value>> = Vec::with_capacity(to_issue.len());
        let mut ids = Vec::with_capacity(to_issue.len());
        let mut rng = rand::rngs::OsRng;
        for t in to_issue {
            let symbol = receipt_symbol(&t.series.letters, year);
            let ck = (t.series.agency.clone(), t.series.template.clone(), symbol.clone());
            let (last, last_hash) =
                counters.get_mut(&ck).ok_or_else(|| IssueError::Corrupt("counter missing".into()))?;
            let number = ReceiptNumber::after(*last)
                .map_err(|_| IssueError::Exhausted(format!("{} {}", t.series.template, symbol)))?;
            let key = self
                .keys
                .for_agency(&loaded.reference, &t.series.agency)
                .ok_or_else(|| IssueError::NoKey(t.series.agency.clone()))?;
            let content = ReceiptContent {
                receipt_id: t.receipt_id.to_string(),
                payment_id: t.payment_id.clone(),
                title: t.series.title.clone(),
                agency: t.agency.clone(),
                template: t.series.template.clone(),
                symbol: symbol.clone(),
                number,
                payer: t.payer.clone(),
                dossier_code: t.dossier_code.clone(),
                procedure_code: t.procedure_code.clone(),
                lines: t.lines.clone(),
                total: t.total,
                provider: t.provider.clone(),
                provider_reference: t.provider_reference.clone(),
                issued_at: now,
                lookup_code: generate_lookup_code(&mut rng),
                previous_hash: last_hash.clone(),
                replaces: t.replaces.clone(),
            };
            let sealed = content.seal(&key);
            *last = number.value();
            *last_hash = sealed.document_hash.clone();

            let receipt_pb = v1::Receipt {
                receipt_id: content.receipt_id.clone(),
                payment_id: t.payment_id.clone(),
                agency: Some(agency_pb(&t.agency)),
                template_symbol: content.template.clone(),
                receipt_symbol: symbol.clone(),
                number: number.to_string(),
                year: year as u32,
                payer: Some(t.payer_pb.clone()),
                dossier_code: t.dossier_code.clone(),
                procedure_code: t.procedure_code.clone(),
                lines: t.lines.iter().map(assessed_line_pb).collect(),
                total: t.total.to_string(),
                total_in_words: feepay_domain::words::amount_in_words(t.total),
                provider: t.provider.clone(),
                provider_reference: t.provider_reference.clone(),
                issued_at: Some(ts(now)),
                lookup_code: content.lookup_code.clone(),
                key_id: sealed.key_id.clone(),
                signature: sealed.signature_b64.clone(),
                previous_hash: content.previous_hash.clone(),
                document_hash: sealed.document_hash.clone(),
                replaces_receipt_id: t.replaces.as_ref().map(|r| r.receipt_id.clone()).unwrap_or_default(),
                status: v1::ReceiptStatus::Issued as i32,
                title: content.title.clone(),
            };
            let waived: i64 = t.lines.iter().map(|l| l.reduction().dong()).sum();
            let replaces: Option<Uuid> = t.replaces.as_ref().and_then(|r| r.receipt_id.parse().ok());
            rows.push(vec![
                t.receipt_id.into(),
                t.payment_id.clone().into(),
                t.series.agency.clone().into(),
                t.series.template.clone().into(),
                symbol.clone().into(),
                year.into(),
                (number.value() as i32).into(),
                t.total.dong().into(),
                waived.into(),
                "issued".into(),
                now.into(),
                content.lookup_code.clone().into(),
                sealed.key_id.clone().into(),
                sealed.signature_b64.clone().into(),
                content.previous_hash.clone().into(),
                sealed.document_hash.clone().into(),
                sealed.document.into(),
                receipt_pb.encode_to_vec().into(),
                replaces.into(),
            ]);
            let label = series_label(&t.series.template, &symbol);
            self.metrics.receipts_issued.with_label_values(&[&t.series.agency, &label]).inc();
            self.metrics.amount_collected.with_label_values(&[&t.series.agency, &label]).inc_by(t.total.dong() as u64);
            if let Some(paid_at) = t.paid_at {
                self.metrics.payment_to_receipt.observe(((now - paid_at).num_milliseconds().max(0) as f64) / 1000.0);
            }
            tracing::info!(payment_id = %t.payment_id, receipt_number = %number, series = %label, agency = %t.series.agency, total = t.total.dong(), "receipt issued");
            // The event is the receipt row itself: the outbox row only points at it.
            let id = format!("receipt-issued:{}", t.receipt_id);
            work.outbox.push(OutboxEvent::receipt_issued(
                &self.topics.receipts_issued,
                &t.payment_id,
                &id,
                &self.source,
                t.receipt_id,
                self.format,
            ));
            work.outcome.receipts_issued += 1;
            ids.push(t.receipt_id);
        }
        let per_statement = rows_per_statement(COLS);
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            // Move the values (documents are kilobytes each) instead of copying them.
            let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
            let n = chunk.len();
            let values: Vec<Value> = chunk.into_iter().flatten().collect();
            txn.execute(stmt(
                format!(
                    "INSERT INTO receipts (receipt_id, payment_id, agency_code, template, symbol, year, number, total, waived, status, issued_at, \
                     lookup_code, key_id, signature, previous_hash, document_hash, document, receipt_pb, replaces) VALUES {}",
                    placeholders(n, COLS)
                ),
                values,
            ))
            .await?;
        }
        for ((a, t, s), (n, h)) in counters {
            txn.execute(stmt(
                "UPDATE series_counters SET last_number = $1, last_hash = $2, updated_at = now() WHERE agency = $3 AND template = $4 AND symbol = $5 AND year = $6",
                vec![(n as i32).into(), h.into(), a.into(), t.into(), s.into(), year.into()],
            ))
            .await?;
        }
        Ok(ids)
    }

    /// Applies a refund: cancels the receipts it touches and, for a partial refund, issues
    /// replacements for what remains. A refund for a payment not seen yet stays pending.
    async fn apply_refund(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        refund: &Refund,
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let payment = txn
            .query_one(stmt(
                "SELECT status, agency_code, dossier_code FROM payments WHERE payment_id = $1",
                vec![refund.payment_id.clone().into()],
            ))
            .await?;
        let Some(payment) = payment else {
            work.outcome.refunds_pending += 1;
            tracing::info!(payment_id = %refund.payment_id, refund_id = %refund.refund_id, "refund waits for its payment");
            return Ok(());
        };
        let status: String = payment.try_get("", "status")?;
        let agency: String = payment.try_get("", "agency_code")?;
        let dossier: String = payment.try_get("", "dossier_code")?;
        let reject = |work: &mut Work, detail: String| {
            work.outcome.refunds_rejected += 1;
            self.reject_event(
                work,
                &refund.payment_id,
                &refund.refund_id,
                &agency,
                &dossier,
                Rejection::InvalidRefund,
                &detail,
                &format!("refund:{}", refund.refund_id),
                now,
            );
            detail
        };
        if status != "issued" {
            let detail =
                reject(work, format!("payment {} has no receipt ({status}); nothing to refund", refund.payment_id));
            self.set_refund(txn, &refund.refund_id, "rejected", Some(&detail), now).await?;
            return Ok(());
        }
        let rows = txn
            .query_all(stmt(
                "SELECT receipt_pb FROM receipts WHERE payment_id = $1 AND status = 'issued' ORDER BY issued_at, number FOR UPDATE",
                vec![refund.payment_id.clone().into()],
            ))
            .await?;
        let mut receipts: Vec<v1::Receipt> = Vec::with_capacity(rows.len());
        for r in rows {
            let bytes: Vec<u8> = r.try_get("", "receipt_pb")?;
            receipts.push(
                v1::Receipt::decode(bytes.as_slice())
                    .map_err(|e| IssueError::Corrupt(format!("stored receipt: {e}")))?,
            );
        }
        if receipts.is_empty() {
            let detail = reject(work, format!("payment {} has no valid receipt left to cancel", refund.payment_id));
            self.set_refund(txn, &refund.refund_id, "rejected", Some(&detail), now).await?;
            return Ok(());
        }
        // Remaining amount per (receipt index, line index) after the refund.
        let mut plan: Vec<Vec<LineAssessment>> = Vec::with_capacity(receipts.len());
        for r in &receipts {
            plan.push(r.lines.iter().map(line_from_pb).collect::<Result<_, _>>()?);
        }
        let mut touched: BTreeSet<usize> = BTreeSet::new();
        if refund.lines.is_empty() {
            touched.extend(0..receipts.len());
            for lines in plan.iter_mut() {
                lines.clear();
            }
        } else {
            for (fee, amount) in &refund.lines {
                let mut left = *amount;
                for (ri, lines) in plan.iter_mut().enumerate() {
                    for l in lines.iter_mut().filter(|l| &l.fee_code == fee) {
                        let take = if l.due < left { l.due } else { left };
                        if take > Vnd::ZERO {
                            l.due = l.due - take;
                            left = left - take;
                            touched.insert(ri);
                        }
                    }
                }
                if left > Vnd::ZERO {
                    let detail = reject(
                        work,
                        format!("refund of {amount} đồng on fee {fee} exceeds what was collected on it by {left} đồng"),
                    );
                    self.set_refund(txn, &refund.refund_id, "rejected", Some(&detail), now).await?;
                    return Ok(());
                }
            }
        }
        let mut replacements = Vec::new();
        let mut cancellations = Vec::new();
        for ri in touched {
            let original = &receipts[ri];
            let remaining: Vec<LineAssessment> = plan[ri].iter().filter(|l| l.due > Vnd::ZERO).cloned().collect();
            let total: Vnd = remaining.iter().map(|l| l.due).sum();
            let mut replaced_by = None;
            if total > Vnd::ZERO {
                let id = Uuid::new_v5(
                    &RECEIPT_NS,
                    format!("replace|{}|{}", original.receipt_id, refund.refund_id).as_bytes(),
                );
                replaced_by = Some(id);
                let payer = original.payer.clone().unwrap_or_default();
                replacements.push(replacement_of(loaded, original, id, payer, remaining, total)?);
            }
            cancellations.push(Cancellation {
                receipt: original.clone(),
                reason: refund.reason.clone(),
                refund_id: refund.refund_id.clone(),
                replaced_by,
            });
        }
        // Cancel first, then number the replacements.
        for c in &cancellations {
            self.cancel(txn, c, now, work).await?;
        }
        self.number_and_insert(txn, loaded, replacements, now, work).await?;
        self.set_refund(txn, &refund.refund_id, "applied", None, now).await?;
        work.outcome.refunds_applied += 1;
        Ok(())
    }

    /// Applies an operator's correction in one transaction, through the same cancellation and
    /// numbering steps as a refund, with an audit log entry.
    pub async fn correct(&self, c: &Correction) -> Result<Corrected, IssueError> {
        if c.reason.trim().chars().count() < 5 {
            return Err(IssueError::Invalid("give the reason for the cancellation (at least 5 characters)".into()));
        }
        let loaded = self.reference().await?;
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let mut work = Work { outbox: Vec::new(), outcome: BatchOutcome::default() };
        let row = txn
            .query_one(stmt(
                "SELECT receipt_pb, status FROM receipts WHERE receipt_id::TEXT = $1 OR lookup_code = $1 FOR UPDATE",
                vec![c.receipt.clone().into()],
            ))
            .await?
            .ok_or_else(|| IssueError::NotFound(c.receipt.clone()))?;
        let status: String = row.try_get("", "status")?;
        let bytes: Vec<u8> = row.try_get("", "receipt_pb")?;
        let original =
            v1::Receipt::decode(bytes.as_slice()).map_err(|e| IssueError::Corrupt(format!("stored receipt: {e}")))?;
        let label = format!("{} {} {}", original.template_symbol, original.receipt_symbol, original.number);
        if status != "issued" {
            return Err(IssueError::NotIssued(label));
        }
        let mut replacement = None;
        if let Some(fix) = &c.replace {
            let mut payer = original.payer.clone().unwrap_or_default();
            if let Some(n) = &fix.full_name {
                if n.trim().is_empty() {
                    return Err(IssueError::Invalid("the payer's name cannot be empty".into()));
                }
                payer.full_name = n.trim().to_string();
            }
            if let Some(id) = &fix.personal_id {
                payer.personal_id = if id.is_empty() {
                    String::new()
                } else {
                    feepay_domain::ids::PersonalId::parse(id)
                        .map_err(|e| IssueError::Invalid(format!("personal id: {e}")))?
                        .expose()
                        .to_string()
                };
            }
            if let Some(t) = &fix.tax_code {
                payer.tax_code = if t.is_empty() {
                    String::new()
                } else {
                    feepay_domain::ids::TaxCode::parse(t)
                        .map_err(|e| IssueError::Invalid(format!("tax code: {e}")))?
                        .expose()
                        .to_string()
                };
            }
            if let Some(a) = &fix.address {
                payer.address = a.trim().to_string();
            }
            if payer.personal_id.is_empty() && payer.tax_code.is_empty() {
                return Err(IssueError::Invalid("the payer needs a personal id or a tax code".into()));
            }
            if Some(&payer) == original.payer.as_ref() {
                return Err(IssueError::Invalid("the replacement would be identical; say what to correct".into()));
            }
            let lines: Vec<LineAssessment> = original.lines.iter().map(line_from_pb).collect::<Result<_, _>>()?;
            let total = Vnd::parse(&original.total).map_err(|e| IssueError::Corrupt(format!("stored total: {e}")))?;
            let id = Uuid::new_v5(&RECEIPT_NS, format!("correct|{}", original.receipt_id).as_bytes());
            replacement = Some(replacement_of(&loaded, &original, id, payer, lines, total)?);
        }
        let replaced_by = replacement.as_ref().map(|r| r.receipt_id);
        let cancellation =
            Cancellation { receipt: original.clone(), reason: c.reason.clone(), refund_id: String::new(), replaced_by };
        self.cancel(&txn, &cancellation, now, &mut work).await?;
        let issued = self.number_and_insert(&txn, &loaded, replacement.into_iter().collect(), now, &mut work).await?;
        let mut corrected = Corrected { cancelled: label.clone(), replacement: None, replacement_lookup_code: None };
        if let Some(id) = issued.first() {
            let row = txn
                .query_one(stmt(
                    "SELECT template, symbol, number, lookup_code FROM receipts WHERE receipt_id = $1",
                    vec![(*id).into()],
                ))
                .await?
                .ok_or_else(|| IssueError::Corrupt("replacement vanished".into()))?;
            corrected.replacement = Some(format!(
                "{} {} {:07}",
                row.try_get::<String>("", "template")?,
                row.try_get::<String>("", "symbol")?,
                row.try_get::<i32>("", "number")?
            ));
            corrected.replacement_lookup_code = Some(row.try_get("", "lookup_code")?);
        }
        txn.execute(stmt(
            "INSERT INTO audit_log (actor, action, target, reason, details) VALUES ($1, $2, $3, $4, $5)",
            vec![
                c.actor.clone().into(),
                if c.replace.is_some() { "receipt.replace" } else { "receipt.cancel" }.into(),
                original.receipt_id.clone().into(),
                c.reason.clone().into(),
                serde_json::json!({
                    "cancelled": label,
                    "replacement": corrected.replacement,
                    "payment_id": original.payment_id,
                })
                .into(),
            ],
        ))
        .await?;
        outbox::insert(&txn, crate::metrics::SERVICE, work.outbox).await?;
        txn.commit().await?;
        Ok(corrected)
    }

    async fn set_refund(
        &self,
        txn: &DatabaseTransaction,
        refund_id: &str,
        status: &str,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        txn.execute(stmt(
            "UPDATE refunds SET status = $1, detail = $2, applied_at = $3 WHERE refund_id = $4",
            vec![status.into(), detail.map(str::to_string).into(), now.into(), refund_id.into()],
        ))
        .await
        .map(|_| ())
    }

    async fn cancel(
        &self,
        txn: &DatabaseTransaction,
        c: &Cancellation,
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let id: Uuid = c.receipt.receipt_id.parse().map_err(|_| IssueError::Corrupt("receipt id".into()))?;
        let mut receipt = c.receipt.clone();
        receipt.status = v1::ReceiptStatus::Cancelled as i32;
        txn.execute(stmt(
            "UPDATE receipts SET status = 'cancelled', cancelled_at = $1, cancel_reason = $2, replaced_by = $3, receipt_pb = $4 WHERE receipt_id = $5 AND status = 'issued'",
            vec![now.into(), c.reason.clone().into(), c.replaced_by.into(), receipt.encode_to_vec().into(), id.into()],
        ))
        .await?;
        let agency = receipt.agency.as_ref().map(|a| a.code.clone()).unwrap_or_default();
        self.metrics
            .receipts_cancelled
            .with_label_values(&[&agency, &series_label(&receipt.template_symbol, &receipt.receipt_symbol)])
            .inc();
        tracing::info!(payment_id = %receipt.payment_id, receipt_number = %receipt.number, series = %series_label(&receipt.template_symbol, &receipt.receipt_symbol), "receipt cancelled");
        let payment_id = receipt.payment_id.clone();
        let event = v1::ReceiptCancelled {
            receipt: Some(receipt),
            reason: c.reason.clone(),
            cancelled_at: Some(ts(now)),
            replaced_by_receipt_id: c.replaced_by.map(|u| u.to_string()).unwrap_or_default(),
            refund_id: c.refund_id.clone(),
        };
        let ce_id = format!("receipt-cancelled:{id}");
        work.outbox.push(OutboxEvent::new(
            &self.topics.receipts_cancelled,
            &payment_id,
            &ce_id,
            &self.source,
            &event,
            self.format,
        ));
        work.outcome.receipts_cancelled += 1;
        Ok(())
    }

    /// Checks every series of a year: numbers 1..=n without gap or repeat and the counter at
    /// n. Returns the number of defects (missing + repeated numbers) and updates the gauge.
    pub async fn numbering_self_check(&self, year: i32) -> Result<i64, DbErr> {
        let rows = self
            .db
            .query_all(stmt(
                "SELECT c.agency, c.template, c.symbol, c.last_number, count(r.number)::BIGINT AS n, count(DISTINCT r.number)::BIGINT AS d, \
                 COALESCE(max(r.number), 0)::BIGINT AS mx FROM series_counters c LEFT JOIN receipts r \
                 ON r.agency_code = c.agency AND r.template = c.template AND r.symbol = c.symbol AND r.year = c.year \
                 WHERE c.year = $1 GROUP BY c.agency, c.template, c.symbol, c.last_number",
                vec![year.into()],
            ))
            .await?;
        let mut defects = 0i64;
        for r in rows {
            let last: i32 = r.try_get("", "last_number")?;
            let n: i64 = r.try_get("", "n")?;
            let d: i64 = r.try_get("", "d")?;
            let mx: i64 = r.try_get("", "mx")?;
            let missing = i64::from(last).max(mx) - d;
            let repeated = n - d;
            if missing != 0 || repeated != 0 {
                let (a, t, s): (String, String, String) =
                    (r.try_get("", "agency")?, r.try_get("", "template")?, r.try_get("", "symbol")?);
                tracing::error!(agency = %a, series = %series_label(&t, &s), missing, repeated, "numbering defect found");
            }
            defects += missing.abs() + repeated;
        }
        self.metrics.numbering_gaps.set(defects);
        Ok(defects)
    }
}
