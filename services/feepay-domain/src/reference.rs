//! Reference data: the agency tree, receipt series and the fee schedule.
//!
//! Parsed from versioned TOML files (`deploy/reference/`); every problem is reported with
//! the file and line it comes from, and nothing is applied unless everything is valid.

use crate::money::Vnd;
use crate::numbering::{is_receipt_letters, is_template_symbol};
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
}

/// A receipt series of a collecting agency: a template and receipt letters, for some fee kinds.
/// The receipt symbol of a year is the letters, a dash, the two-digit year and `E`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Series {
    pub agency: String,
    pub template: String,
    pub letters: String,
    pub kinds: Vec<FeeKind>,
    pub title: String,
}

/// A fee or charge of the schedule, per unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fee {
    pub code: String,
    pub name: String,
    pub kind: FeeKind,
    pub base_amount: Vnd,
    /// Who sets the rate, e.g. `BTC` (Ministry of Finance) or `HDND-BN` (provincial council).
    pub authority: String,
}

/// The validated reference data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceData {
    pub agencies: BTreeMap<String, Agency>,
    pub series: Vec<Series>,
    pub fees: BTreeMap<String, Fee>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgencyFile {
    #[serde(default)]
    agency: Vec<toml::Spanned<AgencyEntry>>,
    #[serde(default)]
    series: Vec<toml::Spanned<SeriesEntry>>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesEntry {
    agency: String,
    template: String,
    letters: String,
    kinds: Vec<FeeKind>,
    title: Option<String>,
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
    authority: String,
}

/// Default receipt title.
pub const DEFAULT_TITLE: &str = "BIÊN LAI THU PHÍ, LỆ PHÍ";

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

        match toml::from_str::<AgencyFile>(agencies_text) {
            Err(e) => errors.push(toml_error(agencies_file, agencies_text, &e)),
            Ok(file) => {
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
                        errors.push(err(format!("series {}: agency {} is not defined", s.template, s.agency)));
                    }
                    if !is_template_symbol(&s.template) {
                        errors.push(err(format!(
                            "series of {}: template symbol {:?} must look like 01BLP0-001 (10 characters)",
                            s.agency, s.template
                        )));
                    }
                    if !is_receipt_letters(&s.letters) {
                        errors.push(err(format!(
                            "series of {}: receipt letters {:?} must be 1 to 6 of A B C D E G H K L M N P Q R S T U V X Y",
                            s.agency, s.letters
                        )));
                    }
                    if s.kinds.is_empty() {
                        errors.push(err(format!("series {} {}: kinds is empty", s.template, s.letters)));
                    }
                    if !symbols.insert((s.agency.clone(), s.template.clone(), s.letters.clone())) {
                        errors
                            .push(err(format!("series {} {} of {} is defined twice", s.template, s.letters, s.agency)));
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
                        template: s.template,
                        letters: s.letters,
                        kinds: s.kinds,
                        title: s.title.unwrap_or_else(|| DEFAULT_TITLE.to_string()),
                    });
                }
            }
        }

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
                    if data.fees.contains_key(&f.code) {
                        errors.push(err(format!("fee {} is defined twice", f.code)));
                        continue;
                    }
                    data.fees.insert(
                        f.code.clone(),
                        Fee { code: f.code, name: f.name, kind: f.kind, base_amount: base, authority: f.authority },
                    );
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
[[agency]]
code = "BN"
name = "Trung tâm Phục vụ hành chính công tỉnh Bắc Ninh"
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
template = "01BLP0-001"
letters = "BN"
kinds = ["phi", "le_phi"]
"#;
    const FEES: &str = r#"
[[fee]]
code = "LP-HT"
name = "Lệ phí hộ tịch"
kind = "le_phi"
base_amount = 8000
authority = "HDND-BN"
"#;

    #[test]
    fn parses_a_valid_tree() {
        let data = ReferenceData::parse("a.toml", AGENCIES, "f.toml", FEES).unwrap();
        assert!(data.is_within("BN-TH", "BN"));
        assert!(!data.is_within("BN", "BN-TH"));
        assert_eq!(data.series_for("BN", FeeKind::LePhi).unwrap().template, "01BLP0-001");
        assert!(data.series_for("BN-TH", FeeKind::LePhi).is_none());
        assert_eq!(data.subtree("BN").len(), 2);
    }

    #[test]
    fn reports_every_error_with_file_and_line() {
        let bad = AGENCIES.replace("parent = \"BN\"", "parent = \"XX\"").replace("01BLP0-001", "01BLP0001");
        let errs = ReferenceData::parse("a.toml", &bad, "f.toml", &FEES.replace("8000", "-5")).unwrap_err();
        let text = errs.to_string();
        assert!(text.contains("a.toml:8: agency BN-TH: parent XX is not defined"), "{text}");
        assert!(text.contains("a.toml:15: series of BN: template symbol \"01BLP0001\""), "{text}");
        assert!(text.contains("f.toml:2: fee LP-HT: base amount: amount \"-5\" is negative"), "{text}");
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let errs = ReferenceData::parse("a.toml", "[[agency]]\ncode = \n", "f.toml", "").unwrap_err();
        assert_eq!(errs.0[0].file, "a.toml");
        assert_eq!(errs.0[0].line, 2);
    }
}
