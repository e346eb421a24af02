//! Parsing at the edge: wire types (prost) into validated domain types, with one precise
//! message per invalid field, and domain types back into wire types.

use chrono::{DateTime, Utc};
use feepay_domain::ids::{PersonalId, TaxCode};
use feepay_domain::money::{AmountError, Vnd};
use feepay_domain::payment::{PaidLine, Payer, Payment};
use feepay_domain::receipt::PaymentMethod;
use feepay_domain::reference::FeeKind;
use feepay_domain::waiver::{Category, Channel, LineAssessment};
use feepay_proto::v1;
use feepay_proto::Timestamp;

/// Field-level problems of an event that break the contract (a required field missing, a
/// malformed number, identifier or enum); becomes the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Invalid(pub Vec<String>);

/// Longest accepted text field, in characters (business limit, see proto/README.md).
pub const MAX_TEXT: usize = 300;
/// Most lines in one payment (business limit).
pub const MAX_LINES: usize = 50;
/// Most units on one line (business limit).
pub const MAX_QUANTITY: u32 = 10_000;

/// An event that is well formed but breaks a business limit (quantity, amount, number of
/// lines, text length). A paid payment is never a dead letter for such a limit: it is
/// rejected with this detail, which operators act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub payment_id: String,
    pub agency_code: String,
    pub dossier_code: String,
    pub provider: String,
    pub paid_at: Option<DateTime<Utc>>,
    /// The total paid when it is within the representable range.
    pub total_paid: Option<Vnd>,
    pub detail: String,
}

/// A payment event as the issuer acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // the common case is the large one; boxing it would cost every payment
pub enum ParsedPayment {
    Valid(Payment),
    OverLimit(OverLimit),
}

struct Check {
    errors: Vec<String>,
    limits: Vec<String>,
}

impl Check {
    fn new() -> Self {
        Check { errors: Vec::new(), limits: Vec::new() }
    }

    fn fail(&mut self, field: &str, msg: impl AsRef<str>) {
        self.errors.push(format!("{field}: {}", msg.as_ref()));
    }

    fn limit(&mut self, field: &str, msg: impl AsRef<str>) {
        self.limits.push(format!("{field}: {}", msg.as_ref()));
    }

    /// A single-line text: required when asked, no control characters (contract), at most
    /// `max` characters (business limit).
    fn text(&mut self, field: &str, v: &str, required: bool, max: usize) {
        if v.trim().is_empty() {
            if required {
                self.fail(field, "is required");
            }
            return;
        }
        if v.chars().any(char::is_control) {
            self.fail(field, "contains control characters (line breaks, tabs, ...)");
        }
        let n = v.chars().count();
        if n > max {
            self.limit(field, format!("is {n} characters long, at most {max} are accepted"));
        }
    }

    /// A whole, non-negative number of đồng (contract), at most 10^15 (business limit).
    fn amount(&mut self, field: &str, v: &str) -> Option<Vnd> {
        match Vnd::parse(v) {
            Ok(a) => Some(a),
            Err(AmountError::TooLarge(_)) => {
                self.limit(
                    field,
                    format!("{} exceeds the limit of 10^15 đồng", v.chars().take(40).collect::<String>()),
                );
                None
            }
            Err(e) => {
                self.fail(field, e.to_string());
                None
            }
        }
    }

    fn time(&mut self, field: &str, t: Option<&Timestamp>, required: bool) -> Option<DateTime<Utc>> {
        match t {
            None => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(ts) => match DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32) {
                Some(d) if (2000..=2100).contains(&chrono::Datelike::year(&d)) => Some(d),
                _ => {
                    self.fail(field, "is not a time between the years 2000 and 2100");
                    None
                }
            },
        }
    }

    fn invalid(self) -> Invalid {
        Invalid(self.errors)
    }

    fn limits(&self) -> String {
        self.limits.join("; ")
    }
}

pub fn channel(c: i32) -> Option<Channel> {
    match v1::Channel::try_from(c).ok()? {
        v1::Channel::FullyOnline => Some(Channel::FullyOnline),
        v1::Channel::PartlyOnline => Some(Channel::PartlyOnline),
        v1::Channel::Counter => Some(Channel::Counter),
        v1::Channel::Unspecified => None,
    }
}

pub fn channel_pb(c: Channel) -> v1::Channel {
    match c {
        Channel::FullyOnline => v1::Channel::FullyOnline,
        Channel::PartlyOnline => v1::Channel::PartlyOnline,
        Channel::Counter => v1::Channel::Counter,
    }
}

