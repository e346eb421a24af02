//! Reference data: receipt forms, the agency tree, receipt series, delegations and the fee
//! schedule.
//!
//! Parsed from versioned TOML files (`deploy/reference/`); every problem is reported with
//! the file and line it comes from, and nothing is applied unless everything is valid.
//! Rooms: [`agencies`] reads the agencies file (forms, agencies, series, delegations),
//! [`fees`] the fee schedule; this module holds the validated types and their queries.

mod agencies;
mod fees;

use crate::forms::{Form, FormVersions};
use crate::money::Vnd;
use crate::numbering::ReceiptNumber;
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A problem in a data file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DataError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl DataError {
    pub fn new(file: &str, line: usize, message: impl Into<String>) -> Self {
        DataError { file: file.to_string(), line, message: message.into() }
    }
}

/// All errors of a load, printable one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataErrors(pub Vec<DataError>);

impl fmt::Display for DataErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DataErrors {}

/// Line number (1-based) of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Turns a TOML syntax or shape error into a [`DataError`].
pub fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> DataError {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
    DataError::new(file, line, e.message().to_string())
}

/// Fee (phí) or charge (lệ phí).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeKind {
    Phi,
    LePhi,
}

impl FeeKind {
    /// Vietnamese name as printed.
    pub fn vi(self) -> &'static str {
        match self {
            FeeKind::Phi => "Phí",
            FeeKind::LePhi => "Lệ phí",
        }
    }
    /// Stable code used in storage and files.
    pub fn code(self) -> &'static str {
        match self {
            FeeKind::Phi => "phi",
            FeeKind::LePhi => "le_phi",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "phi" => Some(FeeKind::Phi),
            "le_phi" => Some(FeeKind::LePhi),
            _ => None,
        }
    }
}

/// A name an agency bore until some day (a province that became a city, a district merged).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormerName {
    pub name: String,
    /// The last day the agency bore this name.
    pub until: NaiveDate,
}

/// A public administration center or any agency above or below it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Agency {
    pub code: String,
    /// The name in force now.
    pub name: String,
    pub tax_code: String,
    pub address: String,
    pub parent: Option<String>,
    pub email_from: Option<String>,
    pub reply_to: Option<String>,
    /// The last day the agency existed (e.g. districts and merged provinces on 30 June
    /// 2025); payments after it are refused, its receipts stay valid.
    pub until: Option<NaiveDate>,
    /// Names borne before, oldest first: a receipt prints the name of its date.
    pub former_names: Vec<FormerName>,
    /// Fees another body collects by law that this agency issues receipts for under a
    /// registered delegation (Decree 254/2026/NĐ-CP Art. 25).
    pub collects_for: Vec<Mandate>,
    /// The tax office that manages the agency (named in its notices and reports).
    pub tax_office: Option<crate::tax::TaxOffice>,
}

impl Agency {
    pub fn exists_on(&self, date: NaiveDate) -> bool {
        self.until.is_none_or(|u| date <= u)
    }

    /// The name the agency bore on a date.
    pub fn name_on(&self, date: NaiveDate) -> &str {
        self.former_names.iter().find(|n| date <= n.until).map_or(&self.name, |n| &n.name)
    }

    /// The agency's own tax office, or the nearest ancestor's.
    pub fn tax_office<'a>(&'a self, reference: &'a ReferenceData) -> Option<&'a crate::tax::TaxOffice> {
        let mut cur = Some(self);
        let mut steps = 0;
        while let Some(a) = cur {
            if let Some(t) = &a.tax_office {
                return Some(t);
            }
            steps += 1;
            if steps > reference.agencies.len() {
                return None;
            }
            cur = a.parent.as_ref().and_then(|p| reference.agencies.get(p));
        }
        None
    }

    /// The province (or city) part of the address, for the place of a document.
    pub fn place(&self) -> String {
        self.address.rsplit(',').next().unwrap_or(&self.address).trim().to_string()
    }
}

/// Consecutive receipt numbers `from..=to` of a series, used from the smallest up (Decree
/// 254/2026/NĐ-CP Art. 25.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberRange {
    pub from: u32,
    pub to: u32,
}

impl NumberRange {
    /// Every number a series may use.
    pub const WHOLE: NumberRange = NumberRange { from: 1, to: ReceiptNumber::MAX };

