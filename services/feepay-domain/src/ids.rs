//! Personal identification numbers and tax codes, validated at the edge and masked in logs.

use std::fmt;

/// Why an identifier is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("personal ID must be exactly 12 digits")]
    PersonalIdFormat,
    #[error("personal ID starts with {0}, which is no province or city code")]
    PersonalIdProvince(String),
    #[error("personal ID: century digit {0} stands for a birth after 2099")]
    PersonalIdCentury(char),
    #[error("personal ID says born in {0}, which has not come yet")]
    PersonalIdBirthYear(i32),
    #[error("passport number must be 5 to 20 letters and digits")]
    PassportFormat,
    #[error("tax code must be 10 digits, 13 digits (with or without '-' before the branch) or a 12-digit personal ID")]
    TaxCodeFormat,
    #[error("tax code check digit is wrong")]
    TaxCodeCheckDigit,
    #[error("tax code has a sequence of zeros (digits 3 to 9) or branch 000, which the tax authority never assigns")]
    TaxCodeComponent,
}

/// Codes of the provinces and cities of birth registration that open a personal ID
/// number (the 63 units before 1 July 2025; numbers issued keep them after the mergers).
/// Source: Circular 07/2016/TT-BCA, Annex (mã tỉnh, thành phố trực thuộc trung ương).
pub const PROVINCE_CODES: [&str; 63] = [
    "001", "002", "004", "006", "008", "010", "011", "012", "014", "015", "017", "019", "020", "022", "024", "025",
    "026", "027", "030", "031", "033", "034", "035", "036", "037", "038", "040", "042", "044", "045", "046", "048",
    "049", "051", "052", "054", "056", "058", "060", "062", "064", "066", "067", "068", "070", "072", "074", "075",
    "077", "079", "080", "082", "083", "084", "086", "087", "089", "091", "092", "093", "094", "095", "096",
];

/// A 12-digit personal identification number (số định danh cá nhân, CCCD).
/// It has no check digit: 3 digits province of birth registration (or a country code for
/// citizens born abroad, not checked here), 1 digit century and sex (Circular
/// 07/2016/TT-BCA: 0/1 born in 1900–1999 male/female, 2/3 in 2000–2099, 4/5 to 8/9 later
/// centuries), 2 digits year of birth, 6 random digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PersonalId(String);