/// The payment method of an event; an older producer that sends none is taken to have
/// paid through the national platform when `paid_online`, else in cash at the counter.
pub fn payment_method(m: i32, paid_online: bool) -> PaymentMethod {
    match v1::PaymentMethod::try_from(m).unwrap_or(v1::PaymentMethod::Unspecified) {
        v1::PaymentMethod::Cash => PaymentMethod::Cash,
        v1::PaymentMethod::BankTransfer => PaymentMethod::BankTransfer,
        v1::PaymentMethod::Card => PaymentMethod::Card,
        v1::PaymentMethod::EWallet => PaymentMethod::EWallet,
        v1::PaymentMethod::NationalPlatform => PaymentMethod::NationalPlatform,
        v1::PaymentMethod::Unspecified if paid_online => PaymentMethod::NationalPlatform,
        v1::PaymentMethod::Unspecified => PaymentMethod::Cash,
    }
}

pub fn payment_method_pb(m: PaymentMethod) -> v1::PaymentMethod {
    match m {
        PaymentMethod::Cash => v1::PaymentMethod::Cash,
        PaymentMethod::BankTransfer => v1::PaymentMethod::BankTransfer,
        PaymentMethod::Card => v1::PaymentMethod::Card,
        PaymentMethod::EWallet => v1::PaymentMethod::EWallet,
        PaymentMethod::NationalPlatform => v1::PaymentMethod::NationalPlatform,
    }
}

pub fn fee_kind(k: i32) -> Option<FeeKind> {
    match v1::FeeKind::try_from(k).ok()? {
        v1::FeeKind::Phi => Some(FeeKind::Phi),
        v1::FeeKind::LePhi => Some(FeeKind::LePhi),
        v1::FeeKind::Unspecified => None,
    }
}

pub fn fee_kind_pb(k: FeeKind) -> v1::FeeKind {
    match k {
        FeeKind::Phi => v1::FeeKind::Phi,
        FeeKind::LePhi => v1::FeeKind::LePhi,
    }
}

pub fn category(c: i32) -> Option<Category> {
    use v1::BeneficiaryCategory as B;
    Some(match B::try_from(c).ok()? {
        B::PoorHousehold => Category::PoorHousehold,
        B::NearPoorHousehold => Category::NearPoorHousehold,
        B::MeritoriousService => Category::MeritoriousService,
        B::PersonWithDisabilities => Category::PersonWithDisabilities,
        B::MartyrRelative => Category::MartyrRelative,
        B::WarInvalid => Category::WarInvalid,
        B::HeroicMother => Category::HeroicMother,
        B::DifficultCommuneResident => Category::DifficultCommuneResident,
        B::Unspecified => return None,
    })
}

pub fn category_pb(c: Category) -> v1::BeneficiaryCategory {
    use v1::BeneficiaryCategory as B;
    match c {
        Category::PoorHousehold => B::PoorHousehold,
        Category::NearPoorHousehold => B::NearPoorHousehold,
        Category::MeritoriousService => B::MeritoriousService,
        Category::PersonWithDisabilities => B::PersonWithDisabilities,
        Category::MartyrRelative => B::MartyrRelative,
        Category::WarInvalid => B::WarInvalid,
        Category::HeroicMother => B::HeroicMother,
        Category::DifficultCommuneResident => B::DifficultCommuneResident,
    }
}

fn categories(c: &mut Check, field: &str, raw: &[i32]) -> Vec<Category> {
    let mut out = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        match category(*v) {
            Some(cat) if !out.contains(&cat) => out.push(cat),
            Some(_) => {}
            None => c.fail(&format!("{field}[{i}]"), format!("{v} is not a known beneficiary category")),
        }
    }
    out
}

