//! A validated payment and the issuer's decision about it: which receipts, or why none.

use crate::ids::{PersonalId, TaxCode};
use crate::money::Vnd;
use crate::reference::{FeeKind, ReferenceData, Series};
use crate::waiver::{Category, Channel, LineAssessment, LineQuery, RuleSet};
use chrono::{DateTime, Utc};
use std::fmt;

/// The payer, validated. `Debug` masks identifiers and the email.
#[derive(Clone, PartialEq, Eq)]
pub struct Payer {
    pub full_name: String,
    pub personal_id: Option<PersonalId>,
    pub tax_code: Option<TaxCode>,
    /// Passport number, for a payer without a Vietnamese personal ID.
    pub passport: Option<String>,
    pub email: Option<String>,
    pub address: String,
    pub categories: Vec<Category>,
}

impl fmt::Debug for Payer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payer")
            .field("personal_id", &self.personal_id)
            .field("tax_code", &self.tax_code)
            .field("passport", &self.passport.as_deref().map(crate::ids::mask))
            .field("email", &self.email.as_deref().map(crate::ids::mask_email))
            .field("categories", &self.categories)
            .finish_non_exhaustive()
    }
}

/// A fee line as paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidLine {
    pub fee_code: String,
    pub kind: FeeKind,
    pub quantity: u32,
    pub amount: Vnd,
}

/// A successful payment, validated at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: String,
    pub dossier_code: String,
    pub procedure_code: String,
    pub agency_code: String,
    pub channel: Channel,
    pub payer: Payer,
    pub lines: Vec<PaidLine>,
    pub total_paid: Vnd,
    pub paid_at: DateTime<Utc>,
    pub provider: String,
    pub provider_reference: String,
    pub payment_method: crate::receipt::PaymentMethod,
    pub paid_online: bool,
    pub assessment_id: Option<String>,
    pub assessed_at: Option<DateTime<Utc>>,
}

impl Payment {
    /// The instant at which waivers are evaluated: the assessment time when the portal
    /// assessed the fee, else the payment time.
    pub fn rules_time(&self) -> DateTime<Utc> {
        self.assessed_at.unwrap_or(self.paid_at)
    }
}

/// Why a payment gets no receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    UnknownAgency,
    UnknownFee,
    NoSeries,
    AmountMismatch,
    ConflictingDuplicate,
    InvalidRefund,
    KindMismatch,
    /// A business limit (quantity, amount, number of lines, text length) is exceeded.
    LimitExceeded,
}

impl Rejection {
    /// Stable label for metrics and storage.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::UnknownAgency => "unknown_agency",
            Rejection::UnknownFee => "unknown_fee",
            Rejection::NoSeries => "no_series",
            Rejection::AmountMismatch => "amount_mismatch",
            Rejection::ConflictingDuplicate => "conflicting_duplicate",
            Rejection::InvalidRefund => "invalid_refund",
            Rejection::KindMismatch => "kind_mismatch",
            Rejection::LimitExceeded => "limit_exceeded",
        }
    }
}

/// A receipt to be numbered and signed: one per series touched by the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptDraft {
    pub series: Series,
    pub lines: Vec<LineAssessment>,
    pub total: Vnd,
}

/// What to do with a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issue these receipts (at least one). `waived` lists lines waived to 0 đ (no receipt).
    Issue { receipts: Vec<ReceiptDraft>, waived: Vec<LineAssessment> },
    /// Every line was waived to 0 đ: no receipt, a waiver notice.
    FullyWaived { waived: Vec<LineAssessment> },
    /// No receipt; the reason and a precise detail.
    Reject { reason: Rejection, detail: String },
}

/// Assesses every line of a payment and decides. Pure: same inputs, same decision.
pub fn decide(reference: &ReferenceData, rules: &RuleSet, p: &Payment) -> Decision {
    let reject = |reason, detail: String| Decision::Reject { reason, detail };
    if !reference.agencies.contains_key(&p.agency_code) {
        return reject(Rejection::UnknownAgency, format!("agency {} is not in the reference data", p.agency_code));
    }
    let mut assessed = Vec::with_capacity(p.lines.len());
    for (i, line) in p.lines.iter().enumerate() {
        let Some(fee) = reference.fees.get(&line.fee_code) else {
            return reject(
                Rejection::UnknownFee,
                format!("lines[{i}]: fee {} is not in the fee schedule", line.fee_code),
            );
        };
        if fee.kind != line.kind {
            return reject(
                Rejection::KindMismatch,
                format!("lines[{i}]: fee {} is a {} but was paid as {}", fee.code, fee.kind.code(), line.kind.code()),
            );
        }
        let q = LineQuery {
            agency: &p.agency_code,
            procedure: &p.procedure_code,
            fee,
            quantity: line.quantity,
            channel: p.channel,
            paid_online: p.paid_online,
            categories: &p.payer.categories,
            at: p.rules_time(),
        };
        let a = match rules.assess_line(reference, &q) {
            Ok(a) => a,
            Err(e) => return reject(Rejection::AmountMismatch, format!("lines[{i}]: {e}")),
        };
        if a.due != line.amount {
            return reject(
                Rejection::AmountMismatch,
                format!(
                    "lines[{i}]: fee {} paid {} đồng but {} đồng is due ({})",
                    fee.code,
                    line.amount,
                    a.due,
                    a.applied
                        .as_ref()
                        .map_or("no waiver applies".to_string(), |w| format!("after {}", w.document_number))
                ),
            );
        }
        assessed.push(a);
    }
    let due: Vnd = assessed.iter().map(|a| a.due).sum();
    if due != p.total_paid {
        return reject(Rejection::AmountMismatch, format!("total paid {} đồng but {} đồng is due", p.total_paid, due));
    }
    let (collected, waived): (Vec<_>, Vec<_>) = assessed.into_iter().partition(|a| a.due > Vnd::ZERO);
    if collected.is_empty() {
        return Decision::FullyWaived { waived };
    }
    let mut receipts: Vec<ReceiptDraft> = Vec::new();
    for line in collected {
        let Some(series) = reference.series_for(&p.agency_code, line.kind) else {
            return reject(
                Rejection::NoSeries,
                format!(
                    "agency {} has no receipt series for {} (fee {})",
                    p.agency_code,
                    line.kind.code(),
                    line.fee_code
                ),
            );
        };
        match receipts.iter_mut().find(|r| r.series == *series) {
            Some(r) => {
                r.total = r.total + line.due;
                r.lines.push(line);
            }
            None => receipts.push(ReceiptDraft { series: series.clone(), total: line.due, lines: vec![line] }),
        }
    }
    Decision::Issue { receipts, waived }
}
