//! The agencies file: receipt forms (dated versions), the agency tree, receipt series and
//! delegations, cross-checked against each other and the fee schedule (read first).

use super::{
    line_of, toml_error, valid_code, Agency, DataError, FeeKind, FormerName, Mandate, NumberRange, ReferenceData,
    Series,
};
use crate::forms::{ErrorRule, Form, LetterRule, SymbolRule, Transmission};
use crate::numbering::ReceiptNumber;
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

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
    transmission: Transmission,
    errors: ErrorRule,
    #[serde(default)]
    registration_required: bool,
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
    former_names: Vec<FormerName>,
    #[serde(default)]
    collects_for: Vec<MandateEntry>,
    tax_office: Option<crate::tax::TaxOffice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MandateEntry {
    principal: String,
    fees: Vec<String>,
    /// Gone with Decree 254/2026/NĐ-CP; read only to say so.
    mode: Option<String>,
    #[serde(default)]
    template: String,
    #[serde(default)]
    letters: String,
    numbers: Option<NumberRange>,
    notified_on: Option<NaiveDate>,
    valid_from: Option<NaiveDate>,
    valid_until: Option<NaiveDate>,
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

/// Days a delegation must be notified before the delegate issues (Decree 254/2026/NĐ-CP
/// Art. 25.1: "chậm nhất là 03 ngày trước khi bên nhận ủy nhiệm lập biên lai").
pub const DELEGATION_NOTICE_DAYS: i64 = 3;

pub(super) fn parse(file: &str, text: &str, data: &mut ReferenceData, errors: &mut Vec<DataError>) {
    let parsed = match toml::from_str::<AgencyFile>(text) {
        Ok(f) => f,
        Err(e) => {
            errors.push(toml_error(file, text, &e));
            return;
        }
    };
    forms(file, text, parsed.form, data, errors);
    let lines = agencies(file, text, parsed.agency, data, errors);
    series(file, text, parsed.series, data, errors);
    delegations(file, &lines, data, errors);
}

fn forms(
    file: &str,
    text: &str,
    entries: Vec<toml::Spanned<FormEntry>>,
    data: &mut ReferenceData,
    errors: &mut Vec<DataError>,
) {
    for spanned in entries {
        let line = line_of(text, spanned.span().start);
        let f = spanned.into_inner();
        let err = |m: String| DataError::new(file, line, m);
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
            errors.push(err(format!("form template {:?} must be 1-20 characters of A-Z, 0-9 or -", f.template)));
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
            errors.push(err(format!("form {}: the symbol rule uses {{letters}}; give a letters rule", f.template)));
        }
        let form = Form {
            template: f.template,
            kind: f.kind,
            name: f.name,
            symbol,
            letters: f.letters,
            transmission: f.transmission,
            errors: f.errors,
            registration_required: f.registration_required,
            basis: f.basis,
            valid_from: f.valid_from,
            valid_until: f.valid_until,
        };
        let versions = data.forms.entry(form.template.clone()).or_default();
        if let Some(other) = versions.0.iter().find(|o| o.overlaps(form.valid_from, form.valid_until)) {
            errors.push(err(format!(
                "form {}: the version from {} overlaps the one from {}; versions of a template follow one another",
                form.template, form.valid_from, other.valid_from
            )));
            continue;
        }
        versions.0.push(form);
        versions.0.sort_by_key(|f| f.valid_from);
    }
}

