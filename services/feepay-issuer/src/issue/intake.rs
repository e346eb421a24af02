//! Batch intake: a batch's payments are split by agency into up to `workers` groups, each
//! one transaction run as its own task (a series belongs to one agency, so the groups lock
//! disjoint counters and each hash chain stays sequential); conflicting duplicates and the
//! batch's refunds follow in one more transaction once the payments committed.
//!
//! An event that fails on its own (see [`super::Culprit`]) is left out: its group's
//! transaction rolls back and runs again without it, and the caller parks it.

use super::payments::Candidate;
use super::{BatchOutcome, Culprit, Incoming, IssueError, Issuer, Work};
use chrono::{DateTime, Utc};
use feepay_runtime::parking::ParkReason;
use feepay_runtime::refdata::LoadedReference;
use sea_orm::TransactionTrait;
use std::collections::HashMap;
use std::sync::Arc;

/// What a batch did, and which of its events (by index) failed on their own and were left
/// out: the caller parks them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    pub outcome: BatchOutcome,
    pub parked: Vec<(usize, ParkReason)>,
}

/// The group (transaction) a payment of this agency goes to.
fn group_of(agency: &str, groups: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    agency.hash(&mut h);
    (h.finish() % groups.max(1) as u64) as usize
}

impl Issuer {
    /// Processes a batch. On error the caller retries the same batch: what already
    /// committed is found again and counted as a duplicate, so a retry never issues twice.
    pub async fn process(self: &Arc<Self>, items: &[Incoming]) -> Result<Processed, IssueError> {
        self.refresh_signers().await?;
        let loaded = self.reference().await?;
        let now = self.clock.now();
        let mut processed = Processed::default();

        // The first occurrence of a payment id in the batch is the candidate; an identical
        // repeat is a duplicate, a different one a conflict (after the first is stored).
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let mut groups: Vec<Vec<Candidate>> = vec![Vec::new(); self.workers];
        let mut in_batch_conflicts: Vec<Candidate> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let Some(candidate) = Candidate::of(index, item) else { continue };
            match seen.get(candidate.payment_id()) {
                None => {
                    let (id, hash) = match item {
                        Incoming::Payment { payment, hash } => (payment.payment_id.as_str(), hash.as_str()),
                        Incoming::OverLimit { breach, hash } => (breach.payment_id.as_str(), hash.as_str()),
                        _ => unreachable!("candidates are payments"),
                    };
                    seen.insert(id, hash);
                    groups[group_of(candidate.agency_code(), self.workers)].push(candidate);
                }
                Some(h) if *h == candidate.hash => processed.outcome.duplicates += 1,
                Some(_) => in_batch_conflicts.push(candidate),
            }
        }
        let in_batch_duplicates = processed.outcome.duplicates;
        // Tasks, not just futures: signing is CPU work, and each group's can run on its own core.
        let tasks: Vec<_> = groups
            .into_iter()
            .filter(|g| !g.is_empty())
            .map(|g| {
                let (issuer, loaded) = (self.clone(), loaded.clone());
                tokio::spawn(async move { issuer.run_group(&loaded, g, now).await })
            })
            .collect();
        // Every group runs to its end (commit or rollback) before the batch is answered.
        let mut failure = None;
        for done in futures::future::join_all(tasks).await {
            match done.map_err(|e| IssueError::Worker(e.to_string())).and_then(|r| r) {
                Ok(p) => {
                    processed.outcome.add(&p.outcome);
                    processed.parked.extend(p.parked);
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }

        let refunds: Vec<(usize, &Incoming)> = items
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i, Incoming::Refund { .. } | Incoming::RefundOverLimit { .. }))
            .collect();
        if !in_batch_conflicts.is_empty() || !refunds.is_empty() {
            let p = self.run_refunds(&loaded, &in_batch_conflicts, refunds, now).await?;
            processed.outcome.add(&p.outcome);
            processed.parked.extend(p.parked);
        }
        if in_batch_duplicates > 0 {
            self.metrics
                .consumer
                .processed
                .with_label_values(&[&self.topics.payments_succeeded, "duplicate"])
                .inc_by(in_batch_duplicates as u64);
        }
        Ok(processed)
    }

    /// One group's payments, again without the culprits until it commits.
    async fn run_group(
        &self,
        loaded: &LoadedReference,
        mut candidates: Vec<Candidate>,
        now: DateTime<Utc>,
    ) -> Result<Processed, IssueError> {
        let mut parked = Vec::new();
        loop {
            match self.process_payments(loaded, &candidates, now).await {
                Ok(mut done) => {
                    done.parked.extend(parked);
                    return Ok(done);
                }
                Err(IssueError::Culprits(culprits)) => {
                    for c in culprits {
                        match c {
                            Culprit::Payment(id, reason) => {
                                let at = candidates.iter().position(|c| c.payment_id() == id).ok_or_else(|| {
                                    IssueError::Worker(format!("payment {id} blamed but not in its group"))
                                })?;
                                parked.push((candidates.remove(at).index, reason));
                            }
                            Culprit::StoredRefund(id, reason) => self.park_stored_refund(&id, &reason).await?,
                            Culprit::Refund(id, _) => {
                                return Err(IssueError::Worker(format!("refund {id} blamed in a payment group")))
                            }
                        }
                    }
                    if candidates.is_empty() {
                        return Ok(Processed { outcome: BatchOutcome::default(), parked });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// In-batch conflicts and the batch's refunds in one transaction, again without the
    /// culprits until it commits.
    async fn run_refunds(
        &self,
        loaded: &LoadedReference,
        conflicts: &[Candidate],
        mut refunds: Vec<(usize, &Incoming)>,
        now: DateTime<Utc>,
    ) -> Result<Processed, IssueError> {
        let mut parked = Vec::new();
        loop {
            let txn = self.db.begin().await?;
            let mut work = Work::default();
            let attempt: Result<(), IssueError> = async {
                for c in conflicts {
                    self.record_conflict(&txn, &mut work, c, now).await?;
                }
                self.apply_batch_refunds(&txn, loaded, &refunds, now, &mut work).await
            }
            .await;
            match attempt {
                Ok(()) => {
                    self.commit(txn, work.outbox).await?;
                    work.tally.emit(self, &work.outcome);
                    return Ok(Processed { outcome: work.outcome, parked });
                }
                Err(IssueError::Culprits(culprits)) => {
                    drop(txn);
                    for c in culprits {
                        match c {
                            Culprit::Refund(id, reason) => {
                                let at = refunds
                                    .iter()
                                    .position(
                                        |(_, r)| matches!(r, Incoming::Refund { refund, .. } if refund.refund_id == id),
                                    )
                                    .ok_or_else(|| {
                                        IssueError::Worker(format!("refund {id} blamed but not in the batch"))
                                    })?;
                                parked.push((refunds.remove(at).0, reason));
                            }
                            Culprit::StoredRefund(id, reason) => self.park_stored_refund(&id, &reason).await?,
                            Culprit::Payment(id, _) => {
                                return Err(IssueError::Worker(format!("payment {id} blamed among refunds")))
                            }
                        }
                    }
                    if refunds.is_empty() && conflicts.is_empty() {
                        return Ok(Processed { outcome: BatchOutcome::default(), parked });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Inserts the transaction's events into the outbox and commits.
    pub(super) async fn commit(
        &self,
        txn: sea_orm::DatabaseTransaction,
        outbox: Vec<feepay_runtime::outbox::OutboxEvent>,
    ) -> Result<(), IssueError> {
        feepay_runtime::outbox::insert(&txn, crate::metrics::SERVICE, outbox).await?;
        txn.commit().await?;
        Ok(())
    }
}
