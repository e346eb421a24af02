//! Operators' corrections: cancel a receipt, or cancel it and issue a replacement with
//! corrected payer details (same lines, same amount, next number of the series), in one
//! transaction through the same cancellation and numbering steps as refunds, with the
//! audit entry in that transaction. The rules are `feepay_domain::correction`.

use super::refunds::{decode_receipt, line_from_pb, replacement_of, Cancellation};
use super::{IssueError, Issuer, Work, RECEIPT_NS};
use crate::store::receipts;
use feepay_domain::correction::{check_reason, correct_payer, PayerFields};
use feepay_domain::money::Vnd;
use feepay_domain::waiver::LineAssessment;
use feepay_runtime::{audit, correction_requests, operators};
use sea_orm::{EntityTrait, QueryFilter, QuerySelect, TransactionTrait};
use uuid::Uuid;

pub use feepay_domain::correction::PayerCorrection;

/// An operator's correction of one receipt.
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
    /// The queued request this carries out (marked done in the same transaction).
    pub request_id: Option<i64>,
}

/// What a correction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrected {
    pub cancelled: String,
    pub replacement: Option<String>,
    pub replacement_lookup_code: Option<String>,
}

fn invalid(e: impl std::fmt::Display) -> IssueError {
    IssueError::Invalid(e.to_string())
}

impl Issuer {
    /// Applies an operator's correction in one transaction, with an audit log entry.
    pub async fn correct(&self, c: &Correction) -> Result<Corrected, IssueError> {
        check_reason(&c.reason).map_err(invalid)?;
        let loaded = self.reference().await?;
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let mut work = Work::default();
        let (bytes, status): (Vec<u8>, receipts::Status) = receipts::Entity::find()
            .select_only()
            .columns([receipts::Column::ReceiptPb, receipts::Column::Status])
            .filter(receipts::named(&c.receipt))
            .lock_exclusive()
            .into_tuple()
            .one(&txn)
            .await?
            .ok_or_else(|| IssueError::NotFound(c.receipt.clone()))?;
        let original = decode_receipt(&bytes)?;
        let label = format!("{} {} {}", original.template_symbol, original.receipt_symbol, original.number);
        if status != receipts::Status::Issued {
            return Err(IssueError::NotIssued(label));
        }
        let mut replacement = None;
        if let Some(fix) = &c.replace {
            let mut payer = original.payer.clone().unwrap_or_default();
            let fields = PayerFields {
                full_name: payer.full_name.clone(),
                personal_id: payer.personal_id.clone(),
                tax_code: payer.tax_code.clone(),
                address: payer.address.clone(),
            };
            let fixed = correct_payer(&fields, fix).map_err(invalid)?;
            payer.full_name = fixed.full_name;
            payer.personal_id = fixed.personal_id;
            payer.tax_code = fixed.tax_code;
            payer.address = fixed.address;
            let lines: Vec<LineAssessment> = original.lines.iter().map(line_from_pb).collect::<Result<_, _>>()?;
            let total = Vnd::parse(&original.total).map_err(|e| invalid(format!("stored total: {e}")))?;
            let id = Uuid::new_v5(&RECEIPT_NS, format!("correct|{}", original.receipt_id).as_bytes());
            replacement = Some(replacement_of(&loaded, &original, id, payer, lines, total)?);
        }
        let replaced_by = replacement.as_ref().map(|r| r.receipt_id);
        let cancellation =
            Cancellation { receipt: original.clone(), reason: c.reason.clone(), refund_id: String::new(), replaced_by };
        self.cancel(&txn, &loaded, &cancellation, now, &mut work).await?;
        let issued = self
            .number_and_insert(&txn, &loaded, replacement.into_iter().collect(), now, &mut work)
            .await
            .map_err(|e| match e {
                IssueError::Blocked(_, reason) | IssueError::Permanent(reason) => invalid(reason.detail),
                other => other,
            })?;
        let mut corrected = Corrected { cancelled: label.clone(), replacement: None, replacement_lookup_code: None };
        if let Some(id) = issued.first() {
            let (template, symbol, number, lookup_code): (String, String, i32, String) =
                receipts::Entity::find_by_id(*id)
                    .select_only()
                    .columns([
                        receipts::Column::Template,
                        receipts::Column::Symbol,
                        receipts::Column::Number,
                        receipts::Column::LookupCode,
                    ])
                    .into_tuple()
                    .one(&txn)
                    .await?
                    .ok_or_else(|| IssueError::Reference("replacement vanished".into()))?;
            corrected.replacement = Some(format!("{template} {symbol} {number:07}"));
            corrected.replacement_lookup_code = Some(lookup_code);
        }
        audit::record(
            &txn,
            audit::Entry {
                actor: &c.actor,
                action: if c.replace.is_some() { "receipt.replace" } else { "receipt.cancel" },
                target: &original.receipt_id,
                reason: Some(&c.reason),
                details: serde_json::json!({
                    "cancelled": label,
                    "replacement": corrected.replacement,
                    "payment_id": original.payment_id,
                }),
            },
        )
        .await?;
        if let Some(id) = c.request_id {
            correction_requests::finish(&txn, id, "done", corrected.to_json(), self.clock.now()).await?;
        }
        self.commit(txn, work.outbox).await?;
        work.tally.emit(self, &work.outcome);
        Ok(corrected)
    }