    pub fn overlaps(&self, other: &NumberRange) -> bool {
        self.from <= other.to && other.from <= self.to
    }

    /// How many numbers are left after `last_used` (0 when none was used yet: `from - 1`).
    pub fn left_after(&self, last_used: u32) -> u32 {
        self.to.saturating_sub(last_used.max(self.from.saturating_sub(1)))
    }

    /// The number that follows `last_used` in the range, if any.
    pub fn next_after(&self, last_used: u32) -> Option<ReceiptNumber> {
        let n = last_used.max(self.from - 1) + 1;
        (n <= self.to).then(|| ReceiptNumber::new(n)).flatten()
    }
}

impl fmt::Display for NumberRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:07}–{:07}", self.from, self.to)
    }
}

/// A delegation (ủy nhiệm lập biên lai, Decree 254/2026/NĐ-CP Art. 25): in writing, notified
/// to the tax offices of both sides at least three days before the delegate issues, naming
/// the receipts delegated (template, symbol, numbers from … to …), their purpose and term.
/// The delegate issues receipts of the principal's series within its range; the receipt
/// names the principal (name, tax code) and the delegate (name, address); the delegate
/// signs and transmits the data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mandate {
    /// The body that collects by law (bên ủy nhiệm).
    pub principal: String,
    pub fees: Vec<String>,
    /// The principal's series the delegate uses.
    pub template: String,
    pub letters: String,
    pub numbers: NumberRange,
    /// The day the delegation was notified to both tax offices.
    pub notified_on: NaiveDate,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    /// The written delegation it rests on (number, date).
    pub basis: String,
}

impl Mandate {
    pub fn in_force_on(&self, date: NaiveDate) -> bool {
        date >= self.valid_from && self.valid_until.is_none_or(|u| date <= u)
    }
}

/// A receipt series of a collecting agency: a template and, when its symbol rule uses them,
/// letters; for some fee kinds. The receipt symbol of a day follows the form version in
/// force that day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Series {
    pub agency: String,
    /// The form's template symbol.
    pub template: String,
    pub letters: String,
    pub kinds: Vec<FeeKind>,
    /// The versions of the form.
    #[serde(skip)]
    pub forms: FormVersions,
    /// Number ranges of the series delegated to other agencies, by delegate.
    pub delegated: Vec<(String, NumberRange)>,
}

impl Series {
    /// The form version in force on a date (GMT+7).
    pub fn form_on(&self, date: NaiveDate) -> Option<&Form> {
        self.forms.on(date)
    }

    /// The receipt symbol of a date: the form version of that date, the date's year.
    pub fn symbol_on(&self, date: NaiveDate) -> Option<String> {
        use chrono::Datelike;
        self.form_on(date).map(|f| f.symbol.symbol(&self.letters, date.year()))
    }

    /// The numbers the collector itself uses: everything below the lowest delegated range
    /// (all numbers when nothing is delegated); `None` when a delegate starts at 1.
    pub fn own_range(&self) -> Option<NumberRange> {
        match self.delegated.iter().map(|(_, r)| r.from).min() {
            None => Some(NumberRange::WHOLE),
            Some(1) => None,
            Some(from) => Some(NumberRange { from: 1, to: from - 1 }),
        }
    }

    /// The numbers a receipt issued by `delegate` (or by the collector itself) uses.
    pub fn range_for(&self, delegate: Option<&str>) -> Option<NumberRange> {
        match delegate {
            None => self.own_range(),
            Some(d) => self.delegated.iter().find(|(code, _)| code == d).map(|(_, r)| *r),
        }
    }
}

/// A further rate from some unit on: certification of copies costs less from the third
/// page (Circular 226/2016/TT-BTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The first unit (1-based) this rate applies to.
    pub from: u32,
    pub amount: Vnd,
}

/// A fee or charge of the schedule, per unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fee {
    pub code: String,
    pub name: String,
    pub kind: FeeKind,
    /// Rate of the first unit (and of every unit when there are no tiers).
    pub base_amount: Vnd,
    /// Lower rates from some unit on.
    pub tiers: Vec<Tier>,
    /// Most a line of this fee costs, whatever the quantity.
    pub cap: Option<Vnd>,
    /// Who sets the rate, e.g. `BTC` (Ministry of Finance) or `HDND-BN` (provincial council).
    pub authority: String,
    /// The legal text setting the rate.
    pub basis: String,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    /// The body the fee's text names as collector; `None`: whoever the payment names.
    pub collector: Option<String>,
}

