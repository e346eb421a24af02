//! Fee waivers as legal data and the engine that applies them.
//!
//! Stacking policy: at most one rule applies per fee line, the one that leaves the payer
//! paying least; ties go to the higher priority, then to the smaller rule id. Rules that
//! could both match the same line with the same priority are refused when loaded.
//!
//! Rounding: a percentage cut can produce a fraction of a đồng. No legal rule was found, so
//! the mode is set in the rule file (`rounding = "half_up"` by default) and applies to the
//! amount due; the result is always clamped to `0..=base`.

use crate::money::Vnd;
use crate::numbering::date_gmt7;
use crate::reference::{line_of, toml_error, DataError, DataErrors, Fee, ReferenceData};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;

/// How the dossier was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    FullyOnline,
    PartlyOnline,
    Counter,
}

impl Channel {
    pub fn code(self) -> &'static str {
        match self {
            Channel::FullyOnline => "fully_online",
            Channel::PartlyOnline => "partly_online",
            Channel::Counter => "counter",
        }
    }
    pub fn vi(self) -> &'static str {
        match self {
            Channel::FullyOnline => "trực tuyến toàn trình",
            Channel::PartlyOnline => "trực tuyến một phần",
            Channel::Counter => "trực tiếp",
        }
    }
    pub const ALL: [Channel; 3] = [Channel::FullyOnline, Channel::PartlyOnline, Channel::Counter];
}

/// Beneficiary groups that laws and resolutions exempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    PoorHousehold,
    NearPoorHousehold,
    MeritoriousService,
    PersonWithDisabilities,
    MartyrRelative,
    WarInvalid,
    HeroicMother,
    DifficultCommuneResident,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::PoorHousehold,
        Category::NearPoorHousehold,
        Category::MeritoriousService,
        Category::PersonWithDisabilities,
        Category::MartyrRelative,
        Category::WarInvalid,
        Category::HeroicMother,
        Category::DifficultCommuneResident,
    ];
    pub fn vi(self) -> &'static str {
        match self {
            Category::PoorHousehold => "hộ nghèo",
            Category::NearPoorHousehold => "hộ cận nghèo",
            Category::MeritoriousService => "gia đình có công với cách mạng",
            Category::PersonWithDisabilities => "người khuyết tật",
            Category::MartyrRelative => "thân nhân liệt sĩ",
            Category::WarInvalid => "thương binh",
            Category::HeroicMother => "Bà mẹ Việt Nam anh hùng",
            Category::DifficultCommuneResident => "cư dân xã đặc biệt khó khăn",
        }
    }
}

/// Rounding of the amount due after a percentage cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Half a đồng and more rounds up (commercial rounding). The default.
    #[default]
    HalfUp,
    /// Banker's rounding.
    HalfEven,
    /// Always down: the payer keeps any fraction.
    Down,
    /// Always up: the agency keeps any fraction.
    Up,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::Down => RoundingStrategy::ToZero,
            Rounding::Up => RoundingStrategy::AwayFromZero,
        }
    }
}

/// The legal document a rule comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegalBasis {
    pub document_number: String,
    pub issuing_body: String,
    pub signed_on: NaiveDate,
}

/// What a rule does to the base amount of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Effect {
    /// Percentage off the base (0 < p ≤ 100).
    PercentOff(Decimal),
    /// A fixed amount off per unit.
    AmountOff(Vnd),
    /// A set amount per unit replaces the base (when lower).
    SetAmount(Vnd),
    /// Nothing is due.
    Exempt,
}

/// Where a rule applies. Every non-empty list must match; an empty list matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Scope {
    /// Agency subtrees (an agency and everything below it).
    pub agencies: Vec<String>,
    pub fee_codes: Vec<String>,
    pub procedure_codes: Vec<String>,
    /// Fees whose rate is set by these authorities.
    pub authorities: Vec<String>,
}

/// Who and how the payer must be for the rule to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Conditions {
    /// Allowed channels; empty = any.
    pub channels: Vec<Channel>,
    /// `Some(true)`: only when paid online.
    pub paid_online: Option<bool>,
    /// The payer must belong to at least one of these; empty = anyone.
    pub categories_any: Vec<Category>,
    /// The payer's electronic identity account (VNeID) must be at least this level (1 or
    /// 2), as rules that favour identified online users require.
    pub identity_level_min: Option<u8>,
    /// Only Vietnamese citizens (a payer identified by a Vietnamese personal
    /// identification number), as Circular 117/2026/TT-BTC Art. 1 says of its waivers.
    pub citizens_only: bool,
}

