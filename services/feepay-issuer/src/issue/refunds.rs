//! Refunds (the allocation rule and why is `feepay_domain::refund`): since 1 July 2026 a
//! refund is recorded against the receipts it falls on, which stay as they are, and a
//! `RefundRecorded` event tells the centre and the payer; under the rules before, it
//! cancelled the receipts it touched and, for a partial refund, replaced them for what
//! remained. A refund for a payment not seen yet is stored and applied when the payment
//! comes.
//!
//! Failures of a refund's own (its payment's stored receipt does not decode, its series
//! left the reference data, the replacement cannot be numbered or signed) blame the
//! refund: it is parked and the rest goes on.

use super::numbering::ToIssue;
use super::tally::Fact;
use super::{Culprit, Incoming, IssueError, Issuer, Work, RECEIPT_NS};
use crate::store::{payments, receipts, refunds};
use chrono::{DateTime, Utc};
use feepay_domain::money::Vnd;
use feepay_domain::payment::Rejection;
use feepay_domain::receipt::{AgencyInfo, Replaces};
use feepay_domain::waiver::LineAssessment;
use feepay_proto::v1;
use feepay_proto::Message;
use feepay_runtime::convert::{ts, Refund};
use feepay_runtime::ids::subject;
use feepay_runtime::parking::{self, ParkReason};
use feepay_runtime::refdata::LoadedReference;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveEnum, ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

