//! Gapless numbering per collector, template, receipt symbol and year (the symbols
//! themselves come from the forms, [`crate::forms`]), within the number range of the
//! collector or of a delegate ([`crate::reference::NumberRange`]).
//!
//! Decree 254/2026/NĐ-CP Art. 23.2.c: the number is written in Arabic digits, at most 8 of
//! them, and e-receipts are numbered from 1 on 1 January (or the first day of use) to 31
//! December. Numbers are printed with at least 7 digits (`0000042`), as receipts issued
//! before 1 July 2026 were, so one series reads the same across that day; from
//! 10 000 000 on they have 8.
//!
//! The number itself is assigned by the issuer under a row lock in the same database
//! transaction as the receipt (see ARCHITECTURE.md); this module holds the pure rules:
//! formats, the year of a receipt in GMT+7, and the checks an auditor runs on a series.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Utc};
use std::fmt;

/// Vietnam's offset, GMT+7, used for receipt dates, numbering years and waiver windows.
pub fn gmt7() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("valid offset")
}

/// The calendar date of an instant in GMT+7.
pub fn date_gmt7(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&gmt7()).date_naive()
}

/// The numbering year of an instant: the year in GMT+7.
pub fn year_gmt7(at: DateTime<Utc>) -> i32 {
    at.with_timezone(&gmt7()).year()
}

/// A receipt number, 1 to 99 999 999, printed with at least 7 digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceiptNumber(u32);

/// The series ran out of numbers for the year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("receipt numbers of this series are exhausted for the year (99999999 used)")]
pub struct Exhausted;

impl ReceiptNumber {
    pub const FIRST: ReceiptNumber = ReceiptNumber(1);
    pub const MAX: u32 = 99_999_999;

    pub fn new(n: u32) -> Option<Self> {
        (1..=Self::MAX).contains(&n).then_some(ReceiptNumber(n))
    }

    /// The number that follows `last_used` (0 when none was used this year).
    pub fn after(last_used: u32) -> Result<Self, Exhausted> {
        Self::new(last_used + 1).ok_or(Exhausted)
    }

    pub fn value(self) -> u32 {
        self.0
    }

    /// Parses the printed form (7 or 8 digits).
    pub fn parse(s: &str) -> Option<Self> {
        if !(7..=8).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().and_then(Self::new)
    }
}

impl fmt::Display for ReceiptNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:07}", self.0)
    }
}

impl fmt::Debug for ReceiptNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "No.{:07}", self.0)
    }
}

/// What an auditor needs of one receipt to check a series.
#[derive(Debug, Clone)]
pub struct ChainLink {
    pub number: u32,
    pub previous_hash: String,
    pub document_hash: String,
}

/// The first defect found in a series.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesDefect {
    #[error("number {expected:07} is missing (found {found:07} instead)")]
    Gap { expected: u32, found: u32 },
    #[error("number {0:07} is used twice")]
    Duplicate(u32),
    #[error(
        "receipt {number:07} does not chain to the previous receipt (expected previous hash {expected}, found {found})"
    )]
    BrokenChain { number: u32, expected: String, found: String },
}

/// Hash that the first receipt of a series and year points to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Checks that numbers run 1, 2, 3, ... without gap or repeat and that each receipt carries
/// the hash of the one before. `links` must be sorted by number.
pub fn check_chain(links: &[ChainLink]) -> Result<(), SeriesDefect> {
    check_chain_from(1, links)
}

/// The same for a number range that starts at `first` (a delegate's range, Decree
/// 254/2026/NĐ-CP Art. 25.5): each range is its own sequence and its own chain.
pub fn check_chain_from(first: u32, links: &[ChainLink]) -> Result<(), SeriesDefect> {
    let mut previous_hash = GENESIS_HASH.to_string();
    for (i, link) in links.iter().enumerate() {
        let expected = first + i as u32;
        if link.number != expected {
            if i > 0 && link.number == links[i - 1].number {
                return Err(SeriesDefect::Duplicate(link.number));
            }
            return Err(SeriesDefect::Gap { expected, found: link.number });
        }
        if link.previous_hash != previous_hash {
            return Err(SeriesDefect::BrokenChain {
                number: link.number,
                expected: previous_hash,
                found: link.previous_hash.clone(),
            });
        }
        previous_hash = link.document_hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn numbers_have_at_most_eight_digits() {
        assert_eq!(ReceiptNumber::after(0).unwrap().to_string(), "0000001");
        assert_eq!(ReceiptNumber::after(41).unwrap().to_string(), "0000042");
        assert_eq!(ReceiptNumber::after(9_999_999).unwrap().to_string(), "10000000");
        assert_eq!(ReceiptNumber::after(99_999_999), Err(Exhausted));
        assert_eq!(ReceiptNumber::parse("10000000").unwrap().value(), 10_000_000);
        assert!(ReceiptNumber::parse("100000000").is_none());
        assert_eq!(ReceiptNumber::parse("0000042").unwrap().value(), 42);
        assert!(ReceiptNumber::parse("0000000").is_none());
        assert!(ReceiptNumber::parse("42").is_none());
    }

    #[test]
    fn the_year_turns_at_midnight_gmt7() {
        // 31 Dec 2025 16:59:59 UTC is 23:59:59 in Hà Nội; one second later it is 2026.
        let before = Utc.with_ymd_and_hms(2025, 12, 31, 16, 59, 59).unwrap();
        let after = Utc.with_ymd_and_hms(2025, 12, 31, 17, 0, 0).unwrap();
        assert_eq!(year_gmt7(before), 2025);
        assert_eq!(year_gmt7(after), 2026);
    }

    fn link(n: u32, prev: &str, hash: &str) -> ChainLink {
        ChainLink { number: n, previous_hash: prev.into(), document_hash: hash.into() }
    }

    #[test]
    fn chain_check_finds_the_first_defect() {
        let ok = vec![link(1, GENESIS_HASH, "a"), link(2, "a", "b"), link(3, "b", "c")];
        assert_eq!(check_chain(&ok), Ok(()));
        let gap = vec![link(1, GENESIS_HASH, "a"), link(3, "a", "b")];
        assert_eq!(check_chain(&gap), Err(SeriesDefect::Gap { expected: 2, found: 3 }));
        let dup = vec![link(1, GENESIS_HASH, "a"), link(1, "a", "b")];
        assert_eq!(check_chain(&dup), Err(SeriesDefect::Duplicate(1)));
        let broken = vec![link(1, GENESIS_HASH, "a"), link(2, "x", "b")];
        assert!(matches!(check_chain(&broken), Err(SeriesDefect::BrokenChain { number: 2, .. })));
        let delegated = vec![link(500, GENESIS_HASH, "a"), link(501, "a", "b")];
        assert_eq!(check_chain_from(500, &delegated), Ok(()));
        assert_eq!(check_chain(&delegated), Err(SeriesDefect::Gap { expected: 1, found: 500 }));
    }
}
