//! Receipt forms (mẫu biên lai) and how their symbols are made, as reference data.
//!
//! A form is what the law fixes: the template symbol (ký hiệu mẫu biên lai), its kind (1
//! without a printed face value, 2 with one), the name printed on the receipt, the rule that
//! makes a year's receipt symbol (ký hiệu biên lai), how receipts reach the tax authority
//! and how an error is corrected. Forms live in the agencies file as dated versions, each
//! with its legal basis, so the next circular is a data change, not a code change.
//!
//! In force since 1 July 2026 (Circular 91/2026/TT-BTC Art. 19 and Appendix II.2): the
//! template has five characters, `EBL01` (no face value) or `EBL02` (face value); the
//! receipt symbol has five: the two-digit year, `T` (registered with the tax authority) and
//! two letters the collector chooses from A B C D E G H K L M N P Q R S T U V X Y
//! (`{yy}T{letters}`, e.g. `26TAA`).

use chrono::NaiveDate;
use serde::Deserialize;

/// One piece of a symbol rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `{yy}`: the last two digits of the year.
    Year2,
    /// `{yyyy}`: the year.
    Year4,
    /// `{letters}`: the series' letters.
    Letters,
    Literal(String),
}

/// How a receipt symbol is made from the year and the series' letters, e.g. `{yy}T` (26T)
/// or `{letters}-{yy}E` (AB-26E).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolRule {
    text: String,
    parts: Vec<Part>,
}

impl SymbolRule {
    /// Reads a rule: `{yy}`, `{yyyy}` and `{letters}` placeholders between literal
    /// characters A–Z, 0–9 and `-`; the year must appear.
    pub fn parse(text: &str) -> Result<SymbolRule, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('{') {
                let end = r.find('}').ok_or_else(|| format!("symbol rule {text:?}: unclosed {{"))?;
                parts.push(match &r[..end] {
                    "yy" => Part::Year2,
                    "yyyy" => Part::Year4,
                    "letters" => Part::Letters,
                    other => return Err(format!("symbol rule {text:?}: unknown placeholder {{{other}}}")),
                });
                rest = &r[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let lit = &rest[..end];
                if !lit.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-') {
                    return Err(format!("symbol rule {text:?}: {lit:?} may only hold A-Z, 0-9 and -"));
                }
                parts.push(Part::Literal(lit.to_string()));
                rest = &rest[end..];
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Year2 | Part::Year4)) {
            return Err(format!("symbol rule {text:?} has no year ({{yy}} or {{yyyy}}): numbers restart every year"));
        }
        Ok(SymbolRule { text: text.to_string(), parts })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a series of this form names letters.
    pub fn uses_letters(&self) -> bool {
        self.parts.contains(&Part::Letters)
    }

    /// The receipt symbol of a year.
    pub fn symbol(&self, letters: &str, year: i32) -> String {
        let mut out = String::with_capacity(12);
        for p in &self.parts {
            match p {
                Part::Year2 => out.push_str(&format!("{:02}", year.rem_euclid(100))),
                Part::Year4 => out.push_str(&format!("{year:04}")),
                Part::Letters => out.push_str(letters),
                Part::Literal(l) => out.push_str(l),
            }
        }
        out
    }
}

/// Which letters a series of a form may use, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterRule {
    pub alphabet: String,
    pub min: usize,
    pub max: usize,
}

impl LetterRule {
    pub fn check(&self, letters: &str) -> Result<(), String> {
        let n = letters.chars().count();
        if n < self.min || n > self.max {
            return Err(format!("letters {letters:?} must be {} to {} characters", self.min, self.max));
        }
        if let Some(c) = letters.chars().find(|c| !self.alphabet.contains(*c)) {
            return Err(format!("letters {letters:?}: {c:?} is not one of {}", self.alphabet));
        }
        Ok(())
    }
}

/// How the collector tells the tax authority about the receipts it issues, as the form's
/// rules say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transmission {
    /// Decree 123/2020/NĐ-CP, Circular 78/2021 and 32/2025: no receipt is sent; the
    /// usage report BC26/BLĐT is signed for each closed period.
    UsageReport,
    /// Decree 254/2026/NĐ-CP Art. 29.3.b, Circular 91/2026/TT-BTC Art. 4.6.d: the summary
    /// 01/TH-BLĐT of the receipts issued is sent on the day of issue.
    DailySummary,
}

/// What the rules allow when a receipt was issued in error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorRule {
    /// Decree 123/2020: the receipt is cancelled (a notice 04/SS-CTĐT goes to the tax
    /// authority) and, where needed, replaced.
    CancelOrReplace,
    /// Circular 91/2026/TT-BTC Art. 20: a wrong name, address, amount in words or other
    /// content with the right tax code and amount is notified (to the payer, and to the tax
    /// authority on 04/SS-CTĐT) and not reissued; any other error is corrected by a
    /// replacement. Nothing is cancelled.
    NotifyOrReplace,
}

