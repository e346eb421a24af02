//! The rules of an operator's correction of a receipt.
//!
//! Since 1 July 2026 (Circular 91/2026/TT-BTC Art. 20) an error is corrected in one of two
//! ways, never by cancelling the receipt:
//! - a wrong name, address, amount in words or other content, with the right tax code and
//!   amount: the payer is told, nothing is reissued, and the tax authority is told on
//!   04/SS-CTĐT ([`Procedure::Notify`]);
//! - any other error: a replacement receipt that names the one it replaces
//!   ([`Procedure::Replace`]).
//!
//! A payer's personal identification number is their tax code since 1 July 2025, so a wrong
//! one is a wrong tax code and needs a replacement. Receipts of a form version whose rule
//! is still [`ErrorRule::CancelOrReplace`] (before 1 July 2026) could be cancelled.
//! In every case the correction changes only the payer fields asked for, to valid values,
//! and must change something; a reason of at least 5 characters is recorded.

use crate::forms::ErrorRule;
use crate::ids::{IdError, PersonalId, TaxCode};

/// The payer fields a correction may change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayerFields {
    pub full_name: String,
    pub personal_id: String,
    pub tax_code: String,
    pub passport: String,
    pub address: String,
}

/// Payer fields to correct; `None` keeps the field as it was, an empty string clears an
/// identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PayerCorrection {
    pub full_name: Option<String>,
    pub personal_id: Option<String>,
    pub tax_code: Option<String>,
    #[serde(default)]
    pub passport: Option<String>,
    pub address: Option<String>,
}

/// How an error is corrected (Circular 91/2026/TT-BTC Art. 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Procedure {
    /// Art. 20.1: tell the payer and the tax authority (04/SS-CTĐT); the receipt stands.
    Notify,
    /// Art. 20.2: a replacement receipt.
    Replace,
}

impl Procedure {
    pub fn code(self) -> &'static str {
        match self {
            Procedure::Notify => "notify",
            Procedure::Replace => "replace",
        }
    }

    pub fn from_code(code: &str) -> Option<Procedure> {
        match code {
            "notify" => Some(Procedure::Notify),
            "replace" => Some(Procedure::Replace),
            _ => None,
        }
    }
}

/// The procedure a payer correction needs: a changed tax code or personal identification
/// number (the tax code of an individual) is a replacement, any other field a notice.
pub fn procedure_for(original: &PayerFields, fixed: &PayerFields) -> Procedure {
    if original.tax_code != fixed.tax_code || original.personal_id != fixed.personal_id {
        Procedure::Replace
    } else {
        Procedure::Notify
    }
}

/// Whether a correction of this procedure may be made of a receipt now, under the rule of
/// the form version in force: a notice of an error whose fix needs a replacement is
/// refused (Art. 20.1 covers only errors with the right tax code and amount).
pub fn check_procedure(asked: Procedure, needed: Procedure) -> Result<(), CorrectionError> {
    match (asked, needed) {
        (Procedure::Notify, Procedure::Replace) => Err(CorrectionError::NeedsReplacement),
        _ => Ok(()),
    }
}

/// A cancellation is possible only under a form version whose rule allows it.
pub fn check_cancellation(rule: ErrorRule) -> Result<(), CorrectionError> {
    match rule {
        ErrorRule::CancelOrReplace => Ok(()),
        ErrorRule::NotifyOrReplace => Err(CorrectionError::NoCancellation),
    }
}

/// Why a correction is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorrectionError {
    #[error("give the reason for the cancellation (at least 5 characters)")]
    ReasonTooShort,
    #[error("the payer's name cannot be empty")]
    EmptyName,
    #[error("personal id: {0}")]
    PersonalId(IdError),
    #[error("tax code: {0}")]
    TaxCode(IdError),
    #[error("the payer needs a personal id, a tax code or a passport number")]
    NoIdentifier,
    #[error("the replacement would be identical; say what to correct")]
    Identical,
    #[error("passport: {0}")]
    Passport(IdError),
    #[error(
        "an e-receipt is no longer cancelled (Circular 91/2026/TT-BTC Art. 20): notify a wrong name, address or other \
         content (receiptctl receipts notify), or replace the receipt for any other error (receiptctl receipts replace)"
    )]
    NoCancellation,
    #[error(
        "a wrong tax code or personal identification number is not corrected by a notice (Circular 91/2026/TT-BTC \
         Art. 20.1): replace the receipt"
    )]
    NeedsReplacement,
}

/// A cancellation's reason is printed on the notice: at least 5 characters.
pub fn check_reason(reason: &str) -> Result<(), CorrectionError> {
    if reason.trim().chars().count() < 5 {
        return Err(CorrectionError::ReasonTooShort);
    }
    Ok(())
}

