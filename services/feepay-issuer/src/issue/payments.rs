//! One group of payments in one transaction: recorded (the idempotency record), decided,
//! numbered, with the refunds that arrived before them applied.

use super::intake::Processed;
use super::numbering::ToIssue;
use super::tally::Fact;
use super::{Culprit, Incoming, IssueError, Issuer, Work, RECEIPT_NS};
use crate::store::payments;
use chrono::{DateTime, Utc};
use feepay_domain::payment::{decide, Decision, Payment, Rejection};
use feepay_runtime::convert::{assessed_line_pb, payer_pb, OverLimit};
use feepay_runtime::parking::{self, ParkReason};
use feepay_runtime::refdata::LoadedReference;
use feepay_runtime::sql::rows_per_statement;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
    TryInsertResult,
};
use std::collections::BTreeSet;
use uuid::Uuid;

/// A payment of a group: its index in the batch, the event, and its content hash.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub index: usize,
    pub kind: CandidateKind,
    pub hash: String,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // the valid payment is the common case
pub(super) enum CandidateKind {
    Valid(Payment),
    OverLimit(OverLimit),
}

impl Candidate {
    pub fn of(index: usize, item: &Incoming) -> Option<Candidate> {
        match item {
            Incoming::Payment { payment, hash } => {
                Some(Candidate { index, kind: CandidateKind::Valid(payment.clone()), hash: hash.clone() })
            }
            Incoming::OverLimit { breach, hash } => {
                Some(Candidate { index, kind: CandidateKind::OverLimit(breach.clone()), hash: hash.clone() })
            }
            _ => None,
        }
    }

    pub fn payment_id(&self) -> &str {
        match &self.kind {
            CandidateKind::Valid(p) => &p.payment_id,
            CandidateKind::OverLimit(b) => &b.payment_id,
        }
    }

    pub fn agency_code(&self) -> &str {
        match &self.kind {
            CandidateKind::Valid(p) => &p.agency_code,
            CandidateKind::OverLimit(b) => &b.agency_code,
        }
    }

    pub fn dossier_code(&self) -> &str {
        match &self.kind {
            CandidateKind::Valid(p) => &p.dossier_code,
            CandidateKind::OverLimit(b) => &b.dossier_code,
        }
    }

    fn decide(&self, loaded: &LoadedReference) -> Decision {
        match &self.kind {
            CandidateKind::Valid(p) => decide(&loaded.reference, &loaded.rules, p),
            CandidateKind::OverLimit(b) => {
                Decision::Reject { reason: Rejection::LimitExceeded, detail: b.detail.clone() }
            }
        }
    }
}

impl Issuer {
    /// One group's payments in one transaction. Payments whose receipts no usable signer
    /// could sign are left out before anything is written, and returned to be parked.
    pub(super) async fn process_payments(
        &self,
        loaded: &LoadedReference,
        candidates: &[Candidate],
        now: DateTime<Utc>,
    ) -> Result<Processed, IssueError> {
        let txn = self.db.begin().await?;
        let mut work = Work::default();
        let mut decisions: Vec<Decision> = candidates.iter().map(|c| c.decide(loaded)).collect();
        let blocked = self.unsignable(&txn, loaded, candidates, &decisions, now).await?;
        let mut parked = Vec::new();
        let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
        let mut kept_decisions = Vec::with_capacity(candidates.len());
        for (c, d) in candidates.iter().zip(decisions.drain(..)) {
            match blocked.iter().find(|(id, _)| id == c.payment_id()) {
                Some((_, reason)) => parked.push((c.index, reason.clone())),
                None => {
                    kept.push(c.clone());
                    kept_decisions.push(d);
                }
            }
        }
        let new_ids = self.insert_payments(&txn, &kept, &kept_decisions, now).await?;
        let mut to_issue = Vec::new();
        let mut new_payment_ids = Vec::new();
        for (c, decision) in kept.iter().zip(kept_decisions) {
            if !new_ids.contains(c.payment_id()) {
                let stored: Option<String> = payments::Entity::find_by_id(c.payment_id())
                    .select_only()
                    .column(payments::Column::ContentHash)
                    .into_tuple()
                    .one(&txn)
                    .await?;
                if stored.as_deref() == Some(c.hash.as_str()) {
                    work.outcome.duplicates += 1;
                } else {
                    self.record_conflict(&txn, &mut work, c, now).await?;
                }
                continue;
            }
            new_payment_ids.push(c.payment_id().to_string());
            self.apply_decision(loaded, c, decision, now, &mut to_issue, &mut work)?;
        }
        self.number_and_insert(&txn, loaded, to_issue, now, &mut work).await.map_err(|e| match e {
            IssueError::Blocked(ids, reason) => {
                IssueError::Culprits(ids.into_iter().map(|id| Culprit::Payment(id, reason.clone())).collect())
            }
            other => other,
        })?;

        if !new_payment_ids.is_empty() {
            // Refunds that arrived before their payment (earlier batches) apply now.
            self.apply_pending_refunds(&txn, loaded, &new_payment_ids, now, &mut work).await?;
            // A payment parked earlier and now recorded through a redelivery is resolved.
            let subjects = new_payment_ids.iter().map(|id| feepay_runtime::ids::subject::payment(id)).collect();
            parking::resolve_subjects(&txn, crate::metrics::SERVICE, subjects, self.clock.now()).await?;
        }
        self.commit(txn, work.outbox).await?;
        work.tally.emit(self, &work.outcome);
        Ok(Processed { outcome: work.outcome, parked })
    }