/// One version of a receipt form: what the law fixes for a period. A template symbol may
/// have several versions (EBL01 under Circular 32/2025, then under Circular 91/2026), each
/// with its own window; the version in force on a date decides how receipts of that date
/// are made, transmitted and corrected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// Template symbol (ký hiệu mẫu biên lai), written on every receipt.
    pub template: String,
    /// 1 without a printed face value, 2 with one (the `01`/`02` of the template).
    pub kind: u8,
    /// The receipt's name as the law gives it, printed on the receipt.
    pub name: String,
    pub symbol: SymbolRule,
    /// Letters a series may add to the symbol (only when the rule has `{letters}`).
    pub letters: Option<LetterRule>,
    /// How the receipts of this version reach the tax authority.
    pub transmission: Transmission,
    /// How an error on a receipt is corrected while this version is in force.
    pub errors: ErrorRule,
    /// A series is used only once the tax authority accepted its registration
    /// (01/ĐKTĐ-CTĐT, answered on 01/TB-ĐKĐT: Circular 91/2026/TT-BTC Art. 17).
    pub registration_required: bool,
    /// Where the form and its symbols come from.
    pub basis: String,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
}

impl Form {
    pub fn in_force_on(&self, date: NaiveDate) -> bool {
        date >= self.valid_from && self.valid_until.is_none_or(|u| date <= u)
    }

    /// Whether the version's window and `[from, until]` share a day.
    pub fn overlaps(&self, from: NaiveDate, until: Option<NaiveDate>) -> bool {
        self.valid_until.is_none_or(|u| from <= u) && until.is_none_or(|u| self.valid_from <= u)
    }

    /// Checks a series' letters against the version.
    pub fn check_letters(&self, letters: &str) -> Result<(), String> {
        match (&self.letters, self.symbol.uses_letters()) {
            (_, false) => Ok(()),
            (None, true) => {
                Err(format!("form {}: its symbol rule uses letters but no letter rule is given", self.template))
            }
            (Some(rule), true) => rule.check(letters).map_err(|e| {
                format!("form {} from {} ({}): {e}", self.template, self.valid_from, self.symbol.as_str())
            }),
        }
    }
}

/// The versions of one template, oldest first, windows disjoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormVersions(pub Vec<Form>);

impl FormVersions {
    /// The version in force on a date (GMT+7).
    pub fn on(&self, date: NaiveDate) -> Option<&Form> {
        self.0.iter().find(|f| f.in_force_on(date))
    }

    pub fn template(&self) -> &str {
        self.0.first().map_or("", |f| f.template.as_str())
    }

    /// The newest version (for listings).
    pub fn latest(&self) -> Option<&Form> {
        self.0.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHABET: &str = "ABCDEGHKLMNPQRSTUVXY";

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn circular_91() -> Form {
        Form {
            template: "EBL01".into(),
            kind: 1,
            name: "Biên lai thu phí, lệ phí không có mệnh giá".into(),
            symbol: SymbolRule::parse("{yy}T{letters}").unwrap(),
            letters: Some(LetterRule { alphabet: ALPHABET.into(), min: 2, max: 2 }),
            transmission: Transmission::DailySummary,
            errors: ErrorRule::NotifyOrReplace,
            registration_required: true,
            basis: "Thông tư 91/2026/TT-BTC".into(),
            valid_from: d("2026-07-01"),
            valid_until: None,
        }
    }

    #[test]
    fn symbols_follow_their_rule() {
        let e = SymbolRule::parse("{yy}T").unwrap();
        assert_eq!(e.symbol("", 2026), "26T");
        assert_eq!(e.symbol("", 2100), "00T");
        assert!(!e.uses_letters());
        let old = SymbolRule::parse("{letters}-{yy}E").unwrap();
        assert_eq!(old.symbol("BN", 2025), "BN-25E");
        assert!(SymbolRule::parse("{letters}T").unwrap_err().contains("no year"));
        assert!(SymbolRule::parse("{yy}t").unwrap_err().contains("A-Z"));
        assert!(SymbolRule::parse("{month}").unwrap_err().contains("unknown placeholder"));
        assert!(SymbolRule::parse("{yy").unwrap_err().contains("unclosed"));
    }

    /// Circular 91/2026/TT-BTC Appendix II.2.b: two digits of the year, T, two letters of
    /// the twenty; five characters in all.
    #[test]
    fn the_symbol_of_circular_91_has_five_characters() {
        let f = circular_91();
        assert_eq!(f.symbol.symbol("AA", 2026), "26TAA");
        assert_eq!(f.symbol.symbol("BN", 2027), "27TBN");
        for ok in ["AA", "YY", "DE", "XY"] {
            assert!(f.check_letters(ok).is_ok(), "{ok}");
            assert_eq!(f.symbol.symbol(ok, 2026).chars().count(), 5);
        }
        // F, I, J, O, W and Z are not among the twenty; lower case, one or three letters
        // and digits are refused.
        for bad in ["AF", "IA", "JA", "AO", "WA", "ZA", "aa", "A", "AAA", "A1", "", "ĐA"] {
            assert!(f.check_letters(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_are_chosen_by_date() {
        let mut old = circular_91();
        old.symbol = SymbolRule::parse("{yy}T").unwrap();
        old.letters = None;
        old.transmission = Transmission::UsageReport;
        old.errors = ErrorRule::CancelOrReplace;
        old.valid_from = d("2025-06-01");
        old.valid_until = Some(d("2026-06-30"));
        let versions = FormVersions(vec![old, circular_91()]);
        assert_eq!(versions.on(d("2026-06-30")).unwrap().transmission, Transmission::UsageReport);
        assert_eq!(versions.on(d("2026-07-01")).unwrap().transmission, Transmission::DailySummary);
        assert!(versions.on(d("2025-05-31")).is_none());
        assert!(versions.0[0].overlaps(d("2026-06-30"), None));
        assert!(!versions.0[0].overlaps(d("2026-07-01"), None));
        assert_eq!(versions.template(), "EBL01");
    }
}