impl Fee {
    pub fn in_force_on(&self, date: NaiveDate) -> bool {
        date >= self.valid_from && self.valid_until.is_none_or(|u| date <= u)
    }

    /// The amount of `quantity` units at the schedule's rates: tiers, then the cap.
    /// `None` on overflow.
    pub fn base_for(&self, quantity: u32) -> Option<Vnd> {
        let total = if self.tiers.is_empty() {
            self.base_amount.checked_mul(quantity)?
        } else {
            let mut total = Vnd::ZERO;
            let mut rate = self.base_amount;
            let mut tiers = self.tiers.iter().peekable();
            for unit in 1..=quantity {
                while let Some(t) = tiers.next_if(|t| t.from <= unit) {
                    rate = t.amount;
                }
                total = total.checked_add(rate)?;
            }
            total
        };
        Some(match self.cap {
            Some(cap) if total > cap => cap,
            _ => total,
        })
    }
}

/// The validated reference data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceData {
    /// The versions of each form, by template.
    pub forms: BTreeMap<String, FormVersions>,
    pub agencies: BTreeMap<String, Agency>,
    pub series: Vec<Series>,
    pub fees: BTreeMap<String, Fee>,
}

fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.')
}

impl ReferenceData {
    /// Parses and cross-checks an agencies file (forms, agencies, series, delegations) and
    /// a fees file.
    pub fn parse(
        agencies_file: &str,
        agencies_text: &str,
        fees_file: &str,
        fees_text: &str,
    ) -> Result<ReferenceData, DataErrors> {
        let mut errors = Vec::new();
        let mut data = ReferenceData::default();
        let fee_lines = fees::parse(fees_file, fees_text, &mut data, &mut errors);
        agencies::parse(agencies_file, agencies_text, &mut data, &mut errors);
        // Collectors name agencies that exist.
        for (code, fee) in &data.fees {
            if let Some(c) = &fee.collector {
                if !data.agencies.contains_key(c) {
                    errors.push(DataError::new(
                        fees_file,
                        fee_lines.get(code).copied().unwrap_or(1),
                        format!("fee {code}: collector {c} is not defined"),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(data)
        } else {
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            Err(DataErrors(errors))
        }
    }

    /// True when `code` is `root` or below it in the tree.
    pub fn is_within(&self, code: &str, root: &str) -> bool {
        let mut cur = Some(code.to_string());
        let mut steps = 0;
        while let Some(c) = cur {
            if c == root {
                return true;
            }
            steps += 1;
            if steps > self.agencies.len() {
                return false;
            }
            cur = self.agencies.get(&c).and_then(|a| a.parent.clone());
        }
        false
    }

    /// The agency and all its descendants.
    pub fn subtree(&self, root: &str) -> Vec<&Agency> {
        self.agencies.values().filter(|a| self.is_within(&a.code, root)).collect()
    }

    /// The series of an agency that covers a fee kind.
    pub fn series_for(&self, agency: &str, kind: FeeKind) -> Option<&Series> {
        self.series.iter().find(|s| s.agency == agency && s.kinds.contains(&kind))
    }

    /// The series of an agency with this template and letters.
    pub fn series_named(&self, agency: &str, template: &str, letters: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.agency == agency && s.template == template && s.letters == letters)
    }

    /// The series a stored receipt belongs to: its agency, template and the symbol it bears
    /// (the symbol of the day of issue).
    pub fn series_of_receipt(
        &self,
        agency: &str,
        template: &str,
        symbol: &str,
        issued_on: NaiveDate,
    ) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.agency == agency && s.template == template && s.symbol_on(issued_on).as_deref() == Some(symbol))
    }

    /// The form version of a template in force on a date.
    pub fn form_on(&self, template: &str, date: NaiveDate) -> Option<&Form> {
        self.forms.get(template).and_then(|v| v.on(date))
    }
}

#[cfg(test)]
mod tests;
