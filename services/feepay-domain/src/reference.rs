//! Reference data: receipt forms, the agency tree, receipt series and the fee schedule.
//!
//! Parsed from versioned TOML files (`deploy/reference/`); every problem is reported with
//! the file and line it comes from, and nothing is applied unless everything is valid.

use crate::forms::{Form, LetterRule, SymbolRule};
use crate::money::Vnd;
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
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

/// A public administration center or any agency above or below it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Agency {
    pub code: String,
    pub name: String,
    pub tax_code: String,
    pub address: String,
    pub parent: Option<String>,
    pub email_from: Option<String>,
    pub reply_to: Option<String>,
    /// The last day the agency existed (e.g. districts and merged provinces on 30 June
    /// 2025); payments after it are refused, its receipts stay valid.
    pub until: Option<NaiveDate>,
    /// Fees that another body collects by law and this agency takes on its behalf.
    pub collects_for: Vec<Mandate>,
    /// The tax office that manages the agency (named in its notices and reports).
    pub tax_office: Option<crate::tax::TaxOffice>,
}

impl Agency {
    pub fn exists_on(&self, date: NaiveDate) -> bool {
        self.until.is_none_or(|u| date <= u)
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

/// How a desk issues receipts for fees another body collects (the body the fee circular
/// names, e.g. the police for passports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MandateMode {
    /// The receipt is the body's own: its series, its name and tax code, its certificate.
    Identity,
    /// The desk issues under a registered delegation (ủy nhiệm): the body's series, name
    /// and tax code, the desk named as delegate and signing with its own certificate.
    Delegation,
}

/// A desk's mandate to collect some fees for another body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mandate {
    /// The body that collects by law.
    pub principal: String,
    pub fees: Vec<String>,
    pub mode: MandateMode,
    /// The agreement or registration it rests on.
    pub basis: String,
}

/// A receipt series of a collecting agency: a form and, when the form's symbol rule uses
/// them, letters; for some fee kinds. The receipt symbol of a year follows the form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Series {
    pub agency: String,
    /// The form's template symbol.
    pub template: String,
    pub letters: String,
    pub kinds: Vec<FeeKind>,
    /// The receipt's name, from the form.
    pub title: String,
    /// `TLoai` of the form (1 without, 2 with a printed face value).
    pub form_kind: u8,
    #[serde(skip)]
    pub symbol_rule: SymbolRule,
}

impl Series {
    /// The receipt symbol of this series for a year.
    pub fn symbol(&self, year: i32) -> String {
        self.symbol_rule.symbol(&self.letters, year)
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
        let mut total = Vnd::ZERO;
        let mut rate = self.base_amount;
        let mut tiers = self.tiers.iter().peekable();
        for unit in 1..=quantity {
            while let Some(t) = tiers.peek() {
                if t.from <= unit {
                    rate = t.amount;
                    tiers.next();
                } else {
                    break;
                }
            }
            if self.tiers.is_empty() {
                // Flat rate: no loop needed.
                total = self.base_amount.checked_mul(quantity)?;
                break;
            }
            total = total.checked_add(rate)?;
        }
        Some(match self.cap {
            Some(cap) if total > cap => cap,
            _ => total,
        })
    }
}