    /// Payments to be issued that no usable signer can sign, with the reason; a payment
    /// already recorded (a redelivery) is not among them: it is a duplicate.
    async fn unsignable(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        candidates: &[Candidate],
        decisions: &[Decision],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, ParkReason)>, IssueError> {
        let mut blocked = Vec::new();
        for (c, d) in candidates.iter().zip(decisions) {
            if let Decision::Issue { receipts, .. } = d {
                if let Some(reason) = receipts.iter().find_map(|r| self.signer_for(loaded, r.signer(), now).err()) {
                    blocked.push((c.payment_id().to_string(), reason));
                }
            }
        }
        if blocked.is_empty() {
            return Ok(blocked);
        }
        let ids: Vec<String> = blocked.iter().map(|(id, _)| id.clone()).collect();
        let recorded: BTreeSet<String> = payments::Entity::find()
            .select_only()
            .column(payments::Column::PaymentId)
            .filter(feepay_runtime::sql::any_of(payments::Column::PaymentId, ids))
            .into_tuple::<String>()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        blocked.retain(|(id, _)| !recorded.contains(id));
        Ok(blocked)
    }

    /// A payment id seen again with different content: the first version stands, the
    /// conflict is counted on the stored payment and reported.
    pub(super) async fn record_conflict(
        &self,
        txn: &DatabaseTransaction,
        work: &mut Work,
        c: &Candidate,
        now: DateTime<Utc>,
    ) -> Result<(), IssueError> {
        work.outcome.conflicts += 1;
        work.tally.push(Fact::Conflict { kind: "payment" });
        payments::Entity::update_many()
            .col_expr(payments::Column::Conflicts, Expr::col(payments::Column::Conflicts).add(1))
            .filter(payments::Column::PaymentId.eq(c.payment_id()))
            .exec(txn)
            .await?;
        self.reject_event(
            work,
            c.payment_id(),
            "",
            c.agency_code(),
            c.dossier_code(),
            Rejection::ConflictingDuplicate,
            &format!(
                "payment {} was already received with different content; the first version stands",
                c.payment_id()
            ),
            &format!("conflict:{}", &c.hash[..16]),
            now,
        );
        Ok(())
    }