/// Validates a payment-succeeded event: contract violations are `Err` (dead letter),
/// business limits an [`OverLimit`] (rejection).
pub fn parse_payment(m: &v1::PaymentSucceeded) -> Result<ParsedPayment, Invalid> {
    let mut c = Check::new();
    c.text("payment_id", &m.payment_id, true, 100);
    c.text("dossier_code", &m.dossier_code, true, 100);
    c.text("procedure_code", &m.procedure_code, true, 100);
    c.text("agency_code", &m.agency_code, true, 40);
    let ch = channel(m.channel);
    if ch.is_none() {
        c.fail("channel", "must be CHANNEL_FULLY_ONLINE, CHANNEL_PARTLY_ONLINE or CHANNEL_COUNTER");
    }
    // The year of payment bounds the birth year a personal ID may say (one born later was
    // mistyped); without a valid time, the year the number is read in.
    let this_year = m
        .paid_at
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, 0))
        .map(feepay_domain::numbering::year_gmt7)
        .unwrap_or(i32::MAX);
    let payer = match &m.payer {
        None => {
            c.fail("payer", "is required");
            None
        }
        Some(p) => {
            c.text("payer.full_name", &p.full_name, true, 200);
            c.text("payer.address", &p.address, false, MAX_TEXT);
            c.text("payer.email", &p.email, false, 254);
            let personal_id = if p.personal_id.is_empty() {
                None
            } else {
                PersonalId::parse_in(&p.personal_id, this_year)
                    .map_err(|e| c.fail("payer.personal_id", e.to_string()))
                    .ok()
            };
            let tax_code = if p.tax_code.is_empty() {
                None
            } else {
                TaxCode::parse(&p.tax_code).map_err(|e| c.fail("payer.tax_code", e.to_string())).ok()
            };
            // A payer may have no identifier at all (a foreigner without a passport at
            // hand, an anonymous counter payment): the receipt is still issued.
            let passport = if p.passport_number.trim().is_empty() {
                None
            } else {
                feepay_domain::ids::passport(&p.passport_number)
                    .map_err(|e| c.fail("payer.passport_number", e.to_string()))
                    .ok()
            };
            let cats = categories(&mut c, "payer.categories", &p.categories);
            if p.identity_level > 2 {
                c.fail("payer.identity_level", format!("must be 0 (unknown), 1 or 2, got {}", p.identity_level));
            }
            Some(Payer {
                full_name: p.full_name.trim().to_string(),
                personal_id,
                tax_code,
                passport,
                email: Some(p.email.trim().to_string()).filter(|e| !e.is_empty()),
                address: p.address.trim().to_string(),
                categories: cats,
                identity_level: p.identity_level.min(2) as u8,
            })
        }
    };
    if m.lines.is_empty() {
        c.fail("lines", "at least one fee line is required");
    }
    if m.lines.len() > MAX_LINES {
        c.limit("lines", format!("{} lines, at most {MAX_LINES} are accepted", m.lines.len()));
    }
    let mut lines = Vec::new();
    for (i, l) in m.lines.iter().enumerate().take(MAX_LINES) {
        let f = |n: &str| format!("lines[{i}].{n}");
        c.text(&f("fee_code"), &l.fee_code, true, 40);
        let kind = fee_kind(l.kind);
        if kind.is_none() {
            c.fail(&f("kind"), "must be FEE_KIND_PHI or FEE_KIND_LE_PHI");
        }
        if l.quantity == 0 {
            c.fail(&f("quantity"), "must be at least 1");
        } else if l.quantity > MAX_QUANTITY {
            c.limit(&f("quantity"), format!("{} units, at most {MAX_QUANTITY} are accepted on a line", l.quantity));
        }
        let amount = c.amount(&f("amount"), &l.amount);
        if let (Some(kind), Some(amount)) = (kind, amount) {
            lines.push(PaidLine { fee_code: l.fee_code.clone(), kind, quantity: l.quantity, amount });
        }
    }
    let total = c.amount("total_paid", &m.total_paid);
    if let Some(total) = total {
        if lines.len() == m.lines.len() && !lines.is_empty() {
            let sum = lines.iter().try_fold(Vnd::ZERO, |a, l| a.checked_add(l.amount));
            match sum {
                Some(s) if s == total => {}
                Some(s) => c.fail("total_paid", format!("{total} is not the sum of the lines ({s})")),
                None => c.limit("lines", "the sum of the lines exceeds the limit of 10^15 đồng"),
            }
        }
    }
    if m.currency != "VND" {
        c.fail("currency", format!("must be \"VND\", got {:?}", m.currency.chars().take(10).collect::<String>()));
    }
    let paid_at = c.time("paid_at", m.paid_at.as_ref(), true);
    let assessed_at = c.time("assessed_at", m.assessed_at.as_ref(), false);
    c.text("provider", &m.provider, true, 40);
    c.text("provider_reference", &m.provider_reference, false, 100);
    c.text("assessment_id", &m.assessment_id, false, 100);
    if !c.errors.is_empty() {
        return Err(c.invalid());
    }
    if !c.limits.is_empty() {
        return Ok(ParsedPayment::OverLimit(OverLimit {
            payment_id: m.payment_id.chars().take(100).collect(),
            agency_code: m.agency_code.chars().take(40).collect(),
            dossier_code: m.dossier_code.chars().take(100).collect(),
            provider: m.provider.chars().take(40).collect(),
            paid_at,
            total_paid: total,
            detail: c.limits(),
        }));
    }
    let (Some(channel), Some(payer), Some(total_paid), Some(paid_at)) = (ch, payer, total, paid_at) else {
        return Err(c.invalid());
    };
    Ok(ParsedPayment::Valid(Payment {
        payment_id: m.payment_id.clone(),
        dossier_code: m.dossier_code.clone(),
        procedure_code: m.procedure_code.clone(),
        agency_code: m.agency_code.clone(),
        channel,
        payer,
        lines,
        total_paid,
        paid_at,
        provider: m.provider.clone(),
        provider_reference: m.provider_reference.clone(),
        payment_method: payment_method(m.payment_method, m.paid_online),
        paid_online: m.paid_online,
        assessment_id: Some(m.assessment_id.clone()).filter(|s| !s.is_empty()),
        assessed_at,
    }))
}