/// A waiver rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WaiverRule {
    pub id: String,
    pub legal: LegalBasis,
    pub description: String,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    pub scope: Scope,
    pub conditions: Conditions,
    pub effect: Effect,
    pub priority: i32,
    /// Line of the rule in its file.
    pub line: usize,
}

/// The rules of one version of the rule files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub rules: Vec<WaiverRule>,
    pub rounding: Rounding,
}

/// One fee line to assess.
#[derive(Debug, Clone)]
pub struct LineQuery<'a> {
    pub agency: &'a str,
    pub procedure: &'a str,
    pub fee: &'a Fee,
    pub quantity: u32,
    pub channel: Channel,
    pub paid_online: bool,
    pub categories: &'a [Category],
    /// Level of the payer's electronic identity account; 0 when unknown.
    pub identity_level: u8,
    /// The payer is identified by a Vietnamese personal identification number.
    pub citizen: bool,
    pub at: DateTime<Utc>,
}

/// Why a rule did not apply to a line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Miss {
    NotInForce,
    OtherAgency,
    OtherProcedure,
    Channel(Channel),
    NotPaidOnline,
    NoCategory,
    IdentityLevel { required: u8, had: u8 },
    NotCitizen,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::NotInForce => write!(f, "not in force at that date"),
            Miss::OtherAgency => write!(f, "agency outside the rule's scope"),
            Miss::OtherProcedure => write!(f, "procedure outside the rule's scope"),
            Miss::Channel(c) => write!(f, "channel {} not covered", c.code()),
            Miss::NotPaidOnline => write!(f, "requires online payment"),
            Miss::IdentityLevel { required, had } => {
                write!(f, "requires an identity account of level {required} (the payer's: {had})")
            }
            Miss::NotCitizen => write!(f, "only for Vietnamese citizens (a personal identification number)"),
            Miss::NoCategory => {
                write!(f, "payer is in none of the required beneficiary categories")
            }
        }
    }
}

/// How one candidate rule fared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    pub rule_id: String,
    pub outcome: Result<Vnd, Miss>,
}

/// The rule applied to a line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedRule {
    pub rule_id: String,
    pub document_number: String,
    pub issuing_body: String,
    pub description: String,
    pub reduction: Vnd,
}

/// A line after waivers, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineAssessment {
    pub fee_code: String,
    pub fee_name: String,
    pub kind: crate::reference::FeeKind,
    pub quantity: u32,
    pub base: Vnd,
    pub due: Vnd,
    pub applied: Option<AppliedRule>,
    /// Every rule whose fee scope covered the line, matched or not.
    pub candidates: Vec<Candidate>,
}

impl LineAssessment {
    pub fn reduction(&self) -> Vnd {
        self.base - self.due
    }

    /// A one-paragraph explanation for operators.
    pub fn explain(&self) -> String {
        let mut s = format!("{} × {}: base {} đ", self.fee_code, self.quantity, self.base.grouped());
        if self.candidates.is_empty() {
            s.push_str("; no waiver rule covers this fee");
        }
        for c in &self.candidates {
            match &c.outcome {
                Ok(due) => s.push_str(&format!("; {} matches (due {} đ)", c.rule_id, due.grouped())),
                Err(miss) => s.push_str(&format!("; {} does not apply ({miss})", c.rule_id)),
            }
        }
        match &self.applied {
            Some(a) => s.push_str(&format!(
                "; applied {} ({}), the lowest amount due: {} đ",
                a.rule_id,
                a.document_number,
                self.due.grouped()
            )),
            None => s.push_str(&format!("; due {} đ", self.due.grouped())),
        }
        s
    }
}

impl WaiverRule {
    /// Whether the rule's fee dimension (fee codes, authorities) covers a fee.
    pub fn covers_fee(&self, fee: &Fee) -> bool {
        (self.scope.fee_codes.is_empty() || self.scope.fee_codes.contains(&fee.code))
            && (self.scope.authorities.is_empty() || self.scope.authorities.contains(&fee.authority))
    }

