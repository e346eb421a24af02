//! Receipt forms (mẫu biên lai) and how their symbols are made, as reference data.
//!
//! A form is what the law fixes: the template symbol (ký hiệu mẫu biên lai), the kind the
//! tax authority's usage report counts (`TLoai`: 1 without a printed face value, 2 with
//! one), the name printed on the receipt, and the rule that makes a year's receipt symbol
//! (ký hiệu biên lai). Forms live in the agencies file, each with its legal basis and
//! validity, so the next circular is a data change, not a code change.

use chrono::NaiveDate;

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
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

/// A receipt form in force for some period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// Template symbol (ký hiệu mẫu biên lai), written on every receipt.
    pub template: String,
    /// `TLoai` of the usage report: 1 without a printed face value, 2 with one.
    pub kind: u8,
    /// The receipt's name as the law gives it, printed on the receipt.
    pub name: String,
    pub symbol: SymbolRule,
    /// Letters a series may add to the symbol (only when the rule has `{letters}`).
    pub letters: Option<LetterRule>,
    /// Where the form and its symbols come from.
    pub basis: String,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
}

impl Form {
    pub fn in_force_on(&self, date: NaiveDate) -> bool {
        date >= self.valid_from && self.valid_until.is_none_or(|u| date <= u)
    }

    /// Checks a series' letters against the form.
    pub fn check_letters(&self, letters: &str) -> Result<(), String> {
        match (&self.letters, self.symbol.uses_letters()) {
            (_, false) if !letters.is_empty() => Err(format!(
                "form {} makes symbols without letters ({}); remove letters",
                self.template,
                self.symbol.as_str()
            )),
            (_, false) => Ok(()),
            (None, true) => {
                Err(format!("form {}: its symbol rule uses letters but no letter rule is given", self.template))
            }
            (Some(rule), true) => rule.check(letters),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn letters_are_checked_against_the_form() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut form = Form {
            template: "X".into(),
            kind: 1,
            name: "Biên lai".into(),
            symbol: SymbolRule::parse("{yy}T").unwrap(),
            letters: None,
            basis: String::new(),
            valid_from: d("2025-06-01"),
            valid_until: None,
        };
        assert!(form.check_letters("").is_ok());
        assert!(form.check_letters("AB").unwrap_err().contains("without letters"));
        form.symbol = SymbolRule::parse("{letters}-{yy}E").unwrap();
        form.letters = Some(LetterRule { alphabet: "ABCDEGHKLMNPQRSTUVXY".into(), min: 1, max: 2 });
        assert!(form.check_letters("BN").is_ok());
        assert!(form.check_letters("BF").unwrap_err().contains("'F'"));
        assert!(form.check_letters("").unwrap_err().contains("1 to 2"));
        assert!(form.in_force_on(d("2025-06-01")) && !form.in_force_on(d("2025-05-31")));
    }
}