/// A validated refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub refund_id: String,
    pub payment_id: String,
    /// Empty: the whole payment.
    pub lines: Vec<(String, Vnd)>,
    pub reason: String,
    pub refunded_at: DateTime<Utc>,
}

/// A refund event as the issuer acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedRefund {
    Valid(Refund),
    /// Well formed but over a business limit: rejected with this detail.
    OverLimit {
        refund_id: String,
        payment_id: String,
        detail: String,
    },
}

/// Validates a payment-refunded event: contract violations are `Err` (dead letter),
/// business limits an `OverLimit` (rejection).
pub fn parse_refund(m: &v1::PaymentRefunded) -> Result<ParsedRefund, Invalid> {
    let mut c = Check::new();
    c.text("refund_id", &m.refund_id, true, 100);
    c.text("payment_id", &m.payment_id, true, 100);
    c.text("reason", &m.reason, true, 500);
    let mut lines = Vec::new();
    if m.lines.len() > MAX_LINES {
        c.limit("lines", format!("{} lines, at most {MAX_LINES} are accepted", m.lines.len()));
    }
    for (i, l) in m.lines.iter().enumerate().take(MAX_LINES) {
        c.text(&format!("lines[{i}].fee_code"), &l.fee_code, true, 40);
        if let Some(a) = c.amount(&format!("lines[{i}].amount"), &l.amount) {
            if a == Vnd::ZERO {
                c.fail(&format!("lines[{i}].amount"), "must be more than 0");
            }
            lines.push((l.fee_code.clone(), a));
        }
    }
    let at = c.time("refunded_at", m.refunded_at.as_ref(), true);
    if !c.errors.is_empty() {
        return Err(c.invalid());
    }
    if !c.limits.is_empty() {
        return Ok(ParsedRefund::OverLimit {
            refund_id: m.refund_id.chars().take(100).collect(),
            payment_id: m.payment_id.chars().take(100).collect(),
            detail: c.limits(),
        });
    }
    let Some(refunded_at) = at else {
        return Err(c.invalid());
    };
    Ok(ParsedRefund::Valid(Refund {
        refund_id: m.refund_id.clone(),
        payment_id: m.payment_id.clone(),
        lines,
        reason: m.reason.clone(),
        refunded_at,
    }))
}

/// A validated assessment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentRequest {
    pub assessment_id: String,
    pub agency_code: String,
    pub procedure_code: String,
    pub channel: Channel,
    pub paid_online: bool,
    pub categories: Vec<Category>,
    pub identity_level: u8,
    /// Not a Vietnamese citizen.
    pub foreign_payer: bool,
    pub lines: Vec<(String, u32)>,
    pub at: Option<DateTime<Utc>>,
}

