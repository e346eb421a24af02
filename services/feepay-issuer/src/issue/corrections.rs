//! Operators' corrections of a receipt, carried out in one transaction with the audit entry
//! (the rules are `feepay_domain::correction`):
//!
//! - **notify** (Circular 91/2026/TT-BTC Art. 20.1): a wrong name, address, amount in words
//!   or other content with the right tax code and amount. The receipt stands; the notice is
//!   recorded, signed on 04/SS-CTĐT for the tax authority and told to the payer
//!   (`ReceiptErrorNotified`);
//! - **replace** (Art. 20.2): any other error. A replacement receipt naming the original
//!   (same payment, lines and amount, the corrected payer) takes the next number of the
//!   series as it is today; the original becomes `replaced`. The replacement goes to the tax
//!   authority on the day's summary 01/TH-BLĐT with its status and the related receipt;
//! - **correct**: the issuer chooses between the two from what changes (a tax code or
//!   personal identification number needs a replacement);
//! - **cancel**: only for receipts whose form version still allows it (the rules before 1
//!   July 2026); a cancellation signs its 04/SS-CTĐT and may be followed by a replacement.

use super::refunds::{decode_receipt, line_from_pb, replacement_of, Cancellation};
use super::tally::Fact;
use super::{IssueError, Issuer, Work, RECEIPT_NS};
use crate::store::{notices, receipts};
use feepay_domain::correction::{
    check_cancellation, check_procedure, check_reason, correct_payer, procedure_for, PayerFields, Procedure,
};
use feepay_domain::forms::ErrorRule;
use feepay_domain::money::Vnd;
use feepay_domain::tax::NoticeKind;
use feepay_domain::waiver::LineAssessment;
use feepay_proto::v1;
use feepay_proto::Message;
use feepay_runtime::convert::ts;
use feepay_runtime::{audit, correction_requests, operators};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};
use uuid::Uuid;

pub use feepay_domain::correction::PayerCorrection;

/// What an operator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrectionKind {
    Cancel,
    Notify,
    Replace,
    /// Notify or replace, as the change needs.
    Correct,
}

impl CorrectionKind {
    pub fn code(self) -> &'static str {
        match self {
            CorrectionKind::Cancel => "cancel",
            CorrectionKind::Notify => "notify",
            CorrectionKind::Replace => "replace",
            CorrectionKind::Correct => "correct",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "cancel" => Some(CorrectionKind::Cancel),
            "notify" => Some(CorrectionKind::Notify),
            "replace" => Some(CorrectionKind::Replace),
            "correct" => Some(CorrectionKind::Correct),
            _ => None,
        }
    }
}

/// An operator's correction of one receipt.
#[derive(Debug, Clone)]
pub struct Correction {
    /// Receipt id or lookup code.
    pub receipt: String,
    pub kind: CorrectionKind,
    /// Why (printed on the notice, kept in the audit log).
    pub reason: String,
    /// Who (audit log).
    pub actor: String,
    /// The payer fields as they should read (empty: the payer is not what is wrong).
    pub fix: PayerCorrection,
    /// The queued request this carries out (marked done in the same transaction).
    pub request_id: Option<i64>,
}

/// What a correction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrected {
    /// The receipt corrected, as `EBL01 26TAA 0000042`.
    pub receipt: String,
    /// `notify`, `replace` or `cancel`.
    pub procedure: &'static str,
    pub replacement: Option<String>,
    pub replacement_lookup_code: Option<String>,
    /// The notice 04/SS-CTĐT signed, if any.
    pub notice_document_id: Option<String>,
}

fn invalid(e: impl std::fmt::Display) -> IssueError {
    IssueError::Invalid(e.to_string())
}

fn fields_of(p: &v1::Payer) -> PayerFields {
    PayerFields {
        full_name: p.full_name.clone(),
        personal_id: p.personal_id.clone(),
        tax_code: p.tax_code.clone(),
        passport: p.passport_number.clone(),
        address: p.address.clone(),
    }
}

fn with_fields(mut p: v1::Payer, f: &PayerFields) -> v1::Payer {
    p.full_name = f.full_name.clone();
    p.personal_id = f.personal_id.clone();
    p.tax_code = f.tax_code.clone();
    p.passport_number = f.passport.clone();
    p.address = f.address.clone();
    p
}