    /// In force on a GMT+7 date (both ends inclusive).
    pub fn in_force_on(&self, date: NaiveDate) -> bool {
        self.valid_from <= date && self.valid_until.is_none_or(|u| date <= u)
    }

    fn check(&self, reference: &ReferenceData, q: &LineQuery<'_>) -> Result<(), Miss> {
        if !self.in_force_on(date_gmt7(q.at)) {
            return Err(Miss::NotInForce);
        }
        if !self.scope.agencies.is_empty()
            && !self.scope.agencies.iter().any(|root| reference.is_within(q.agency, root))
        {
            return Err(Miss::OtherAgency);
        }
        if !self.scope.procedure_codes.is_empty() && !self.scope.procedure_codes.iter().any(|p| p == q.procedure) {
            return Err(Miss::OtherProcedure);
        }
        if !self.conditions.channels.is_empty() && !self.conditions.channels.contains(&q.channel) {
            return Err(Miss::Channel(q.channel));
        }
        if self.conditions.paid_online == Some(true) && !q.paid_online {
            return Err(Miss::NotPaidOnline);
        }
        if !self.conditions.categories_any.is_empty()
            && !self.conditions.categories_any.iter().any(|c| q.categories.contains(c))
        {
            return Err(Miss::NoCategory);
        }
        if let Some(required) = self.conditions.identity_level_min {
            if q.identity_level < required {
                return Err(Miss::IdentityLevel { required, had: q.identity_level });
            }
        }
        if self.conditions.citizens_only && !q.citizen {
            return Err(Miss::NotCitizen);
        }
        Ok(())
    }

    /// Amount due for `quantity` units of `base_unit` under this rule.
    /// What is due for a line whose schedule amount is `base` (`quantity` units; tiers and
    /// caps already applied).
    pub fn due(&self, base: Vnd, quantity: u32, rounding: Rounding) -> Vnd {
        let base = base.to_decimal();
        let due = match self.effect {
            Effect::Exempt => Decimal::ZERO,
            Effect::PercentOff(p) => (base * (Decimal::ONE_HUNDRED - p) / Decimal::ONE_HUNDRED)
                .round_dp_with_strategy(0, rounding.strategy()),
            Effect::AmountOff(a) => base - a.to_decimal() * Decimal::from(quantity),
            Effect::SetAmount(a) => a.to_decimal() * Decimal::from(quantity),
        };
        let clamped = due.max(Decimal::ZERO).min(base);
        Vnd::from_decimal(clamped).unwrap_or(Vnd::ZERO)
    }
}

/// A line that cannot be assessed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssessError {
    #[error("fee {fee}: quantity must be between 1 and 10000, got {quantity}")]
    Quantity { fee: String, quantity: u32 },
    #[error("fee {fee}: base amount times quantity exceeds 10^15 đồng")]
    Overflow { fee: String },
}

impl RuleSet {
    /// Assesses one fee line: base, every candidate rule with its outcome, the rule applied.
    pub fn assess_line(&self, reference: &ReferenceData, q: &LineQuery<'_>) -> Result<LineAssessment, AssessError> {
        if q.quantity == 0 || q.quantity > 10_000 {
            return Err(AssessError::Quantity { fee: q.fee.code.clone(), quantity: q.quantity });
        }
        let base = q.fee.base_for(q.quantity).ok_or_else(|| AssessError::Overflow { fee: q.fee.code.clone() })?;
        let mut candidates = Vec::new();
        let mut best: Option<(&WaiverRule, Vnd)> = None;
        for rule in self.rules.iter().filter(|r| r.covers_fee(q.fee)) {
            let outcome = rule.check(reference, q).map(|()| rule.due(base, q.quantity, self.rounding));
            if let Ok(due) = outcome {
                let better = match best {
                    None => true,
                    Some((b, bdue)) => {
                        due < bdue
                            || (due == bdue
                                && (rule.priority > b.priority || (rule.priority == b.priority && rule.id < b.id)))
                    }
                };
                if better {
                    best = Some((rule, due));
                }
            }
            candidates.push(Candidate { rule_id: rule.id.clone(), outcome });
        }
        let (due, applied) = match best {
            Some((rule, due)) if due < base => (
                due,
                Some(AppliedRule {
                    rule_id: rule.id.clone(),
                    document_number: rule.legal.document_number.clone(),
                    issuing_body: rule.legal.issuing_body.clone(),
                    description: rule.description.clone(),
                    reduction: base - due,
                }),
            ),
            _ => (base, None),
        };
        Ok(LineAssessment {
            fee_code: q.fee.code.clone(),
            fee_name: q.fee.name.clone(),
            kind: q.fee.kind,
            quantity: q.quantity,
            base,
            due,
            applied,
            candidates,
        })
    }