    async fn insert_payments(
        &self,
        txn: &DatabaseTransaction,
        candidates: &[Candidate],
        decisions: &[Decision],
        now: DateTime<Utc>,
    ) -> Result<BTreeSet<String>, DbErr> {
        const COLS: usize = 12;
        let mut inserted = BTreeSet::new();
        let rows: Vec<(usize, &Candidate)> = candidates.iter().enumerate().collect();
        for chunk in rows.chunks(rows_per_statement(COLS)) {
            let models = chunk.iter().map(|(i, c)| {
                let (status, reason, detail, waived) = match &decisions[*i] {
                    Decision::Issue { waived, .. } => (payments::Status::Issued, None, None, waived.clone()),
                    Decision::FullyWaived { waived } => (payments::Status::Waived, None, None, waived.clone()),
                    Decision::Reject { reason, detail } => {
                        (payments::Status::Rejected, Some(reason.code().to_string()), Some(detail.clone()), Vec::new())
                    }
                };
                let waived_lines = if waived.is_empty() {
                    None
                } else {
                    Some(
                        serde_json::to_value(waived.iter().map(assessed_line_pb).collect::<Vec<_>>())
                            .unwrap_or_default(),
                    )
                };
                let (provider, total_paid, paid_at) = match &c.kind {
                    CandidateKind::Valid(p) => (p.provider.clone(), p.total_paid.dong(), p.paid_at),
                    CandidateKind::OverLimit(b) => {
                        (b.provider.clone(), b.total_paid.map_or(0, |t| t.dong()), b.paid_at.unwrap_or(now))
                    }
                };
                payments::ActiveModel {
                    payment_id: Set(c.payment_id().to_string()),
                    content_hash: Set(c.hash.clone()),
                    agency_code: Set(c.agency_code().to_string()),
                    dossier_code: Set(c.dossier_code().to_string()),
                    provider: Set(provider),
                    total_paid: Set(total_paid),
                    paid_at: Set(paid_at),
                    status: Set(status),
                    reason: Set(reason),
                    detail: Set(detail),
                    waived_lines: Set(waived_lines),
                    processed_at: Set(now),
                    ..Default::default()
                }
            });
            // A payment id already recorded is left alone: it is a redelivery or a conflict,
            // which the caller tells apart by the stored content hash.
            let new = payments::Entity::insert_many(models)
                .on_conflict(OnConflict::column(payments::Column::PaymentId).do_nothing().to_owned())
                .do_nothing()
                .exec_with_returning_keys(txn)
                .await?;
            if let TryInsertResult::Inserted(ids) = new {
                inserted.extend(ids);
            }
        }
        Ok(inserted)
    }

    fn apply_decision(
        &self,
        loaded: &LoadedReference,
        c: &Candidate,
        decision: Decision,
        now: DateTime<Utc>,
        to_issue: &mut Vec<ToIssue>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        // Agencies as named on the day of issue.
        let on = feepay_domain::numbering::date_gmt7(now);
        let agency = |code: &str| super::tax::agency_info(&loaded.reference, code, on);
        match decision {
            Decision::Reject { reason, detail } => {
                work.outcome.payments_rejected += 1;
                work.tally.push(Fact::Rejected {
                    reason: reason.code(),
                    payment_id: c.payment_id().to_string(),
                    detail: detail.clone(),
                });
                self.reject_event(
                    work,
                    c.payment_id(),
                    "",
                    c.agency_code(),
                    c.dossier_code(),
                    reason,
                    &detail,
                    "payment",
                    now,
                );
            }
            Decision::FullyWaived { waived } => {
                let CandidateKind::Valid(p) = &c.kind else { unreachable!("only valid payments are waived") };
                work.outcome.payments_waived += 1;
                work.tally.waivers(&p.agency_code, &waived);
                let agency = agency(&p.agency_code).ok_or_else(|| IssueError::Reference("agency vanished".into()))?;
                self.waiver_notice(work, p, &agency, &waived, now);
            }
            Decision::Issue { receipts, waived } => {
                let CandidateKind::Valid(p) = &c.kind else { unreachable!("only valid payments are issued") };
                work.outcome.payments_issued += 1;
                let paying = agency(&p.agency_code).ok_or_else(|| IssueError::Reference("agency vanished".into()))?;
                if !waived.is_empty() {
                    work.tally.waivers(&p.agency_code, &waived);
                    self.waiver_notice(work, p, &paying, &waived, now);
                }
                let payer_pb = payer_pb(&p.payer);
                for draft in receipts {
                    work.tally.waivers(&p.agency_code, &draft.lines);
                    let key = format!(
                        "{}|{}|{}|{}|{}",
                        p.payment_id,
                        draft.series.agency,
                        draft.series.template,
                        draft.series.letters,
                        draft.kind.code()
                    );
                    // The collector named on the receipt: the body the fee's text names
                    // (or the paying agency itself).
                    let collector = agency(&draft.series.agency)
                        .ok_or_else(|| IssueError::Reference("collector vanished".into()))?;
                    let delegate = match &draft.delegate {
                        Some(code) => {
                            Some(agency(code).ok_or_else(|| IssueError::Reference("delegate vanished".into()))?)
                        }
                        None => None,
                    };
                    to_issue.push(ToIssue {
                        receipt_id: Uuid::new_v5(&RECEIPT_NS, key.as_bytes()),
                        payment_id: p.payment_id.clone(),
                        agency: collector,
                        series: draft.series,
                        delegate,
                        range: draft.range,
                        payer: p.payer.info(),
                        payer_pb: payer_pb.clone(),
                        dossier_code: p.dossier_code.clone(),
                        procedure_code: p.procedure_code.clone(),
                        lines: draft.lines,
                        total: draft.total,
                        payment_method: p.payment_method,
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
}
