//! The rules of an operator's correction of a receipt: a cancellation needs a reason, and
//! a replacement changes only the payer fields asked for, to valid values, and must differ
//! from the original.

use crate::ids::{IdError, PersonalId, TaxCode};

/// The payer fields a correction may change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayerFields {
    pub full_name: String,
    pub personal_id: String,
    pub tax_code: String,
    pub address: String,
}

/// Payer fields to correct; `None` keeps the field as it was, an empty string clears an
/// identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PayerCorrection {
    pub full_name: Option<String>,
    pub personal_id: Option<String>,
    pub tax_code: Option<String>,
    pub address: Option<String>,
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
    #[error("the payer needs a personal id or a tax code")]
    NoIdentifier,
    #[error("the replacement would be identical; say what to correct")]
    Identical,
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
    if let Some(a) = &fix.address {
        payer.address = a.trim().to_string();
    }
    if payer.personal_id.is_empty() && payer.tax_code.is_empty() {
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