impl Issuer {
    /// Applies an operator's correction in one transaction, with an audit log entry.
    pub async fn correct(&self, c: &Correction) -> Result<Corrected, IssueError> {
        check_reason(&c.reason).map_err(invalid)?;
        let loaded = self.reference().await?;
        let now = self.clock.now();
        let today = feepay_domain::numbering::date_gmt7(now);
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
        // The rules of the receipt's form as they stand today.
        let rule =
            loaded.reference.form_on(&original.template_symbol, today).map_or(ErrorRule::NotifyOrReplace, |f| f.errors);
        let payer = original.payer.clone().unwrap_or_default();
        let before = fields_of(&payer);
        let fixed = if c.fix == PayerCorrection::default() {
            before.clone()
        } else {
            correct_payer(&before, &c.fix).map_err(invalid)?
        };
        let needed = procedure_for(&before, &fixed);
        let procedure = match c.kind {
            CorrectionKind::Cancel => {
                check_cancellation(rule).map_err(invalid)?;
                None
            }
            CorrectionKind::Correct => {
                if fixed == before {
                    return Err(invalid(feepay_domain::correction::CorrectionError::Identical));
                }
                Some(needed)
            }
            CorrectionKind::Notify => {
                check_procedure(Procedure::Notify, needed).map_err(invalid)?;
                Some(Procedure::Notify)
            }
            CorrectionKind::Replace => Some(Procedure::Replace),
        };
        let mut corrected = Corrected {
            receipt: label.clone(),
            procedure: procedure.map_or("cancel", |p| p.code()),
            replacement: None,
            replacement_lookup_code: None,
            notice_document_id: None,
        };
        if procedure == Some(Procedure::Notify) {
            let document =
                self.notify(&txn, &loaded, &original, c, with_fields(payer, &fixed), &fixed, now, &mut work).await?;
            corrected.notice_document_id = Some(document.to_string());
        } else {
            let mut replacement = None;
            if procedure.is_some() || c.fix != PayerCorrection::default() {
                let lines: Vec<LineAssessment> = original.lines.iter().map(line_from_pb).collect::<Result<_, _>>()?;
                let total = Vnd::parse(&original.total).map_err(|e| invalid(format!("stored total: {e}")))?;
                let id = Uuid::new_v5(&RECEIPT_NS, format!("correct|{}", original.receipt_id).as_bytes());
                replacement = Some(replacement_of(&loaded, &original, id, with_fields(payer, &fixed), lines, total)?);
            }
            let replaced_by = replacement.as_ref().map(|r| r.receipt_id);
            match (rule, replaced_by) {
                (ErrorRule::NotifyOrReplace, Some(by)) => {
                    self.mark_replaced(&txn, &original, by, now, &mut work).await?
                }
                (ErrorRule::NotifyOrReplace, None) => {
                    return Err(invalid(feepay_domain::correction::CorrectionError::NoCancellation))
                }
                (ErrorRule::CancelOrReplace, _) => {
                    let cancellation = Cancellation {
                        receipt: original.clone(),
                        reason: c.reason.clone(),
                        refund_id: String::new(),
                        replaced_by,
                    };
                    self.cancel(&txn, &loaded, &cancellation, now, &mut work).await?;
                }
            }
            let issued = self
                .number_and_insert(&txn, &loaded, replacement.into_iter().collect(), now, &mut work)
                .await
                .map_err(|e| match e {
                    IssueError::Blocked(_, reason) | IssueError::Permanent(reason) => invalid(reason.detail),
                    other => other,
                })?;
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
        }
        let action = match (corrected.procedure, corrected.replacement.is_some()) {
            ("notify", _) => "receipt.notify",
            (_, true) => "receipt.replace",
            _ => "receipt.cancel",
        };
        audit::record(
            &txn,
            audit::Entry {
                actor: &c.actor,
                action,
                target: &original.receipt_id,
                reason: Some(&c.reason),
                details: serde_json::json!({
                    "receipt": label,
                    "procedure": corrected.procedure,
                    "replacement": corrected.replacement,
                    "notice": corrected.notice_document_id,
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

    /// Art. 20.1: records the notice, signs 04/SS-CTĐT and tells the payer; the receipt
    /// stands. Returns the notice's document id.
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        loaded: &feepay_runtime::refdata::LoadedReference,
        original: &v1::Receipt,
        c: &Correction,
        corrected_payer: v1::Payer,
        fixed: &PayerFields,
        now: chrono::DateTime<chrono::Utc>,
        work: &mut Work,
    ) -> Result<Uuid, IssueError> {
        let receipt_id: Uuid = original.receipt_id.parse().map_err(|e| invalid(format!("receipt id: {e}")))?;
        // Stable for the request it carries out (or for the receipt, reason and fix).
        let cause = match c.request_id {
            Some(id) => format!("request|{id}"),
            None => format!("{}|{}|{:?}", original.receipt_id, c.reason, c.fix),
        };
        let notice_id = Uuid::new_v5(&RECEIPT_NS, format!("notice|{cause}").as_bytes());
        let key = format!("error_notice|{}|notice|{notice_id}", super::tax::sender_of(original).code);
        let document_id =
            self.error_notice(txn, loaded, original, NoticeKind::ErrorNotified, &c.reason, &key, now, work).await?;
        notices::Entity::insert(notices::ActiveModel {
            notice_id: Set(notice_id),
            receipt_id: Set(receipt_id),
            reason: Set(c.reason.clone()),
            corrections: Set(serde_json::json!({
                "full_name": fixed.full_name,
                "personal_id": fixed.personal_id,
                "tax_code": fixed.tax_code,
                "passport": fixed.passport,
                "address": fixed.address,
            })),
            request_id: Set(c.request_id),
            notified_at: Set(now),
        })
        .exec_without_returning(txn)
        .await?;
        work.tally.push(Fact::Notified {
            agency: original.agency.as_ref().map(|a| a.code.clone()).unwrap_or_default(),
            payment_id: original.payment_id.clone(),
            number: original.number.clone(),
        });
        self.receipt_error_notified_event(
            work,
            v1::ReceiptErrorNotified {
                receipt: Some(original.clone()),
                reason: c.reason.clone(),
                corrected_payer: Some(corrected_payer),
                notice_document_id: document_id.to_string(),
                notified_at: Some(ts(now)),
                notice_id: notice_id.to_string(),
            },
        );
        Ok(document_id)
    }

    /// Art. 20.2: the original is replaced (it keeps its number and says by which receipt).
    async fn mark_replaced(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        original: &v1::Receipt,
        by: Uuid,
        now: chrono::DateTime<chrono::Utc>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let id: Uuid = original.receipt_id.parse().map_err(|e| invalid(format!("receipt id: {e}")))?;
        let mut stored = original.clone();
        stored.status = v1::ReceiptStatus::Replaced as i32;
        stored.replaced_at = Some(ts(now));
        stored.replaced_by_receipt_id = by.to_string();
        receipts::Entity::update_many()
            .col_expr(receipts::Column::Status, Expr::value(receipts::Status::Replaced))
            .col_expr(receipts::Column::ReplacedAt, Expr::value(now))
            .col_expr(receipts::Column::ReplacedBy, Expr::value(by))
            .col_expr(receipts::Column::ReceiptPb, Expr::value(stored.encode_to_vec()))
            .filter(receipts::Column::ReceiptId.eq(id))
            .filter(receipts::Column::Status.eq(receipts::Status::Issued))
            .exec(txn)
            .await?;
        work.tally.push(Fact::Replaced {
            agency: original.agency.as_ref().map(|a| a.code.clone()).unwrap_or_default(),
            series: super::numbering::series_label(&original.template_symbol, &original.receipt_symbol),
            payment_id: original.payment_id.clone(),
            number: original.number.clone(),
        });
        work.outcome.receipts_replaced += 1;
        Ok(())
    }
}

impl Issuer {
    /// Carries out the operators' queued correction requests. A refused one (not found,
    /// already cancelled, invalid) is recorded with the reason; one that failed for a
    /// transient reason stays queued for the next pass.
    pub async fn serve_correction_requests(&self) -> Result<usize, IssueError> {
        let pending = correction_requests::take_pending(&self.db, 20, self.clock.now()).await?;
        let mut served = 0;
        for r in pending {
            let fix = match r.replace.clone().map(serde_json::from_value::<PayerCorrection>).transpose() {
                Ok(x) => x.unwrap_or_default(),
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
            let Some(kind) = CorrectionKind::from_code(&r.kind) else {
                let why = serde_json::json!({"error": format!("unknown correction kind {:?}", r.kind)});
                correction_requests::finish(&self.db, r.request_id, "refused", why, self.clock.now()).await?;
                continue;
            };
            let c = Correction {
                receipt: r.receipt.clone(),
                kind,
                reason: r.reason.clone(),
                actor: r.actor.clone(),
                fix,
                request_id: Some(r.request_id),
            };
            match self.correct(&c).await {
                Ok(done) => {
                    tracing::info!(request = r.request_id, receipt = %done.receipt, procedure = done.procedure, replacement = ?done.replacement, actor = %r.actor, "correction carried out");
                    served += 1;
                }
                Err(e @ (IssueError::NotFound(_) | IssueError::NotIssued(_) | IssueError::Invalid(_))) => {
                    let why = serde_json::json!({"error": e.to_string()});
                    correction_requests::finish(&self.db, r.request_id, "refused", why, self.clock.now()).await?;
                    served += 1;
                }
                Err(e) => {
                    // This request waits on its own (its agency's key, say); the others go on.
                    let next = correction_requests::retry_delay(r.attempts);
                    tracing::warn!(request = r.request_id, error = %e, retry_in_secs = next.num_seconds(), "a correction could not be carried out yet; it waits and the others go on");
                    correction_requests::postpone(&self.db, &r, &e.to_string(), self.clock.now()).await?;
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
            return Ok(Some(format!("operator {} is {} and may not correct receipts", op.name, op.role)));
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
            "receipt": self.receipt,
            "procedure": self.procedure,
            "replacement": self.replacement,
            "replacementLookupCode": self.replacement_lookup_code,
            "noticeDocumentId": self.notice_document_id,
        })
    }
}