/// The validated reference data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceData {
    pub forms: BTreeMap<String, Form>,
    pub agencies: BTreeMap<String, Agency>,
    pub series: Vec<Series>,
    pub fees: BTreeMap<String, Fee>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgencyFile {
    #[serde(default)]
    form: Vec<toml::Spanned<FormEntry>>,
    #[serde(default)]
    agency: Vec<toml::Spanned<AgencyEntry>>,
    #[serde(default)]
    series: Vec<toml::Spanned<SeriesEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormEntry {
    template: String,
    kind: u8,
    name: String,
    symbol: String,
    letters: Option<LetterRule>,
    basis: String,
    valid_from: NaiveDate,
    valid_until: Option<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgencyEntry {
    code: String,
    name: String,
    tax_code: String,
    address: String,
    parent: Option<String>,
    email_from: Option<String>,
    reply_to: Option<String>,
    until: Option<NaiveDate>,
    #[serde(default)]
    collects_for: Vec<MandateEntry>,
    tax_office: Option<crate::tax::TaxOffice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MandateEntry {
    principal: String,
    fees: Vec<String>,
    mode: MandateMode,
    basis: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesEntry {
    agency: String,
    form: String,
    #[serde(default)]
    letters: String,
    kinds: Vec<FeeKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeeFile {
    #[serde(default)]
    fee: Vec<toml::Spanned<FeeEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeeEntry {
    code: String,
    name: String,
    kind: FeeKind,
    base_amount: i64,
    #[serde(default)]
    tiers: Vec<TierEntry>,
    cap: Option<i64>,
    authority: String,
    basis: String,
    valid_from: NaiveDate,
    valid_until: Option<NaiveDate>,
    collector: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierEntry {
    from: u32,
    amount: i64,
}

fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.')
}

impl ReferenceData {
    /// Parses and cross-checks an agencies file (agencies and series) and a fees file.
    pub fn parse(
        agencies_file: &str,
        agencies_text: &str,
        fees_file: &str,
        fees_text: &str,
    ) -> Result<ReferenceData, DataErrors> {
        let mut errors = Vec::new();
        let mut data = ReferenceData::default();

        let mut agency_lines: BTreeMap<String, usize> = BTreeMap::new();
        match toml::from_str::<AgencyFile>(agencies_text) {
            Err(e) => errors.push(toml_error(agencies_file, agencies_text, &e)),
            Ok(file) => {
                for spanned in file.form {
                    let line = line_of(agencies_text, spanned.span().start);
                    let f = spanned.into_inner();
                    let err = |m: String| DataError::new(agencies_file, line, m);
                    let symbol = match SymbolRule::parse(&f.symbol) {
                        Ok(r) => r,
                        Err(e) => {
                            errors.push(err(format!("form {}: {e}", f.template)));
                            continue;
                        }
                    };
                    if f.template.is_empty()
                        || f.template.len() > 20
                        || !f.template.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
                    {
                        errors.push(err(format!(
                            "form template {:?} must be 1-20 characters of A-Z, 0-9 or -",
                            f.template
                        )));
                    }
                    if !(1..=2).contains(&f.kind) {
                        errors.push(err(format!(
                            "form {}: kind must be 1 (no face value) or 2 (face value), got {}",
                            f.template, f.kind
                        )));
                    }
                    if f.name.trim().is_empty() || f.basis.trim().is_empty() {
                        errors.push(err(format!("form {}: name and basis are required", f.template)));
                    }
                    if f.valid_until.is_some_and(|u| u < f.valid_from) {
                        errors.push(err(format!("form {}: valid_until is before valid_from", f.template)));
                    }
                    if symbol.uses_letters() && f.letters.is_none() {
                        errors.push(err(format!(
                            "form {}: the symbol rule uses {{letters}}; give a letters rule",
                            f.template
                        )));
                    }
                    if data.forms.contains_key(&f.template) {
                        errors.push(err(format!("form {} is defined twice", f.template)));
                        continue;
                    }
                    data.forms.insert(
                        f.template.clone(),
                        Form {
                            template: f.template,
                            kind: f.kind,
                            name: f.name,
                            symbol,
                            letters: f.letters,
                            basis: f.basis,
                            valid_from: f.valid_from,
                            valid_until: f.valid_until,
                        },
                    );
                }
                let mut lines = BTreeMap::new();
                for spanned in file.agency {
                    let line = line_of(agencies_text, spanned.span().start);
                    let a = spanned.into_inner();
                    let err = |m: String| DataError::new(agencies_file, line, m);
                    if !valid_code(&a.code) {
                        errors.push(err(format!(
                            "agency code {:?} must be 1-40 characters of A-Z, 0-9, '-', '_' or '.'",
                            a.code
                        )));
                        continue;
                    }
                    if a.name.trim().is_empty() {
                        errors.push(err(format!("agency {}: name is empty", a.code)));
                    }
                    if let Err(e) = crate::ids::TaxCode::parse(&a.tax_code) {
                        errors.push(err(format!("agency {}: tax code {:?}: {e}", a.code, a.tax_code)));
                    }
                    if data.agencies.contains_key(&a.code) {
                        errors.push(err(format!(
                            "agency {} is defined twice (first at line {})",
                            a.code, lines[&a.code]
                        )));
                        continue;
                    }
                    lines.insert(a.code.clone(), line);
                    agency_lines.insert(a.code.clone(), line);
                    data.agencies.insert(
                        a.code.clone(),
                        Agency {
                            code: a.code,
                            name: a.name,
                            tax_code: a.tax_code,
                            address: a.address,
                            parent: a.parent.filter(|p| !p.is_empty()),
                            email_from: a.email_from,
                            reply_to: a.reply_to,
                            until: a.until,
                            collects_for: a
                                .collects_for
                                .into_iter()
                                .map(|m| Mandate { principal: m.principal, fees: m.fees, mode: m.mode, basis: m.basis })
                                .collect(),
                            tax_office: a.tax_office,
                        },
                    );
                }
                for (code, agency) in &data.agencies {
                    if let Some(parent) = &agency.parent {
                        if !data.agencies.contains_key(parent) {
                            errors.push(DataError::new(
                                agencies_file,
                                lines[code],
                                format!("agency {code}: parent {parent} is not defined"),
                            ));
                        }
                    }
                    // Cycle check: walk up at most len steps.
                    let mut cur = agency.parent.clone();
                    let mut steps = 0;
                    while let Some(p) = cur {
                        steps += 1;
                        if p == *code || steps > data.agencies.len() {
                            errors.push(DataError::new(
                                agencies_file,
                                lines[code],
                                format!("agency {code}: its parents form a cycle"),
                            ));
                            break;
                        }
                        cur = data.agencies.get(&p).and_then(|a| a.parent.clone());
                    }
                }
                let mut covered: BTreeMap<(String, FeeKind), usize> = BTreeMap::new();
                let mut symbols: BTreeSet<(String, String, String)> = BTreeSet::new();
                for spanned in file.series {
                    let line = line_of(agencies_text, spanned.span().start);
                    let s = spanned.into_inner();
                    let err = |m: String| DataError::new(agencies_file, line, m);
                    if !data.agencies.contains_key(&s.agency) {
                        errors.push(err(format!("series {}: agency {} is not defined", s.form, s.agency)));
                    }
                    let Some(form) = data.forms.get(&s.form) else {
                        errors.push(err(format!("series of {}: form {} is not defined", s.agency, s.form)));
                        continue;
                    };
                    if let Err(e) = form.check_letters(&s.letters) {
                        errors.push(err(format!("series of {}: {e}", s.agency)));
                    }
                    if s.kinds.is_empty() {
                        errors.push(err(format!("series {} {} of {}: kinds is empty", s.form, s.letters, s.agency)));
                    }
                    if !symbols.insert((s.agency.clone(), s.form.clone(), s.letters.clone())) {
                        errors.push(err(format!("series {} {} of {} is defined twice", s.form, s.letters, s.agency)));
                    }
                    for k in &s.kinds {
                        if let Some(first) = covered.insert((s.agency.clone(), *k), line) {
                            errors.push(err(format!(
                                "agency {} has two series for {} (the other at line {first})",
                                s.agency,
                                k.vi()
                            )));
                        }
                    }
                    data.series.push(Series {
                        agency: s.agency,
                        template: form.template.clone(),
                        letters: s.letters,
                        kinds: s.kinds,
                        title: form.name.clone(),
                        form_kind: form.kind,
                        symbol_rule: form.symbol.clone(),
                    });
                }
            }
        }

        let mut fee_lines: BTreeMap<String, usize> = BTreeMap::new();
        match toml::from_str::<FeeFile>(fees_text) {
            Err(e) => errors.push(toml_error(fees_file, fees_text, &e)),
            Ok(file) => {
                for spanned in file.fee {
                    let line = line_of(fees_text, spanned.span().start);
                    let f = spanned.into_inner();
                    let err = |m: String| DataError::new(fees_file, line, m);
                    if !valid_code(&f.code) {
                        errors.push(err(format!(
                            "fee code {:?} must be 1-40 characters of A-Z, 0-9, '-', '_' or '.'",
                            f.code
                        )));
                        continue;
                    }
                    let base = match Vnd::new(f.base_amount) {
                        Ok(v) => v,
                        Err(e) => {
                            errors.push(err(format!("fee {}: base amount: {e}", f.code)));
                            continue;
                        }
                    };
                    if f.name.trim().is_empty() {
                        errors.push(err(format!("fee {}: name is empty", f.code)));
                    }
                    if f.authority.trim().is_empty() {
                        errors.push(err(format!("fee {}: authority is empty", f.code)));
                    }
                    if f.basis.trim().is_empty() {
                        errors
                            .push(err(format!("fee {}: basis (the legal text setting the rate) is required", f.code)));
                    }
                    if f.valid_until.is_some_and(|u| u < f.valid_from) {
                        errors.push(err(format!("fee {}: valid_until is before valid_from", f.code)));
                    }
                    let mut tiers = Vec::new();
                    let mut last_from = 1;
                    for t in &f.tiers {
                        match Vnd::new(t.amount) {
                            Ok(amount) if t.from > last_from => {
                                tiers.push(Tier { from: t.from, amount });
                                last_from = t.from;
                            }
                            Ok(_) => errors.push(err(format!(
                                "fee {}: tiers must start after unit 1 and rise (tier from {})",
                                f.code, t.from
                            ))),
                            Err(e) => errors.push(err(format!("fee {}: tier amount: {e}", f.code))),
                        }
                    }
                    let cap = match f.cap.map(Vnd::new).transpose() {
                        Ok(Some(c)) if c < base => {
                            errors.push(err(format!("fee {}: cap {c} is below the base amount {base}", f.code)));
                            None
                        }
                        Ok(c) => c,
                        Err(e) => {
                            errors.push(err(format!("fee {}: cap: {e}", f.code)));
                            None
                        }
                    };
                    if data.fees.contains_key(&f.code) {
                        errors.push(err(format!("fee {} is defined twice", f.code)));
                        continue;
                    }
                    fee_lines.insert(f.code.clone(), line);
                    data.fees.insert(
                        f.code.clone(),
                        Fee {
                            code: f.code,
                            name: f.name,
                            kind: f.kind,
                            base_amount: base,
                            tiers,
                            cap,
                            authority: f.authority,
                            basis: f.basis,
                            valid_from: f.valid_from,
                            valid_until: f.valid_until,
                            collector: f.collector,
                        },
                    );
                }
            }
        }

        // Collectors and mandates name agencies and fees that exist.
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
        for a in data.agencies.values() {
            for m in &a.collects_for {
                let line = agency_lines.get(&a.code).copied().unwrap_or(1);
                if !data.agencies.contains_key(&m.principal) {
                    errors.push(DataError::new(
                        agencies_file,
                        line,
                        format!("agency {}: collects for {}, which is not defined", a.code, m.principal),
                    ));
                }
                for f in &m.fees {
                    match data.fees.get(f) {
                        None => errors.push(DataError::new(
                            agencies_file,
                            line,
                            format!(
                                "agency {}: collects fee {f} for {}, but no such fee is defined",
                                a.code, m.principal
                            ),
                        )),
                        Some(fee) if fee.collector.as_deref() != Some(m.principal.as_str()) => {
                            errors.push(DataError::new(
                                agencies_file,
                                line,
                                format!(
                                    "agency {}: collects fee {f} for {}, but the fee's collector is {}",
                                    a.code,
                                    m.principal,
                                    fee.collector.as_deref().unwrap_or("whoever the payment names")
                                ),
                            ))
                        }
                        Some(_) => {}
                    }
                }
            }
        }

        if errors.is_empty() {
            Ok(data)
        } else {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENCIES: &str = r#"
[[form]]
template = "EBL01"
kind = 1
name = "Biên lai thu phí, lệ phí không có mệnh giá"
symbol = "{yy}T"
basis = "Nghị định 123/2020/NĐ-CP"
valid_from = "2025-06-01"

[[agency]]
code = "BN"
name = "Trung tâm Phục vụ hành chính công thành phố Bắc Ninh"
tax_code = "0100100079"
address = "Bắc Ninh"

[[agency]]
code = "BN-TH"
name = "UBND phường Tiền Hải"
tax_code = "0100100079"
address = "Bắc Ninh"
parent = "BN"

[[series]]
agency = "BN"
form = "EBL01"
kinds = ["phi", "le_phi"]
"#;
    const FEES: &str = r#"
[[fee]]
code = "LP-HT"
name = "Lệ phí hộ tịch"
kind = "le_phi"
base_amount = 8000
authority = "HDND-BN"
basis = "Nghị quyết HĐND"
valid_from = "2025-07-01"
"#;

    #[test]
    fn parses_a_valid_tree() {
        let data = ReferenceData::parse("a.toml", AGENCIES, "f.toml", FEES).unwrap();
        assert!(data.is_within("BN-TH", "BN"));
        assert!(!data.is_within("BN", "BN-TH"));
        let s = data.series_for("BN", FeeKind::LePhi).unwrap();
        assert_eq!((s.template.as_str(), s.symbol(2026).as_str(), s.form_kind), ("EBL01", "26T", 1));
        assert!(data.series_for("BN-TH", FeeKind::LePhi).is_none());
        assert_eq!(data.subtree("BN").len(), 2);
    }

    #[test]
    fn reports_every_error_with_file_and_line() {
        let bad = AGENCIES
            .replace("parent = \"BN\"", "parent = \"XX\"")
            .replace("form = \"EBL01\"", "form = \"EBL01\"\nletters = \"AB\"")
            .replace("symbol = \"{yy}T\"", "symbol = \"T{yy}x\"");
        let errs = ReferenceData::parse("a.toml", &bad, "f.toml", &FEES.replace("8000", "-5")).unwrap_err();
        let text = errs.to_string();
        assert!(text.contains("a.toml:16: agency BN-TH: parent XX is not defined"), "{text}");
        assert!(
            text.contains("a.toml:2: form EBL01: symbol rule \"T{yy}x\": \"x\" may only hold A-Z, 0-9 and -"),
            "{text}"
        );
        assert!(text.contains("a.toml:23: series of BN: form EBL01 is not defined"), "{text}");
        assert!(text.contains("f.toml:2: fee LP-HT: base amount: amount \"-5\" is negative"), "{text}");
        let letters = AGENCIES.replace("form = \"EBL01\"", "form = \"EBL01\"\nletters = \"AB\"");
        let text = ReferenceData::parse("a.toml", &letters, "f.toml", FEES).unwrap_err().to_string();
        assert!(
            text.contains("a.toml:23: series of BN: form EBL01 makes symbols without letters ({yy}T); remove letters"),
            "{text}"
        );
        let tiers =
            FEES.replace("base_amount = 8000", "base_amount = 8000\ntiers = [{ from = 1, amount = 1 }]\ncap = 10");
        let text = ReferenceData::parse("a.toml", AGENCIES, "f.toml", &tiers).unwrap_err().to_string();
        assert!(text.contains("fee LP-HT: tiers must start after unit 1 and rise (tier from 1)"), "{text}");
        assert!(text.contains("fee LP-HT: cap 10 is below the base amount 8000"), "{text}");
        let collector = FEES.replace("valid_from", "collector = \"CA\"\nvalid_from");
        let text = ReferenceData::parse("a.toml", AGENCIES, "f.toml", &collector).unwrap_err().to_string();
        assert!(text.contains("f.toml:2: fee LP-HT: collector CA is not defined"), "{text}");
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let errs = ReferenceData::parse("a.toml", "[[agency]]\ncode = \n", "f.toml", "").unwrap_err();
        assert_eq!(errs.0[0].file, "a.toml");
        assert_eq!(errs.0[0].line, 2);
    }
}