/// A receipt row to cancel.
#[derive(Debug, Clone)]
pub(super) struct Cancellation {
    pub receipt: v1::Receipt,
    pub reason: String,
    pub refund_id: String,
    pub replaced_by: Option<Uuid>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> IssueError {
    IssueError::Permanent(ParkReason::new("stored_row_corrupt", format!("stored {what} does not decode: {e}")))
}

/// A stored receipt's protobuf.
pub(super) fn decode_receipt(bytes: &[u8]) -> Result<v1::Receipt, IssueError> {
    v1::Receipt::decode(bytes).map_err(|e| corrupt("receipt", e))
}

/// A stored receipt line back into the domain (through the runtime's `convert`, the one
/// wire → domain module).
pub(super) fn line_from_pb(l: &v1::AssessedLine) -> Result<LineAssessment, IssueError> {
    feepay_runtime::convert::stored_line(l).map_err(|e| corrupt("receipt", e))
}

/// A receipt replacing `original` (same payment, agency, series and dossier) with the given
/// payer and lines: used by partial refunds and by operators' corrections.
pub(super) fn replacement_of(
    loaded: &LoadedReference,
    original: &v1::Receipt,
    receipt_id: Uuid,
    payer: v1::Payer,
    lines: Vec<LineAssessment>,
    total: Vnd,
) -> Result<ToIssue, IssueError> {
    let agency = original.agency.clone().unwrap_or_default();
    let issued_on = feepay_runtime::convert::from_ts(original.issued_at.as_ref())
        .map(feepay_domain::numbering::date_gmt7)
        .unwrap_or_default();
    let reference = &loaded.reference;
    // The series whose symbol of that day the receipt bears; a receipt that bears a symbol
    // of another shape (issued on the old rules' symbol after they ended) belongs to the
    // collector's only series of its template.
    let series = reference
        .series_of_receipt(&agency.code, &original.template_symbol, &original.receipt_symbol, issued_on)
        .or_else(|| {
            let mut of_template =
                reference.series.iter().filter(|s| s.agency == agency.code && s.template == original.template_symbol);
            match (of_template.next(), of_template.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        })
        .cloned()
        .ok_or_else(|| {
            IssueError::Permanent(ParkReason::new(
                "series_unknown",
                format!(
                    "series {} {} of receipt {} is no longer in the reference data; restore it (or load data naming the series that replaces it) and retry",
                    original.template_symbol, original.receipt_symbol, original.number
                ),
            ))
        })?;
    // Numbered as the original was: by the same delegate in its range, or in the
    // collector's own numbers.
    let delegate = original.delegate.clone().filter(|d| !d.code.is_empty());
    let range = series.range_for(delegate.as_ref().map(|d| d.code.as_str())).ok_or_else(|| {
        IssueError::Permanent(ParkReason::new(
            "series_unknown",
            format!(
                "series {} {} has no number range for {}; restore the delegation (or the collector's own numbers) and retry",
                series.template,
                series.letters,
                delegate.as_ref().map_or(series.agency.as_str(), |d| d.code.as_str())
            ),
        ))
    })?;
    Ok(ToIssue {
        receipt_id,
        payment_id: original.payment_id.clone(),
        agency: AgencyInfo { code: agency.code, name: agency.name, tax_code: agency.tax_code, address: agency.address },
        series,
        // A replacement is issued as the original was: by the same delegate, if any, with
        // the names printed on it.
        delegate: delegate.map(|d| AgencyInfo { code: d.code, name: d.name, tax_code: d.tax_code, address: d.address }),
        range,
        payer: feepay_runtime::convert::stored_payer_info(&payer),
        payer_pb: payer,
        dossier_code: original.dossier_code.clone(),
        procedure_code: original.procedure_code.clone(),
        lines,
        total,
        payment_method: feepay_runtime::convert::payment_method(original.payment_method, true),
        provider: original.provider.clone(),
        provider_reference: original.provider_reference.clone(),
        replaces: Some(Replaces {
            receipt_id: original.receipt_id.clone(),
            template: original.template_symbol.clone(),
            symbol: original.receipt_symbol.clone(),
            number: original.number.clone(),
            issued_on: feepay_runtime::convert::from_ts(original.issued_at.as_ref())
                .map(|t| t.with_timezone(&feepay_domain::numbering::gmt7()).date_naive()),
        }),
        paid_at: None,
    })
}

impl Issuer {
    /// The batch's refunds: each recorded once (`refunds`, keyed by refund id), then applied
    /// or kept pending for its payment. A refund seen again with other content is a
    /// conflict, reported; a refund parked earlier and delivered again is applied again.
    pub(super) async fn apply_batch_refunds(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        refunds: &[(usize, &Incoming)],
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let mut applicable = Vec::new();
        for (_, item) in refunds {
            let (refund_id, payment_id, raw, hash, over_limit) = match item {
                Incoming::Refund { refund, raw, hash } => (&refund.refund_id, &refund.payment_id, raw, hash, None),
                Incoming::RefundOverLimit { refund_id, payment_id, detail, raw, hash } => {
                    (refund_id, payment_id, raw, hash, Some(detail))
                }
                _ => continue,
            };
            let (status, detail) = match over_limit {
                None => (refunds::Status::Pending, None),
                Some(d) => (refunds::Status::Rejected, Some(d.clone())),
            };
            let row = refunds::ActiveModel {
                refund_id: Set(refund_id.clone()),
                payment_id: Set(payment_id.clone()),
                content_hash: Set(hash.clone()),
                status: Set(status),
                refund_pb: Set(raw.encode_to_vec()),
                detail: Set(detail),
                ..Default::default()
            };
            let new = matches!(
                refunds::Entity::insert(row)
                    .on_conflict(OnConflict::column(refunds::Column::RefundId).do_nothing().to_owned())
                    .do_nothing()
                    .exec_without_returning(txn)
                    .await?,
                TryInsertResult::Inserted(1)
            );
            if new {
                match (item, over_limit) {
                    (Incoming::Refund { refund, .. }, None) => applicable.push(refund),
                    (_, Some(detail)) => {
                        work.outcome.refunds_rejected += 1;
                        self.reject_refund(work, payment_id, refund_id, Rejection::LimitExceeded, detail, now);
                    }
                    _ => {}
                }
                continue;
            }
            let stored: Option<(String, refunds::Status)> = refunds::Entity::find_by_id(refund_id.as_str())
                .select_only()
                .columns([refunds::Column::ContentHash, refunds::Column::Status])
                .into_tuple()
                .one(txn)
                .await?;
            let (stored_hash, stored_status) = stored.unzip();
            if stored_hash.as_ref() != Some(hash) {
                work.outcome.conflicts += 1;
                work.tally.push(Fact::Conflict { kind: "refund" });
                let detail =
                    format!("refund {refund_id} was already received with different content; the first version stands");
                self.reject_refund(work, payment_id, refund_id, Rejection::ConflictingDuplicate, &detail, now);
            } else if stored_status == Some(refunds::Status::Parked) {
                // Parked earlier and now retried (or redelivered): apply it again.
                if let Incoming::Refund { refund, .. } = item {
                    self.set_refund(txn, refund_id, refunds::Status::Pending, None, now).await?;
                    applicable.push(refund);
                }
            } else {
                work.outcome.duplicates += 1;
            }
        }
        for refund in applicable {
            self.apply_refund(txn, loaded, refund, now, work)
                .await
                .map_err(|e| e.blame(|reason| Culprit::Refund(refund.refund_id.clone(), reason)))?;
        }
        Ok(())
    }

    /// Refunds that arrived before these payments (earlier batches) apply now.
    /// Counts the refunds still waiting for their payment, and the age of the oldest (a
    /// refund whose payment never arrives would otherwise wait unseen).
    pub async fn observe_waiting_refunds(&self) -> Result<(), IssueError> {
        let (n, oldest): (i64, Option<DateTime<Utc>>) = refunds::Entity::find()
            .select_only()
            .column_as(refunds::Column::RefundId.count(), "n")
            .column_as(refunds::Column::ReceivedAt.min(), "oldest")
            .filter(feepay_runtime::sql::equals_constant(refunds::Column::Status, "pending"))
            .into_tuple()
            .one(&self.db)
            .await?
            .unwrap_or((0, None));
        let age = oldest.map_or(0, |t| (self.clock.now() - t).num_seconds().max(0));
        self.metrics.refunds_waiting.set(n);
        self.metrics.refunds_waiting_oldest.set(age);
        Ok(())
    }

    pub(super) async fn apply_pending_refunds(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        payment_ids: &[String],
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let rows: Vec<(String, Vec<u8>)> = refunds::Entity::find()
            .select_only()
            .columns([refunds::Column::RefundId, refunds::Column::RefundPb])
            // The constant lets PostgreSQL use the partial index `refunds_pending`.
            .filter(feepay_runtime::sql::equals_constant(refunds::Column::Status, "pending"))
            .filter(feepay_runtime::sql::any_of(refunds::Column::PaymentId, payment_ids.to_vec()))
            .order_by_asc(refunds::Column::ReceivedAt)
            .into_tuple()
            .all(txn)
            .await?;
        for (refund_id, bytes) in rows {
            let blame = |reason| Culprit::StoredRefund(refund_id.clone(), reason);
            let refund = v1::PaymentRefunded::decode(bytes.as_slice())
                .map_err(|e| corrupt("refund", e))
                .and_then(|raw| match feepay_runtime::convert::parse_refund(&raw) {
                    Ok(feepay_runtime::convert::ParsedRefund::Valid(r)) => Ok(r),
                    Ok(feepay_runtime::convert::ParsedRefund::OverLimit { detail, .. }) => {
                        Err(corrupt("refund", detail))
                    }
                    Err(e) => Err(corrupt("refund", e)),
                })
                .map_err(|e| e.blame(blame))?;
            self.apply_refund(txn, loaded, &refund, now, work).await.map_err(|e| e.blame(blame))?;
        }
        Ok(())
    }

    /// Parks a stored refund that fails on its own: the refund row says `parked`, and the
    /// parked event holds the refund so an operator's retry applies it again.
    pub(super) async fn park_stored_refund(&self, refund_id: &str, reason: &ParkReason) -> Result<(), IssueError> {
        let txn = self.db.begin().await?;
        let parked = refunds::Entity::update_many()
            .col_expr(refunds::Column::Status, Expr::value(refunds::Status::Parked))
            .col_expr(refunds::Column::Detail, Expr::value(reason.detail.clone()))
            .filter(refunds::Column::RefundId.eq(refund_id))
            .filter(refunds::Column::Status.eq(refunds::Status::Pending))
            .exec_with_returning(&txn)
            .await?;
        if let Some(row) = parked.into_iter().next() {
            let event = parking::NewParked {
                service: crate::metrics::SERVICE.to_string(),
                topic: self.topics.payments_refunded.clone(),
                partition: -1,
                offset: -1,
                key: row.payment_id.into_bytes(),
                headers: vec![
                    ("ce_type".into(), <v1::PaymentRefunded as feepay_proto::EventType>::TYPE.as_bytes().to_vec()),
                    ("content-type".into(), b"application/protobuf".to_vec()),
                ],
                payload: row.refund_pb,
                subject: subject::refund(refund_id),
                agency: None,
            };
            parking::park(&txn, &event, reason, self.clock.now()).await?;
            tracing::warn!(refund_id, reason = reason.code, detail = %reason.detail, "stored refund parked");
            self.metrics.consumer.parked.with_label_values(&[&self.topics.payments_refunded, reason.code]).inc();
        }
        txn.commit().await?;
        Ok(())
    }

    fn reject_refund(
        &self,
        work: &mut Work,
        payment_id: &str,
        refund_id: &str,
        reason: Rejection,
        detail: &str,
        now: DateTime<Utc>,
    ) {
        work.tally.push(Fact::Rejected {
            reason: reason.code(),
            payment_id: payment_id.to_string(),
            detail: detail.to_string(),
        });
        self.reject_event(work, payment_id, refund_id, "", "", reason, detail, &format!("refund:{refund_id}"), now);
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
        let payment: Option<(payments::Status, String, String)> =
            payments::Entity::find_by_id(refund.payment_id.as_str())
                .select_only()
                .columns([payments::Column::Status, payments::Column::AgencyCode, payments::Column::DossierCode])
                .into_tuple()
                .one(txn)
                .await?;
        let Some((status, agency, dossier)) = payment else {
            work.outcome.refunds_pending += 1;
            tracing::info!(payment_id = %refund.payment_id, refund_id = %refund.refund_id, "refund waits for its payment");
            return Ok(());
        };
        let reject = |work: &mut Work, detail: String| {
            work.outcome.refunds_rejected += 1;
            work.tally.push(Fact::Rejected {
                reason: Rejection::InvalidRefund.code(),
                payment_id: refund.payment_id.clone(),
                detail: detail.clone(),
            });
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
        if status != payments::Status::Issued {
            let detail = reject(
                work,
                format!("payment {} has no receipt ({}); nothing to refund", refund.payment_id, status.to_value()),
            );
            self.set_refund(txn, &refund.refund_id, refunds::Status::Rejected, Some(&detail), now).await?;
            return Ok(());
        }
        let rows: Vec<Vec<u8>> = receipts::Entity::find()
            .select_only()
            .column(receipts::Column::ReceiptPb)
            .filter(receipts::Column::PaymentId.eq(refund.payment_id.as_str()))
            .filter(receipts::Column::Status.eq(receipts::Status::Issued))
            .order_by_asc(receipts::Column::IssuedAt)
            .order_by_asc(receipts::Column::Number)
            .lock_exclusive()
            .into_tuple()
            .all(txn)
            .await?;
        let mut receipts: Vec<v1::Receipt> = Vec::with_capacity(rows.len());
        for bytes in rows {
            receipts.push(decode_receipt(&bytes)?);
        }
        if receipts.is_empty() {
            let detail = reject(work, format!("payment {} has no valid receipt left to cancel", refund.payment_id));
            self.set_refund(txn, &refund.refund_id, refunds::Status::Rejected, Some(&detail), now).await?;
            return Ok(());
        }
        let mut collected: Vec<Vec<LineAssessment>> = Vec::with_capacity(receipts.len());
        for r in &receipts {
            collected.push(r.lines.iter().map(line_from_pb).collect::<Result<_, _>>()?);
        }
        let allocation = match feepay_domain::refund::allocate(&collected, &refund.lines) {
            Ok(a) => a,
            Err(over) => {
                let detail = reject(work, over.to_string());
                self.set_refund(txn, &refund.refund_id, refunds::Status::Rejected, Some(&detail), now).await?;
                return Ok(());
            }
        };
        // The rules of the receipts' forms today: no cancellation since 1 July 2026.
        let today = feepay_domain::numbering::date_gmt7(now);
        let may_cancel = receipts.iter().all(|r| {
            loaded
                .reference
                .form_on(&r.template_symbol, today)
                .is_some_and(|f| f.errors == feepay_domain::forms::ErrorRule::CancelOrReplace)
        });
        if !may_cancel {
            self.record_refund(txn, refund, &receipts, &allocation, now, work).await?;
            parking::resolve_subjects(
                txn,
                crate::metrics::SERVICE,
                vec![subject::refund(&refund.refund_id)],
                self.clock.now(),
            )
            .await?;
            work.outcome.refunds_applied += 1;
            return Ok(());
        }
        let mut replacements = Vec::new();
        let mut cancellations = Vec::new();
        for &ri in &allocation.touched {
            let original = &receipts[ri];
            let total = allocation.left_on(ri);
            let mut replaced_by = None;
            if total > Vnd::ZERO {
                let id = Uuid::new_v5(
                    &RECEIPT_NS,
                    format!("replace|{}|{}", original.receipt_id, refund.refund_id).as_bytes(),
                );
                replaced_by = Some(id);
                let payer = original.payer.clone().unwrap_or_default();
                let remaining = allocation.remaining[ri].clone();
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
            self.cancel(txn, loaded, c, now, work).await?;
        }
        self.number_and_insert(txn, loaded, replacements, now, work).await?;
        self.set_refund(txn, &refund.refund_id, refunds::Status::Applied, None, now).await?;
        parking::resolve_subjects(
            txn,
            crate::metrics::SERVICE,
            vec![subject::refund(&refund.refund_id)],
            self.clock.now(),
        )
        .await?;
        work.outcome.refunds_applied += 1;
        Ok(())
    }

    /// Records a refund against the receipts it falls on (they stay as they are) and tells
    /// of it.
    async fn record_refund(
        &self,
        txn: &DatabaseTransaction,
        refund: &Refund,
        receipts: &[v1::Receipt],
        allocation: &feepay_domain::refund::Allocation,
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let mut json = Vec::new();
        let mut on_receipts = Vec::new();
        let mut total = Vnd::ZERO;
        for &ri in &allocation.touched {
            let r = &receipts[ri];
            let mut lines = Vec::new();
            for (fee, amount) in &allocation.refunded[ri] {
                json.push(serde_json::json!({"receipt_id": r.receipt_id, "fee_code": fee, "amount": amount.dong()}));
                lines.push(v1::RefundedLine { fee_code: fee.clone(), amount: amount.to_string() });
                total = total + *amount;
            }
            on_receipts.push(v1::RefundedOnReceipt {
                receipt: Some(v1::ReceiptReference {
                    receipt_id: r.receipt_id.clone(),
                    template_symbol: r.template_symbol.clone(),
                    receipt_symbol: r.receipt_symbol.clone(),
                    number: r.number.clone(),
                    issued_on: feepay_runtime::convert::from_ts(r.issued_at.as_ref())
                        .map(|t| feepay_domain::numbering::date_gmt7(t).to_string())
                        .unwrap_or_default(),
                }),
                lines,
            });
        }
        refunds::Entity::update_many()
            .col_expr(refunds::Column::Status, Expr::value(refunds::Status::Applied))
            .col_expr(refunds::Column::Detail, Expr::value(Option::<String>::None))
            .col_expr(refunds::Column::AppliedAt, Expr::value(now))
            .col_expr(refunds::Column::Allocation, Expr::value(serde_json::Value::Array(json)))
            .filter(refunds::Column::RefundId.eq(refund.refund_id.as_str()))
            .exec(txn)
            .await?;
        let first = &receipts[*allocation.touched.first().unwrap_or(&0)];
        self.refund_recorded_event(
            work,
            v1::RefundRecorded {
                refund_id: refund.refund_id.clone(),
                payment_id: refund.payment_id.clone(),
                agency: first.agency.clone(),
                payer: first.payer.clone(),
                receipts: on_receipts,
                total: total.to_string(),
                reason: refund.reason.clone(),
                recorded_at: Some(ts(now)),
            },
        );
        tracing::info!(refund_id = %refund.refund_id, payment_id = %refund.payment_id, total = total.dong(), "refund recorded on its receipts");
        Ok(())
    }

    pub(super) async fn set_refund(
        &self,
        txn: &DatabaseTransaction,
        refund_id: &str,
        status: refunds::Status,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        refunds::Entity::update_many()
            .col_expr(refunds::Column::Status, Expr::value(status))
            .col_expr(refunds::Column::Detail, Expr::value(detail.map(str::to_string)))
            .col_expr(refunds::Column::AppliedAt, Expr::value(now))
            .filter(refunds::Column::RefundId.eq(refund_id))
            .exec(txn)
            .await
            .map(|_| ())
    }

    /// Marks a receipt cancelled (it keeps its number), emits the event, and signs the
    /// notice to the tax authority that it was issued in error (04/SS-CTĐT). Only under
    /// the rules before 1 July 2026 (a form version with `errors = cancel_or_replace`).
    pub(super) async fn cancel(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        c: &Cancellation,
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let id: Uuid = c.receipt.receipt_id.parse().map_err(|e| corrupt("receipt id", e))?;
        let mut receipt = c.receipt.clone();
        receipt.status = v1::ReceiptStatus::Cancelled as i32;
        receipts::Entity::update_many()
            .col_expr(receipts::Column::Status, Expr::value(receipts::Status::Cancelled))
            .col_expr(receipts::Column::CancelledAt, Expr::value(now))
            .col_expr(receipts::Column::CancelReason, Expr::value(c.reason.clone()))
            .col_expr(receipts::Column::ReplacedBy, Expr::value(c.replaced_by))
            .col_expr(receipts::Column::ReceiptPb, Expr::value(receipt.encode_to_vec()))
            .filter(receipts::Column::ReceiptId.eq(id))
            .filter(receipts::Column::Status.eq(receipts::Status::Issued))
            .exec(txn)
            .await?;
        work.tally.push(Fact::Cancelled {
            agency: receipt.agency.as_ref().map(|a| a.code.clone()).unwrap_or_default(),
            series: super::numbering::series_label(&receipt.template_symbol, &receipt.receipt_symbol),
            payment_id: receipt.payment_id.clone(),
            number: receipt.number.clone(),
        });
        let event = v1::ReceiptCancelled {
            receipt: Some(receipt),
            reason: c.reason.clone(),
            cancelled_at: Some(ts(now)),
            replaced_by_receipt_id: c.replaced_by.map(|u| u.to_string()).unwrap_or_default(),
            refund_id: c.refund_id.clone(),
        };
        self.receipt_cancelled_event(work, id, event);
        let key = format!("error_notice|{}||{}", super::tax::sender_of(&c.receipt).code, c.receipt.receipt_id);
        self.error_notice(
            txn,
            loaded,
            &c.receipt,
            feepay_domain::tax::NoticeKind::Cancellation,
            &c.reason,
            &key,
            now,
            work,
        )
        .await?;
        work.outcome.receipts_cancelled += 1;
        Ok(())
    }
}