/// The payer of a replacement: the original with the corrections applied, validated.
pub fn correct_payer(original: &PayerFields, fix: &PayerCorrection) -> Result<PayerFields, CorrectionError> {
    let mut payer = original.clone();
    if let Some(n) = &fix.full_name {
        if n.trim().is_empty() {
            return Err(CorrectionError::EmptyName);
        }
        payer.full_name = n.trim().to_string();
    }
    if let Some(id) = &fix.personal_id {
        payer.personal_id = if id.is_empty() {
            String::new()
        } else {
            PersonalId::parse(id).map_err(CorrectionError::PersonalId)?.expose().to_string()
        };
    }
    if let Some(t) = &fix.tax_code {
        payer.tax_code = if t.is_empty() {
            String::new()
        } else {
            TaxCode::parse(t).map_err(CorrectionError::TaxCode)?.expose().to_string()
        };
    }
    if let Some(p) = &fix.passport {
        payer.passport =
            if p.is_empty() { String::new() } else { crate::ids::passport(p).map_err(CorrectionError::Passport)? };
    }
    if let Some(a) = &fix.address {
        payer.address = a.trim().to_string();
    }
    // A payer without any identifier can have a receipt (no payer field is required by
    // Decree 254/2026/NĐ-CP Art. 23.2); a correction only never removes the last one.
    let had_one = !(original.personal_id.is_empty() && original.tax_code.is_empty() && original.passport.is_empty());
    if had_one && payer.personal_id.is_empty() && payer.tax_code.is_empty() && payer.passport.is_empty() {
        return Err(CorrectionError::NoIdentifier);
    }
    if payer == *original {
        return Err(CorrectionError::Identical);
    }
    Ok(payer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn original() -> PayerFields {
        PayerFields {
            full_name: "Nguyễn Văn An".into(),
            personal_id: "027190001234".into(),
            tax_code: String::new(),
            passport: String::new(),
            address: "Bắc Ninh".into(),
        }
    }

    #[test]
    fn corrections_are_checked() {
        assert_eq!(check_reason("sai"), Err(CorrectionError::ReasonTooShort));
        assert!(check_reason("Sai họ tên").is_ok());
        let fix = PayerCorrection { full_name: Some("Nguyễn Văn Ân".into()), ..Default::default() };
        assert_eq!(correct_payer(&original(), &fix).unwrap().full_name, "Nguyễn Văn Ân");
        let same = PayerCorrection { full_name: Some(" Nguyễn Văn An ".into()), ..Default::default() };
        assert_eq!(correct_payer(&original(), &same), Err(CorrectionError::Identical));
        let bad = PayerCorrection { personal_id: Some("123".into()), ..Default::default() };
        assert!(matches!(correct_payer(&original(), &bad), Err(CorrectionError::PersonalId(_))));
        let none = PayerCorrection { personal_id: Some(String::new()), ..Default::default() };
        assert_eq!(correct_payer(&original(), &none), Err(CorrectionError::NoIdentifier));
    }

    /// Circular 91/2026/TT-BTC Art. 20, each kind of error to its procedure.
    #[test]
    fn each_error_goes_to_the_procedure_of_article_20() {
        let o = original();
        let cases = [
            (PayerCorrection { full_name: Some("Nguyễn Văn Ân".into()), ..Default::default() }, Procedure::Notify),
            (PayerCorrection { address: Some("Phường Kinh Bắc".into()), ..Default::default() }, Procedure::Notify),
            (PayerCorrection { passport: Some("C1234567".into()), ..Default::default() }, Procedure::Notify),
            (PayerCorrection { personal_id: Some("027190001235".into()), ..Default::default() }, Procedure::Replace),
            (PayerCorrection { tax_code: Some("0100109106".into()), ..Default::default() }, Procedure::Replace),
            (
                PayerCorrection {
                    full_name: Some("X Y".into()),
                    tax_code: Some("0100109106".into()),
                    ..Default::default()
                },
                Procedure::Replace,
            ),
        ];
        for (fix, expected) in cases {
            let fixed = correct_payer(&o, &fix).unwrap();
            assert_eq!(procedure_for(&o, &fixed), expected, "{fix:?}");
        }
        assert_eq!(check_procedure(Procedure::Notify, Procedure::Replace), Err(CorrectionError::NeedsReplacement));
        assert!(check_procedure(Procedure::Replace, Procedure::Notify).is_ok(), "a replacement may fix anything");
        assert_eq!(check_cancellation(ErrorRule::NotifyOrReplace), Err(CorrectionError::NoCancellation));
        assert!(check_cancellation(ErrorRule::CancelOrReplace).is_ok());
        // A payer who had no identifier stays correctable.
        let anonymous = PayerFields { personal_id: String::new(), ..o.clone() };
        let fix = PayerCorrection { full_name: Some("Người nộp".into()), ..Default::default() };
        assert!(correct_payer(&anonymous, &fix).is_ok());
    }

    proptest! {
        /// A correction changes only the fields it names, and what it accepts is valid.
        #[test]
        fn only_named_fields_change(name in proptest::option::of("[A-Za-zÀ-ỹ ]{0,20}"), address in proptest::option::of(".{0,20}")) {
            let fix = PayerCorrection { full_name: name.clone(), address: address.clone(), ..Default::default() };
            if let Ok(p) = correct_payer(&original(), &fix) {
                prop_assert_eq!(p.personal_id, original().personal_id);
                prop_assert_eq!(p.tax_code, original().tax_code);
                prop_assert!(!p.full_name.trim().is_empty());
                if name.is_none() { prop_assert_eq!(p.full_name, original().full_name); }
                if address.is_none() { prop_assert_eq!(p.address, original().address); }
            }
        }
    }
}