fn agencies(
    file: &str,
    text: &str,
    entries: Vec<toml::Spanned<AgencyEntry>>,
    data: &mut ReferenceData,
    errors: &mut Vec<DataError>,
) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    for spanned in entries {
        let line = line_of(text, spanned.span().start);
        let a = spanned.into_inner();
        let err = |m: String| DataError::new(file, line, m);
        if !valid_code(&a.code) {
            errors.push(err(format!("agency code {:?} must be 1-40 characters of A-Z, 0-9, '-', '_' or '.'", a.code)));
            continue;
        }
        if a.name.trim().is_empty() {
            errors.push(err(format!("agency {}: name is empty", a.code)));
        }
        if let Err(e) = crate::ids::TaxCode::parse(&a.tax_code) {
            errors.push(err(format!("agency {}: tax code {:?}: {e}", a.code, a.tax_code)));
        }
        let mut former = a.former_names;
        former.sort_by_key(|n| n.until);
        if former.windows(2).any(|w| w[0].until == w[1].until) || former.iter().any(|n| n.name.trim().is_empty()) {
            errors.push(err(format!("agency {}: former names need a name and distinct `until` days", a.code)));
        }
        if let Some(first) = lines.get(&a.code) {
            errors.push(err(format!("agency {} is defined twice (first at line {first})", a.code)));
            continue;
        }
        let mut collects_for = Vec::with_capacity(a.collects_for.len());
        for m in a.collects_for {
            if m.mode.is_some() {
                errors.push(err(format!(
                    "agency {}: collects_for `mode` is gone: since 1 July 2026 a body issues receipts for a fee another \
                     body collects only under a registered delegation (Decree 254/2026/NĐ-CP Art. 25); give the \
                     principal's template, letters, numbers {{ from, to }}, notified_on and valid_from instead",
                    a.code
                )));
                continue;
            }
            let (Some(numbers), Some(notified_on), Some(valid_from)) = (m.numbers, m.notified_on, m.valid_from) else {
                errors.push(err(format!(
                    "agency {}: the delegation from {} needs numbers {{ from, to }}, notified_on and valid_from \
                     (Decree 254/2026/NĐ-CP Art. 25.1-2)",
                    a.code, m.principal
                )));
                continue;
            };
            collects_for.push(Mandate {
                principal: m.principal,
                fees: m.fees,
                template: m.template,
                letters: m.letters,
                numbers,
                notified_on,
                valid_from,
                valid_until: m.valid_until,
                basis: m.basis,
            });
        }
        lines.insert(a.code.clone(), line);
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
                former_names: former,
                collects_for,
                tax_office: a.tax_office,
            },
        );
    }
    for (code, agency) in &data.agencies {
        if let Some(parent) = &agency.parent {
            if !data.agencies.contains_key(parent) {
                errors.push(DataError::new(
                    file,
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
                errors.push(DataError::new(file, lines[code], format!("agency {code}: its parents form a cycle")));
                break;
            }
            cur = data.agencies.get(&p).and_then(|a| a.parent.clone());
        }
    }
    lines
}

fn series(
    file: &str,
    text: &str,
    entries: Vec<toml::Spanned<SeriesEntry>>,
    data: &mut ReferenceData,
    errors: &mut Vec<DataError>,
) {
    let mut covered: BTreeMap<(String, FeeKind), usize> = BTreeMap::new();
    let mut names: BTreeSet<(String, String, String)> = BTreeSet::new();
    for spanned in entries {
        let line = line_of(text, spanned.span().start);
        let s = spanned.into_inner();
        let err = |m: String| DataError::new(file, line, m);
        let Some(agency) = data.agencies.get(&s.agency) else {
            errors.push(err(format!("series {}: agency {} is not defined", s.form, s.agency)));
            continue;
        };
        let Some(forms) = data.forms.get(&s.form) else {
            errors.push(err(format!("series of {}: form {} is not defined", s.agency, s.form)));
            continue;
        };
        // The letters must suit every version the agency can issue under.
        for f in forms.0.iter().filter(|f| f.valid_from <= agency.until.unwrap_or(NaiveDate::MAX)) {
            if let Err(e) = f.check_letters(&s.letters) {
                errors.push(err(format!("series of {}: {e}", s.agency)));
            }
        }
        if !forms.0.iter().any(|f| f.symbol.uses_letters()) && !s.letters.is_empty() {
            errors.push(err(format!(
                "series of {}: form {} makes symbols without letters; remove letters",
                s.agency, s.form
            )));
        }
        if s.kinds.is_empty() {
            errors.push(err(format!("series {} {} of {}: kinds is empty", s.form, s.letters, s.agency)));
        }
        if !names.insert((s.agency.clone(), s.form.clone(), s.letters.clone())) {
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
            template: s.form,
            letters: s.letters,
            kinds: s.kinds,
            forms: forms.clone(),
            delegated: Vec::new(),
        });
    }
}