    /// Rules in force on a date whose scope includes an agency (directly or through a parent).
    pub fn in_force_for<'a>(&'a self, reference: &ReferenceData, agency: &str, date: NaiveDate) -> Vec<&'a WaiverRule> {
        self.rules
            .iter()
            .filter(|r| r.in_force_on(date))
            .filter(|r| {
                r.scope.agencies.is_empty() || r.scope.agencies.iter().any(|root| reference.is_within(agency, root))
            })
            .collect()
    }
}

// ---- parsing -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rounding: Rounding,
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    id: String,
    document_number: String,
    issuing_body: String,
    signed_on: NaiveDate,
    description: String,
    valid_from: NaiveDate,
    valid_until: Option<NaiveDate>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    scope: ScopeEntry,
    #[serde(default)]
    conditions: ConditionsEntry,
    effect: EffectEntry,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScopeEntry {
    #[serde(default)]
    agencies: Vec<String>,
    #[serde(default)]
    fee_codes: Vec<String>,
    #[serde(default)]
    procedure_codes: Vec<String>,
    #[serde(default)]
    authorities: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConditionsEntry {
    #[serde(default)]
    channels: Vec<Channel>,
    paid_online: Option<bool>,
    #[serde(default)]
    categories_any: Vec<Category>,
    identity_level_min: Option<u8>,
    #[serde(default)]
    citizens_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
enum EffectEntry {
    PercentOff { percent: Decimal },
    AmountOff { amount: i64 },
    SetAmount { amount: i64 },
    Exempt,
}

fn overlaps_dates(a: &WaiverRule, b: &WaiverRule) -> bool {
    let a_end = a.valid_until.unwrap_or(NaiveDate::MAX);
    let b_end = b.valid_until.unwrap_or(NaiveDate::MAX);
    a.valid_from <= b_end && b.valid_from <= a_end
}

fn lists_meet<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
}

/// Whether two rules could both match one line.
fn could_both_match(reference: &ReferenceData, a: &WaiverRule, b: &WaiverRule) -> Option<String> {
    if !overlaps_dates(a, b) {
        return None;
    }
    let shared_fee = reference.fees.values().find(|f| a.covers_fee(f) && b.covers_fee(f))?;
    let agencies_meet = a.scope.agencies.is_empty()
        || b.scope.agencies.is_empty()
        || a.scope
            .agencies
            .iter()
            .any(|x| b.scope.agencies.iter().any(|y| reference.is_within(x, y) || reference.is_within(y, x)));
    if !agencies_meet
        || !lists_meet(&a.scope.procedure_codes, &b.scope.procedure_codes)
        || !lists_meet(&a.conditions.channels, &b.conditions.channels)
    {
        return None;
    }
    // Categories never separate two rules: a payer may belong to several groups.
    Some(shared_fee.code.clone())
}

impl RuleSet {
    /// Parses and validates a rule file against the reference data.
    pub fn parse(file: &str, text: &str, reference: &ReferenceData) -> Result<RuleSet, DataErrors> {
        let parsed: RuleFile = toml::from_str(text).map_err(|e| DataErrors(vec![toml_error(file, text, &e)]))?;
        let mut errors = Vec::new();
        let mut rules: Vec<WaiverRule> = Vec::new();
        let mut ids = BTreeSet::new();
        for spanned in parsed.rule {
            let line = line_of(text, spanned.span().start);
            let r = spanned.into_inner();
            let mut err = |m: String| errors.push(DataError::new(file, line, format!("rule {}: {m}", r.id)));
            if r.id.is_empty()
                || !r.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                err("id must be non-empty ASCII letters, digits, '-', '_' or '.'".into());
            }
            if !ids.insert(r.id.clone()) {
                err("id is used twice".into());
            }
            if r.document_number.trim().is_empty()
                || r.issuing_body.trim().is_empty()
                || r.description.trim().is_empty()
            {
                err("document_number, issuing_body and description are required".into());
            }
            // The description travels on the receipt in a TTKhac/TTin entry, whose data
            // the tax authority's format rules cap at 500 characters.
            if r.description.chars().count() > crate::receipt::document::OTHER_INFO_MAX {
                err(format!(
                    "description has {} characters; a receipt carries at most {}",
                    r.description.chars().count(),
                    crate::receipt::document::OTHER_INFO_MAX
                ));
            }
            if let Some(until) = r.valid_until {
                if until < r.valid_from {
                    err(format!("window ends ({until}) before it starts ({})", r.valid_from));
                }
            }
            if r.scope.fee_codes.is_empty() && r.scope.authorities.is_empty() && r.scope.procedure_codes.is_empty() {
                err("scope must name fee_codes, procedure_codes or authorities".into());
            }
            for code in &r.scope.fee_codes {
                if !reference.fees.contains_key(code) {
                    err(format!("fee {code} is not in the fee schedule"));
                }
            }
            for code in &r.scope.agencies {
                if !reference.agencies.contains_key(code) {
                    err(format!("agency {code} is not defined"));
                }
            }
            for a in &r.scope.authorities {
                if !reference.fees.values().any(|f| &f.authority == a) {
                    err(format!("no fee in the schedule is set by authority {a}"));
                }
            }
            let effect = match r.effect {
                EffectEntry::Exempt => Effect::Exempt,
                EffectEntry::PercentOff { percent } => {
                    if percent <= Decimal::ZERO || percent > Decimal::ONE_HUNDRED {
                        err(format!("percent_off must be more than 0 and at most 100, got {percent}"));
                    }
                    Effect::PercentOff(percent)
                }
                EffectEntry::AmountOff { amount } => match Vnd::new(amount) {
                    Ok(v) if v > Vnd::ZERO => Effect::AmountOff(v),
                    _ => {
                        err(format!("amount_off must be a positive whole number of đồng, got {amount}"));
                        Effect::AmountOff(Vnd::ZERO)
                    }
                },
                EffectEntry::SetAmount { amount } => match Vnd::new(amount) {
                    Ok(v) => {
                        for fee in reference.fees.values().filter(|f| {
                            (r.scope.fee_codes.is_empty() || r.scope.fee_codes.contains(&f.code))
                                && (r.scope.authorities.is_empty() || r.scope.authorities.contains(&f.authority))
                        }) {
                            if v > fee.base_amount {
                                err(format!(
                                    "set_amount {amount} is above the base amount {} of fee {}",
                                    fee.base_amount, fee.code
                                ));
                            }
                        }
                        Effect::SetAmount(v)
                    }
                    Err(e) => {
                        err(format!("set_amount: {e}"));
                        Effect::SetAmount(Vnd::ZERO)
                    }
                },
            };
            rules.push(WaiverRule {
                id: r.id,
                legal: LegalBasis {
                    document_number: r.document_number,
                    issuing_body: r.issuing_body,
                    signed_on: r.signed_on,
                },
                description: r.description,
                valid_from: r.valid_from,
                valid_until: r.valid_until,
                scope: Scope {
                    agencies: r.scope.agencies,
                    fee_codes: r.scope.fee_codes,
                    procedure_codes: r.scope.procedure_codes,
                    authorities: r.scope.authorities,
                },
                conditions: Conditions {
                    channels: r.conditions.channels,
                    paid_online: r.conditions.paid_online,
                    categories_any: r.conditions.categories_any,
                    identity_level_min: r.conditions.identity_level_min,
                    citizens_only: r.conditions.citizens_only,
                },
                effect,
                priority: r.priority,
                line,
            });
        }
        for (i, a) in rules.iter().enumerate() {
            for b in &rules[i + 1..] {
                if a.priority == b.priority {
                    if let Some(fee) = could_both_match(reference, a, b) {
                        errors.push(DataError::new(
                            file,
                            b.line,
                            format!(
                                "rule {}: ambiguous overlap with rule {} (line {}): both can apply to fee {fee} with priority {}; give one a different priority or make their windows or scopes disjoint",
                                b.id, a.id, a.line, a.priority
                            ),
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(RuleSet { rules, rounding: parsed.rounding })
        } else {
            Err(DataErrors(errors))
        }
    }
}
