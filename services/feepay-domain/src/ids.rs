//! Personal identification numbers and tax codes, validated at the edge and masked in logs.

use std::fmt;

/// Why an identifier is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("personal ID must be exactly 12 digits")]
    PersonalIdFormat,
    #[error("tax code must be 10 digits, 13 digits (with or without '-' before the branch) or a 12-digit personal ID")]
    TaxCodeFormat,
    #[error("tax code check digit is wrong")]
    TaxCodeCheckDigit,
}

/// A 12-digit personal identification number (số định danh cá nhân, CCCD).
/// It has no check digit; the first three digits are the registration province.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PersonalId(String);

impl PersonalId {
    /// Accepts exactly 12 ASCII digits.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(PersonalId(text.to_string()))
        } else {
            Err(IdError::PersonalIdFormat)
        }
    }

    /// The full number, for the receipt itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `001******789`: what logs and operator listings show.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl fmt::Debug for PersonalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonalId({})", self.masked())
    }
}

/// A tax code (mã số thuế): 10 digits with a check digit, 13 digits (10 + branch),
/// or since 1 July 2025 a 12-digit personal ID used as the tax code of an individual.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TaxCode(String);

/// Weights of the tax-code check digit over the first nine digits.
const WEIGHTS: [u32; 9] = [31, 29, 23, 19, 17, 13, 7, 5, 3];

/// The check digit of a 10-digit tax code given its first nine digits, or `None` when the
/// formula yields 10 (such a prefix is never assigned).
pub fn tax_code_check_digit(first_nine: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first_nine.iter().zip(WEIGHTS).map(|(d, w)| u32::from(*d) * w).sum();
    let check = 10 - (sum % 11);
    match check {
        10 => None,
        11 => Some(0), // unreachable: sum % 11 is at least 0 so check is at most 10
        c => Some(c as u8),
    }
}

impl TaxCode {
    /// Accepts `0100109106`, `0100109106001`, `0100109106-001` and 12-digit personal IDs;
    /// stores the canonical form (13-digit codes written with a dash before the branch).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let digits: String = match text.len() {
            14 if text.as_bytes()[10] == b'-' => format!("{}{}", &text[..10], &text[11..]),
            _ => text.to_string(),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::TaxCodeFormat);
        }
        match digits.len() {
            12 => Ok(TaxCode(digits)),
            10 | 13 => {
                let d: Vec<u8> = digits.bytes().map(|b| b - b'0').collect();
                let mut nine = [0u8; 9];
                nine.copy_from_slice(&d[..9]);
                match tax_code_check_digit(&nine) {
                    Some(c) if c == d[9] => {}
                    _ => return Err(IdError::TaxCodeCheckDigit),
                }
                if digits.len() == 13 {
                    Ok(TaxCode(format!("{}-{}", &digits[..10], &digits[10..])))
                } else {
                    Ok(TaxCode(digits))
                }
            }
            _ => Err(IdError::TaxCodeFormat),
        }
    }

    /// The canonical tax code, for the receipt itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Masked for logs.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl fmt::Debug for TaxCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaxCode({})", self.masked())
    }
}

/// Keeps the first three and last three characters.
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..3].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - 6));
    out.extend(&chars[chars.len() - 3..]);
    out
}

/// Masks an email address for logs: `ng***@gmail.com`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let keep: String = local.chars().take(2).collect();
            format!("{keep}***@{domain}")
        }
        None => "***".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_tax_codes() {
        // Real published codes: Vietnam Electricity (EVN) and a branch form.
        assert!(TaxCode::parse("0100100079").is_ok());
        assert_eq!(TaxCode::parse("0100100079001").unwrap().expose(), "0100100079-001");
        assert_eq!(TaxCode::parse("0100100079-001").unwrap().expose(), "0100100079-001");
        assert_eq!(TaxCode::parse("0100100078"), Err(IdError::TaxCodeCheckDigit));
        assert_eq!(TaxCode::parse("001203004567").unwrap().expose(), "001203004567");
        assert_eq!(TaxCode::parse("01001000"), Err(IdError::TaxCodeFormat));
        assert_eq!(TaxCode::parse("010010007a"), Err(IdError::TaxCodeFormat));
        assert_eq!(TaxCode::parse("0100100079_001"), Err(IdError::TaxCodeFormat));
    }

    #[test]
    fn personal_ids_are_twelve_digits() {
        assert!(PersonalId::parse("027190001234").is_ok());
        assert!(PersonalId::parse("02719000123").is_err());
        assert!(PersonalId::parse("0271900012345").is_err());
        assert!(PersonalId::parse("02719000123x").is_err());
        assert_eq!(format!("{:?}", PersonalId::parse("027190001234").unwrap()), "PersonalId(027******234)");
    }

    proptest! {
        #[test]
        fn exactly_one_check_digit_is_accepted(prefix in proptest::array::uniform9(0u8..10)) {
            let base: String = prefix.iter().map(|d| char::from(b'0' + d)).collect();
            let accepted: Vec<u8> = (0..10)
                .filter(|c| TaxCode::parse(&format!("{base}{c}")).is_ok())
                .collect();
            match tax_code_check_digit(&prefix) {
                Some(c) => prop_assert_eq!(accepted, vec![c]),
                None => prop_assert!(accepted.is_empty()),
            }
        }

        #[test]
        fn any_single_digit_change_is_detected(prefix in proptest::array::uniform9(0u8..10), pos in 0usize..10, delta in 1u8..10) {
            if let Some(c) = tax_code_check_digit(&prefix) {
                let mut digits: Vec<u8> = prefix.to_vec();
                digits.push(c);
                digits[pos] = (digits[pos] + delta) % 10;
                let changed: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
                prop_assert!(TaxCode::parse(&changed).is_err(), "{}", changed);
            }
        }
    }
}