/// Delegations name a principal, its series and fees that exist; their ranges lie in the
/// series and do not overlap; they were notified in time.
fn delegations(file: &str, lines: &BTreeMap<String, usize>, data: &mut ReferenceData, errors: &mut Vec<DataError>) {
    let mut ranges: Vec<(usize, String, NumberRange)> = Vec::new();
    for a in data.agencies.values() {
        let line = lines.get(&a.code).copied().unwrap_or(1);
        let err = |m: String| DataError::new(file, line, m);
        for m in &a.collects_for {
            let who = format!("agency {}: the delegation from {}", a.code, m.principal);
            if m.principal == a.code {
                errors.push(err(format!("{who} names the agency itself")));
                continue;
            }
            if !data.agencies.contains_key(&m.principal) {
                errors.push(err(format!("agency {}: collects for {}, which is not defined", a.code, m.principal)));
                continue;
            }
            if m.valid_from < m.notified_on + chrono::Days::new(DELEGATION_NOTICE_DAYS as u64) {
                errors.push(err(format!(
                    "{who} starts on {} but was notified on {}: the tax offices must be told at least {} days before \
                     the delegate issues (Decree 254/2026/NĐ-CP Art. 25.1)",
                    m.valid_from, m.notified_on, DELEGATION_NOTICE_DAYS
                )));
            }
            if m.valid_until.is_some_and(|u| u < m.valid_from) {
                errors.push(err(format!("{who}: valid_until is before valid_from")));
            }
            if m.numbers.from == 0 || m.numbers.from > m.numbers.to || m.numbers.to > ReceiptNumber::MAX {
                errors.push(err(format!(
                    "{who}: numbers must run from 1 to at most {} with from ≤ to",
                    ReceiptNumber::MAX
                )));
                continue;
            }
            let Some(index) = data
                .series
                .iter()
                .position(|s| s.agency == m.principal && s.template == m.template && s.letters == m.letters)
            else {
                errors.push(err(format!(
                    "{who} names series {} {} of {}, which is not defined",
                    m.template, m.letters, m.principal
                )));
                continue;
            };
            for f in &m.fees {
                match data.fees.get(f) {
                    None => errors.push(err(format!(
                        "agency {}: collects fee {f} for {}, but no such fee is defined",
                        a.code, m.principal
                    ))),
                    Some(fee) if fee.collector.as_deref() != Some(m.principal.as_str()) => errors.push(err(format!(
                        "agency {}: collects fee {f} for {}, but the fee's collector is {}",
                        a.code,
                        m.principal,
                        fee.collector.as_deref().unwrap_or("whoever the payment names")
                    ))),
                    Some(fee) if !data.series[index].kinds.contains(&fee.kind) => errors.push(err(format!(
                        "{who}: series {} {} does not cover {} (fee {f})",
                        m.template,
                        m.letters,
                        fee.kind.vi()
                    ))),
                    Some(_) => {}
                }
            }
            if let Some((_, other, _)) =
                ranges.iter().find(|(i, d, r)| *i == index && r.overlaps(&m.numbers) && d != &a.code)
            {
                errors.push(err(format!(
                    "{who}: numbers {} overlap those delegated to {other} in series {} {}",
                    m.numbers, m.template, m.letters
                )));
                continue;
            }
            match data.series[index].delegated.iter().find(|(d, _)| d == &a.code) {
                Some((_, r)) if *r != m.numbers => {
                    errors.push(err(format!("{who}: a delegate has one number range per series ({r} already)")))
                }
                Some(_) => {}
                None => data.series[index].delegated.push((a.code.clone(), m.numbers)),
            }
            ranges.push((index, a.code.clone(), m.numbers));
        }
    }
}