/// Validates a fee-assessment-requested event: contract violations are `Err` (dead
/// letter); a request over a business limit is `Ok(Err(detail))`, answered with that error.
pub fn parse_assessment_request(m: &v1::FeeAssessmentRequested) -> Result<Result<AssessmentRequest, String>, Invalid> {
    let mut c = Check::new();
    c.text("assessment_id", &m.assessment_id, true, 100);
    c.text("agency_code", &m.agency_code, true, 40);
    c.text("procedure_code", &m.procedure_code, true, 100);
    c.text("dossier_code", &m.dossier_code, false, 100);
    let ch = channel(m.channel);
    if ch.is_none() {
        c.fail("channel", "must be CHANNEL_FULLY_ONLINE, CHANNEL_PARTLY_ONLINE or CHANNEL_COUNTER");
    }
    let cats = categories(&mut c, "categories", &m.categories);
    if m.identity_level > 2 {
        c.fail("identity_level", format!("must be 0 (unknown), 1 or 2, got {}", m.identity_level));
    }
    if m.lines.is_empty() {
        c.fail("lines", "at least one fee line is required");
    }
    if m.lines.len() > MAX_LINES {
        c.limit("lines", format!("{} lines, at most {MAX_LINES} are accepted", m.lines.len()));
    }
    let mut lines = Vec::new();
    for (i, l) in m.lines.iter().enumerate().take(MAX_LINES) {
        c.text(&format!("lines[{i}].fee_code"), &l.fee_code, true, 40);
        if l.quantity == 0 {
            c.fail(&format!("lines[{i}].quantity"), "must be at least 1");
        } else if l.quantity > MAX_QUANTITY {
            c.limit(
                &format!("lines[{i}].quantity"),
                format!("{} units, at most {MAX_QUANTITY} are accepted on a line", l.quantity),
            );
        }
        lines.push((l.fee_code.clone(), l.quantity));
    }
    let at = c.time("at", m.at.as_ref(), false);
    if !c.errors.is_empty() {
        return Err(c.invalid());
    }
    if !c.limits.is_empty() {
        return Ok(Err(c.limits()));
    }
    let Some(channel) = ch else {
        return Err(c.invalid());
    };
    Ok(Ok(AssessmentRequest {
        assessment_id: m.assessment_id.clone(),
        agency_code: m.agency_code.clone(),
        procedure_code: m.procedure_code.clone(),
        channel,
        paid_online: m.paid_online,
        categories: cats,
        identity_level: m.identity_level.min(2) as u8,
        foreign_payer: m.foreign_payer,
        lines,
        at,
    }))
}

/// Domain time to protobuf.
pub fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

/// Protobuf time to domain.
pub fn from_ts(t: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

/// An assessed line on the wire.
pub fn assessed_line_pb(l: &LineAssessment) -> v1::AssessedLine {
    v1::AssessedLine {
        fee_code: l.fee_code.clone(),
        fee_name: l.fee_name.clone(),
        kind: fee_kind_pb(l.kind) as i32,
        quantity: l.quantity,
        base_amount: l.base.to_string(),
        waiver: l.applied.as_ref().map(|a| v1::AppliedWaiver {
            rule_id: a.rule_id.clone(),
            document_number: a.document_number.clone(),
            issuing_body: a.issuing_body.clone(),
            description: a.description.clone(),
            reduction: a.reduction.to_string(),
        }),
        amount_due: l.due.to_string(),
    }
}

/// A stored receipt's payer (its protobuf, as the issuer wrote it) as a receipt names them.
pub fn stored_payer_info(p: &v1::Payer) -> feepay_domain::receipt::PayerInfo {
    feepay_domain::receipt::PayerInfo {
        full_name: p.full_name.clone(),
        personal_id: p.personal_id.clone(),
        tax_code: p.tax_code.clone(),
        passport: p.passport_number.clone(),
        address: p.address.clone(),
    }
}

/// A stored receipt's line (its protobuf, as the issuer wrote it) back into the domain;
/// the error names what does not decode.
pub fn stored_line(l: &v1::AssessedLine) -> Result<LineAssessment, String> {
    let amount = |what: &str, s: &str| Vnd::parse(s).map_err(|e| format!("line {what}: {e}"));
    let kind = fee_kind(l.kind).ok_or_else(|| format!("line kind: {}", l.kind))?;
    let applied = match &l.waiver {
        Some(w) => Some(feepay_domain::waiver::AppliedRule {
            rule_id: w.rule_id.clone(),
            document_number: w.document_number.clone(),
            issuing_body: w.issuing_body.clone(),
            description: w.description.clone(),
            reduction: amount("reduction", &w.reduction)?,
        }),
        None => None,
    };
    Ok(LineAssessment {
        fee_code: l.fee_code.clone(),
        fee_name: l.fee_name.clone(),
        kind,
        quantity: l.quantity,
        base: amount("base amount", &l.base_amount)?,
        due: amount("amount due", &l.amount_due)?,
        applied,
        candidates: Vec::new(),
    })
}

/// A payer on the wire.
pub fn payer_pb(p: &Payer) -> v1::Payer {
    v1::Payer {
        full_name: p.full_name.clone(),
        personal_id: p.personal_id.as_ref().map(|i| i.expose().to_string()).unwrap_or_default(),
        tax_code: p.tax_code.as_ref().map(|t| t.expose().to_string()).unwrap_or_default(),
        email: p.email.clone().unwrap_or_default(),
        address: p.address.clone(),
        categories: p.categories.iter().map(|c| category_pb(*c) as i32).collect(),
        passport_number: p.passport.clone().unwrap_or_default(),
        identity_level: u32::from(p.identity_level),
    }
}
