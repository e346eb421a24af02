//! Whole-đồng amounts. VND has no minor unit; amounts are never floating point.

use rust_decimal::Decimal;
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Sub};

/// Largest amount accepted anywhere: 10^15 đồng (a million billion), far above any fee.
pub const MAX_VND: i64 = 1_000_000_000_000_000;

/// A non-negative whole number of Vietnamese đồng, at most [`MAX_VND`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Vnd(i64);

/// Why a text is not a valid amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is not a decimal number")]
    NotANumber(String),
    #[error("amount {0:?} is negative")]
    Negative(String),
    #[error("amount {0:?} has a fractional part; đồng amounts are whole numbers")]
    Fractional(String),
    #[error("amount {0:?} exceeds the maximum of 10^15 đồng")]
    TooLarge(String),
}

impl Vnd {
    /// Zero đồng.
    pub const ZERO: Vnd = Vnd(0);

    /// Builds an amount from whole đồng; fails outside `0..=MAX_VND`.
    pub fn new(dong: i64) -> Result<Self, AmountError> {
        if dong < 0 {
            Err(AmountError::Negative(dong.to_string()))
        } else if dong > MAX_VND {
            Err(AmountError::TooLarge(dong.to_string()))
        } else {
            Ok(Vnd(dong))
        }
    }

    /// Parses a decimal string such as `"135000"`. `"135000.00"` is accepted (zero fraction),
    /// `"135000.5"`, `"-1"`, `"1e3"` and `" 1"` are not.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        if text.len() > 40 || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
            return Err(AmountError::NotANumber(truncate(text)));
        }
        let d: Decimal = text.parse().map_err(|_| {
            let int_digits = text.split('.').next().unwrap_or("").trim_start_matches(['-', '0']).len();
            if int_digits > 16 && text.bytes().filter(|b| *b == b'.').count() <= 1 {
                AmountError::TooLarge(truncate(text))
            } else {
                AmountError::NotANumber(truncate(text))
            }
        })?;
        Self::from_decimal(d).map_err(|e| match e {
            AmountError::Negative(_) => AmountError::Negative(text.to_string()),
            AmountError::Fractional(_) => AmountError::Fractional(text.to_string()),
            AmountError::TooLarge(_) => AmountError::TooLarge(truncate(text)),
            other => other,
        })
    }

    /// Converts a decimal that must be whole and within range.
    pub fn from_decimal(d: Decimal) -> Result<Self, AmountError> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(AmountError::Negative(d.to_string()));
        }
        if d.fract() != Decimal::ZERO {
            return Err(AmountError::Fractional(d.to_string()));
        }
        if d > Decimal::from(MAX_VND) {
            return Err(AmountError::TooLarge(d.to_string()));
        }
        let v: i64 = d.trunc().try_into().map_err(|_| AmountError::TooLarge(d.to_string()))?;
        Ok(Vnd(v))
    }

    /// Whole đồng as an integer.
    pub fn dong(self) -> i64 {
        self.0
    }

    /// As a decimal with scale 0.
    pub fn to_decimal(self) -> Decimal {
        Decimal::from(self.0)
    }

    /// `self - other`, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Vnd) -> Vnd {
        Vnd((self.0 - other.0).max(0))
    }

    /// Checked multiplication by a quantity.
    pub fn checked_mul(self, qty: u32) -> Option<Vnd> {
        self.0.checked_mul(i64::from(qty)).filter(|v| *v <= MAX_VND).map(Vnd)
    }

    /// Checked addition that stays within range.
    pub fn checked_add(self, other: Vnd) -> Option<Vnd> {
        self.0.checked_add(other.0).filter(|v| *v <= MAX_VND).map(Vnd)
    }

    /// `135.000` style formatting with dots as thousands separators, as printed in Vietnam.
    pub fn grouped(self) -> String {
        let s = self.0.to_string();
        let mut out = String::with_capacity(s.len() + s.len() / 3);
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push('.');
            }
            out.push(c);
        }
        out
    }
}

/// A whole-đồng amount as carried on the wire (`"135000"`) printed `135.000`; text that is
/// not an amount is shown as it is.
pub fn grouped_text(amount: &str) -> String {
    Vnd::parse(amount).map(|v| v.grouped()).unwrap_or_else(|_| amount.to_string())
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

impl TryFrom<i64> for Vnd {
    type Error = AmountError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Vnd::new(v)
    }
}

impl From<Vnd> for i64 {
    fn from(v: Vnd) -> i64 {
        v.0
    }
}

impl fmt::Display for Vnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Vnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} đ", self.0)
    }
}

impl Add for Vnd {
    type Output = Vnd;
    /// Panics only above 10^15 đồng summed, which validated inputs cannot reach
    /// (callers use [`Vnd::checked_add`] on untrusted data).
    fn add(self, rhs: Vnd) -> Vnd {
        self.checked_add(rhs).expect("sum of validated amounts exceeds 10^15 đồng")
    }
}

impl Sub for Vnd {
    type Output = Vnd;
    fn sub(self, rhs: Vnd) -> Vnd {
        self.saturating_sub(rhs)
    }
}

impl Sum for Vnd {
    fn sum<I: Iterator<Item = Vnd>>(iter: I) -> Vnd {
        iter.fold(Vnd::ZERO, |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_amounts_and_refuses_the_rest() {
        assert_eq!(Vnd::parse("135000").unwrap().dong(), 135_000);
        assert_eq!(Vnd::parse("135000.00").unwrap().dong(), 135_000);
        assert_eq!(Vnd::parse("0").unwrap(), Vnd::ZERO);
        assert!(matches!(Vnd::parse("135000.5"), Err(AmountError::Fractional(_))));
        assert!(matches!(Vnd::parse("-1"), Err(AmountError::Negative(_))));
        assert!(matches!(Vnd::parse("1e3"), Err(AmountError::NotANumber(_))));
        assert!(matches!(Vnd::parse(" 1"), Err(AmountError::NotANumber(_))));
        assert!(matches!(Vnd::parse(""), Err(AmountError::Empty)));
        assert!(matches!(Vnd::parse("1000000000000001"), Err(AmountError::TooLarge(_))));
        assert!(matches!(Vnd::parse("99999999999999999999999999999"), Err(AmountError::TooLarge(_))));
    }

    #[test]
    fn groups_thousands_with_dots() {
        assert_eq!(Vnd::new(135_000).unwrap().grouped(), "135.000");
        assert_eq!(Vnd::new(1_000_000).unwrap().grouped(), "1.000.000");
        assert_eq!(Vnd::new(999).unwrap().grouped(), "999");
        assert_eq!(Vnd::ZERO.grouped(), "0");
    }
}