impl PersonalId {
    /// Accepts 12 ASCII digits opening with a province code and a century digit of a
    /// living person (0 to 3).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.len() != 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::PersonalIdFormat);
        }
        if !PROVINCE_CODES.contains(&&text[..3]) {
            return Err(IdError::PersonalIdProvince(text[..3].to_string()));
        }
        let century = text.as_bytes()[3] as char;
        if !('0'..='3').contains(&century) {
            return Err(IdError::PersonalIdCentury(century));
        }
        Ok(PersonalId(text.to_string()))
    }

    /// [`PersonalId::parse`], and the year of birth it encodes is not after `this_year`
    /// (the year, GMT+7, of the event that names it): a number whose birth year lies in the
    /// future was mistyped.
    pub fn parse_in(text: &str, this_year: i32) -> Result<Self, IdError> {
        let id = Self::parse(text)?;
        match id.birth_year() {
            y if y > this_year => Err(IdError::PersonalIdBirthYear(y)),
            _ => Ok(id),
        }
    }

    /// Year of birth, from the century digit and the two year digits.
    pub fn birth_year(&self) -> i32 {
        let century = i32::from(self.0.as_bytes()[3] - b'0') / 2;
        let yy: i32 = self.0[4..6].parse().unwrap_or(0);
        1900 + century * 100 + yy
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
                // The tax authority's rules, as python-stdnum's `vn.mst` also applies them:
                // a sequence of 0000000 and branch 000 are never assigned.
                if &digits[2..9] == "0000000" || (digits.len() == 13 && &digits[10..] == "000") {
                    return Err(IdError::TaxCodeComponent);
                }
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

/// A passport number: letters and digits, 5 to 20 (Vietnamese passports are a letter and
/// 7 digits; foreign ones vary). Stored in upper case.
pub fn passport(text: &str) -> Result<String, IdError> {
    let t = text.trim().to_ascii_uppercase();
    if (5..=20).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(t)
    } else {
        Err(IdError::PassportFormat)
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

/// Masks every email address in a free text (an SMTP server's refusal, say) as
/// [`mask_email`] does, so that text can go to logs, the delivery log and events.
pub fn mask_emails_in(text: &str) -> String {
    let local = |c: char| c.is_ascii_alphanumeric() || "._%+-!#$&'*/=?^`{|}~".contains(c);
    let domain = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let mut start = i;
            while start > 0 && local(chars[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && domain(chars[end]) {
                end += 1;
            }
            let dom: String = chars[i + 1..end].iter().collect();
            let dom = dom.trim_end_matches('.');
            if start < i && dom.contains('.') {
                // Drop the local part already copied, write the masked address.
                let copied = i - start;
                for _ in 0..copied {
                    out.pop();
                }
                let address: String = chars[start..i].iter().collect::<String>() + "@" + dom;
                out.push_str(&mask_email(&address));
                i += 1 + dom.chars().count();
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_in_a_text_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_emails_in("550 5.1.1 <nguyen.van.a@example.vn>: Recipient address rejected"),
            "550 5.1.1 <ng***@example.vn>: Recipient address rejected"
        );
        assert_eq!(mask_emails_in("to a.b@x.vn, c@y.com."), "to a.***@x.vn, c***@y.com.");
        assert_eq!(mask_emails_in("no address @ here, user@localhost"), "no address @ here, user@localhost");
        assert_eq!(mask_emails_in("Trần Thị <tt@mail.gov.vn> đã từ chối"), "Trần Thị <tt***@mail.gov.vn> đã từ chối");
    }

    #[test]
    fn known_tax_codes() {
        // Real published codes: Vietnam Electricity (EVN) and a branch form.
        assert!(TaxCode::parse("0100100079").is_ok());
        assert_eq!(TaxCode::parse("0100100079001").unwrap().expose(), "0100100079-001");
        assert_eq!(TaxCode::parse("0100100079-001").unwrap().expose(), "0100100079-001");
        assert_eq!(TaxCode::parse("0100100078"), Err(IdError::TaxCodeCheckDigit));
        assert_eq!(TaxCode::parse("001203004567").unwrap().expose(), "001203004567");
        assert_eq!(TaxCode::parse("01001000"), Err(IdError::TaxCodeFormat));
        // python-stdnum's vn.mst refuses these too.
        assert_eq!(TaxCode::parse("0100000003"), Err(IdError::TaxCodeComponent));
        assert_eq!(TaxCode::parse("0100100079-000"), Err(IdError::TaxCodeComponent));
        assert!(TaxCode::parse("0100233488").is_ok());
        assert!(TaxCode::parse("0314409058-002").is_ok());
        assert_eq!(TaxCode::parse("0100233480"), Err(IdError::TaxCodeCheckDigit));
        assert_eq!(TaxCode::parse("010010007a"), Err(IdError::TaxCodeFormat));
        assert_eq!(TaxCode::parse("0100100079_001"), Err(IdError::TaxCodeFormat));
    }

    #[test]
    fn personal_ids_know_provinces_and_centuries() {
        assert_eq!(PersonalId::parse("027190001234").unwrap().birth_year(), 1990);
        assert_eq!(PersonalId::parse("001305001234").unwrap().birth_year(), 2005);
        assert_eq!(PersonalId::parse("003190001234"), Err(IdError::PersonalIdProvince("003".into())));
        assert_eq!(PersonalId::parse("097190001234"), Err(IdError::PersonalIdProvince("097".into())));
        assert_eq!(PersonalId::parse("079490001234"), Err(IdError::PersonalIdCentury('4')));
        assert_eq!(passport("c1234567").unwrap(), "C1234567");
        assert_eq!(PersonalId::parse_in("001222001234", 2026).unwrap().birth_year(), 2022);
        assert_eq!(PersonalId::parse_in("001222001234", 2021), Err(IdError::PersonalIdBirthYear(2022)));
        assert_eq!(PersonalId::parse_in("001299001234", 2026), Err(IdError::PersonalIdBirthYear(2099)));
        assert!(PersonalId::parse_in("001190001234", 2026).is_ok());
        assert!(passport("C 123").is_err());
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
            let zero_sequence = prefix[2..9].iter().all(|d| *d == 0);
            match tax_code_check_digit(&prefix) {
                Some(c) if !zero_sequence => prop_assert_eq!(accepted, vec![c]),
                _ => prop_assert!(accepted.is_empty()),
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