    /// Carries out the operators' queued correction requests. A refused one (not found,
    /// already cancelled, invalid) is recorded with the reason; one that failed for a
    /// transient reason stays queued for the next pass.
    pub async fn serve_correction_requests(&self) -> Result<usize, IssueError> {
        let pending = correction_requests::take_pending(&self.db, 20).await?;
        let mut served = 0;
        for r in pending {
            let replace = match r.replace.clone().map(serde_json::from_value::<PayerCorrection>).transpose() {
                Ok(x) => x,
                Err(e) => {
                    let why = serde_json::json!({"error": format!("the requested changes do not read: {e}")});
                    correction_requests::finish(&self.db, r.request_id, "refused", why, self.clock.now()).await?;
                    continue;
                }
            };
            if let Some(why) = self.requester_refusal(&r).await? {
                tracing::warn!(request = r.request_id, actor = %r.actor, login = ?r.db_login, %why, "a correction request was refused");
                correction_requests::finish(
                    &self.db,
                    r.request_id,
                    "refused",
                    serde_json::json!({"error": why}),
                    self.clock.now(),
                )
                .await?;
                served += 1;
                continue;
            }
            let c = Correction {
                receipt: r.receipt.clone(),
                reason: r.reason.clone(),
                actor: r.actor.clone(),
                replace,
                request_id: Some(r.request_id),
            };
            match self.correct(&c).await {
                Ok(done) => {
                    tracing::info!(request = r.request_id, cancelled = %done.cancelled, replacement = ?done.replacement, actor = %r.actor, "correction carried out");
                    served += 1;
                }
                Err(e @ (IssueError::NotFound(_) | IssueError::NotIssued(_) | IssueError::Invalid(_))) => {
                    let why = serde_json::json!({"error": e.to_string()});
                    correction_requests::finish(&self.db, r.request_id, "refused", why, self.clock.now()).await?;
                    served += 1;
                }
                Err(e) => {
                    tracing::warn!(request = r.request_id, error = %e, "a correction could not be carried out yet; it stays queued");
                    return Err(e);
                }
            }
        }
        Ok(served)
    }
}

impl Issuer {
    /// Why the login that filed a request may not have this correction carried out, checked
    /// here, where the key is, on top of the database's own policy: its operator was revoked
    /// or demoted since, or the receipt's agency is outside its scope. A request filed by a
    /// login bound to no operator came from the schema owner (the database refuses it from
    /// any operator login) and is carried out.
    async fn requester_refusal(
        &self,
        r: &correction_requests::CorrectionRequest,
    ) -> Result<Option<String>, IssueError> {
        let Some(login) = &r.db_login else { return Ok(None) };
        let Some(op) = operators::bound_to(&self.db, login).await? else { return Ok(None) };
        if op.revoked_at.is_some() {
            return Ok(Some(format!("operator {} was revoked before the request was carried out", op.name)));
        }
        if !matches!(op.role.as_str(), "operator" | "admin") {
            return Ok(Some(format!("operator {} is {} and may not cancel or replace receipts", op.name, op.role)));
        }
        if op.scope == "*" {
            return Ok(None);
        }
        let agency: Option<String> = receipts::Entity::find()
            .select_only()
            .column(receipts::Column::AgencyCode)
            .filter(receipts::named(&r.receipt))
            .into_tuple()
            .one(&self.db)
            .await?;
        let Some(agency) = agency else { return Ok(None) };
        let loaded = self.reference().await?;
        if loaded.reference.is_within(&agency, &op.scope) {
            Ok(None)
        } else {
            Ok(Some(format!("receipt of agency {agency} is outside the scope {} of operator {}", op.scope, op.name)))
        }
    }
}

impl Corrected {
    /// The outcome as recorded on the request.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "cancelled": self.cancelled,
            "replacement": self.replacement,
            "replacementLookupCode": self.replacement_lookup_code,
        })
    }
}
