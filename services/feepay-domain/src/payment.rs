//! A validated payment and the issuer's decision about it: which receipts, or why none.

use crate::ids::{PersonalId, TaxCode};
use crate::money::Vnd;
use crate::reference::{FeeKind, NumberRange, ReferenceData, Series};
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
    /// Level of the electronic identity account (VNeID) the payer used: 1 or 2; 0 unknown.
    pub identity_level: u8,
}

impl Payer {
    /// The payer as a receipt names them.
    pub fn info(&self) -> crate::receipt::PayerInfo {
        crate::receipt::PayerInfo {
            full_name: self.full_name.clone(),
            personal_id: self.personal_id.as_ref().map(|i| i.expose().to_string()).unwrap_or_default(),
            tax_code: self.tax_code.as_ref().map(|t| t.expose().to_string()).unwrap_or_default(),
            passport: self.passport.clone().unwrap_or_default(),
            address: self.address.clone(),
        }
    }
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
    /// The fee is collected by another body, and this agency has no mandate for it.
    NotCollector,
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
            Rejection::NotCollector => "not_collector",
        }
    }
}

/// A receipt to be numbered and signed: one per series and fee kind touched by the
/// payment (phí and lệ phí never share a receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptDraft {
    /// The collector's series: `series.agency` is the collector named on the receipt.
    pub series: Series,
    pub kind: FeeKind,
    pub lines: Vec<LineAssessment>,
    pub total: Vnd,
    /// A desk issuing under a delegation: it signs, the collector is named (`None`: the
    /// collector signs).
    pub delegate: Option<String>,
    /// The numbers of the series this receipt is numbered in: the delegate's range, or the
    /// collector's own.
    pub range: NumberRange,
}

impl ReceiptDraft {
    /// The agency whose certificate signs this receipt.
    pub fn signer(&self) -> &str {
        self.delegate.as_deref().unwrap_or(&self.series.agency)
    }
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
    let Some(agency) = reference.agencies.get(&p.agency_code) else {
        return reject(Rejection::UnknownAgency, format!("agency {} is not in the reference data", p.agency_code));
    };
    let paid_on = crate::numbering::date_gmt7(p.paid_at);
    if !agency.exists_on(paid_on) {
        return reject(
            Rejection::UnknownAgency,
            format!(
                "agency {} ceased to exist on {} (reorganised); payments go to the unit that took over",
                p.agency_code,
                agency.until.map(|d| d.to_string()).unwrap_or_default()
            ),
        );
    }
    let mut assessed = Vec::with_capacity(p.lines.len());
    for (i, line) in p.lines.iter().enumerate() {
        let Some(fee) = reference.fees.get(&line.fee_code) else {
            return reject(
                Rejection::UnknownFee,
                format!("lines[{i}]: fee {} is not in the fee schedule", line.fee_code),
            );
        };
        if !fee.in_force_on(crate::numbering::date_gmt7(p.rules_time())) {
            return reject(
                Rejection::UnknownFee,
                format!(
                    "lines[{i}]: fee {} is not in force on {} (rate of {} valid {} to {})",
                    fee.code,
                    crate::numbering::date_gmt7(p.rules_time()),
                    fee.basis,
                    fee.valid_from,
                    fee.valid_until.map(|d| d.to_string()).unwrap_or_else(|| "—".into())
                ),
            );
        }
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
            identity_level: p.payer.identity_level,
            // A payer identified by a passport alone is a foreigner.
            citizen: p.payer.personal_id.is_some() || p.payer.passport.is_none(),
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
        // The collector the fee's text names, and whether this agency issues for it under
        // a delegation (Decree 254/2026/NĐ-CP Art. 25: the only way one body issues
        // receipts for a fee another body collects).
        let fee = &reference.fees[&line.fee_code];
        let (series, delegate) = match fee.collector.as_deref() {
            Some(c) if c != p.agency_code => {
                let mandates: Vec<_> =
                    agency.collects_for.iter().filter(|m| m.principal == c && m.fees.contains(&fee.code)).collect();
                let Some(m) = mandates.iter().find(|m| m.in_force_on(paid_on)) else {
                    let detail = match mandates.first() {
                        Some(m) => format!(
                            "fee {} is collected by {c}; the delegation of agency {} ({}) is in force from {} to {}, not on {paid_on}",
                            fee.code,
                            p.agency_code,
                            m.basis,
                            m.valid_from,
                            m.valid_until.map_or("—".to_string(), |d| d.to_string())
                        ),
                        None => format!(
                            "fee {} is collected by {c}; agency {} has no registered delegation to issue its receipts (collects_for)",
                            fee.code, p.agency_code
                        ),
                    };
                    return reject(Rejection::NotCollector, detail);
                };
                let Some(series) = reference.series_named(c, &m.template, &m.letters) else {
                    return reject(
                        Rejection::NoSeries,
                        format!("agency {c} has no receipt series {} {} (fee {})", m.template, m.letters, fee.code),
                    );
                };
                (series, Some(p.agency_code.clone()))
            }
            collector => {
                let collector = collector.unwrap_or(&p.agency_code);
                let Some(series) = reference.series_for(collector, line.kind) else {
                    return reject(
                        Rejection::NoSeries,
                        format!(
                            "agency {collector} has no receipt series for {} (fee {})",
                            line.kind.code(),
                            line.fee_code
                        ),
                    );
                };
                (series, None)
            }
        };
        let Some(range) = series.range_for(delegate.as_deref()) else {
            return reject(
                Rejection::NoSeries,
                format!(
                    "every number of series {} {} of {} is delegated; the collector issues in a series of its own",
                    series.template, series.letters, series.agency
                ),
            );
        };
        match receipts.iter_mut().find(|r| r.series == *series && r.kind == line.kind && r.delegate == delegate) {
            Some(r) => {
                r.total = r.total + line.due;
                r.lines.push(line);
            }
            None => receipts.push(ReceiptDraft {
                series: series.clone(),
                kind: line.kind,
                total: line.due,
                lines: vec![line],
                delegate,
                range,
            }),
        }
    }
    Decision::Issue { receipts, waived }
}
