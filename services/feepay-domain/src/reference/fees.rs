//! The fee schedule file: every fee with its rate, tiers, cap, legal basis and window.

use super::{line_of, toml_error, valid_code, DataError, Fee, FeeKind, ReferenceData, Tier};
use crate::money::Vnd;
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::BTreeMap;

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
    #[serde(default)]
    tiers: Vec<TierEntry>,
    cap: Option<i64>,
    authority: String,
    basis: String,
    valid_from: NaiveDate,
    valid_until: Option<NaiveDate>,
    collector: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierEntry {
    from: u32,
    amount: i64,
}

/// Reads the fees into `data`; returns the line of each fee (for later cross-checks).
pub(super) fn parse(
    file: &str,
    text: &str,
    data: &mut ReferenceData,
    errors: &mut Vec<DataError>,
) -> BTreeMap<String, usize> {
    let mut fee_lines = BTreeMap::new();
    let parsed = match toml::from_str::<FeeFile>(text) {
        Ok(f) => f,
        Err(e) => {
            errors.push(toml_error(file, text, &e));
            return fee_lines;
        }
    };
    for spanned in parsed.fee {
        let line = line_of(text, spanned.span().start);
        let f = spanned.into_inner();
        let err = |m: String| DataError::new(file, line, m);
        if !valid_code(&f.code) {
            errors.push(err(format!("fee code {:?} must be 1-40 characters of A-Z, 0-9, '-', '_' or '.'", f.code)));
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
        if f.basis.trim().is_empty() {
            errors.push(err(format!("fee {}: basis (the legal text setting the rate) is required", f.code)));
        }
        if f.valid_until.is_some_and(|u| u < f.valid_from) {
            errors.push(err(format!("fee {}: valid_until is before valid_from", f.code)));
        }
        let mut tiers = Vec::new();
        let mut last_from = 1;
        for t in &f.tiers {
            match Vnd::new(t.amount) {
                Ok(amount) if t.from > last_from => {
                    tiers.push(Tier { from: t.from, amount });
                    last_from = t.from;
                }
                Ok(_) => errors.push(err(format!(
                    "fee {}: tiers must start after unit 1 and rise (tier from {})",
                    f.code, t.from
                ))),
                Err(e) => errors.push(err(format!("fee {}: tier amount: {e}", f.code))),
            }
        }
        let cap = match f.cap.map(Vnd::new).transpose() {
            Ok(Some(c)) if c < base => {
                errors.push(err(format!("fee {}: cap {c} is below the base amount {base}", f.code)));
                None
            }
            Ok(c) => c,
            Err(e) => {
                errors.push(err(format!("fee {}: cap: {e}", f.code)));
                None
            }
        };
        if data.fees.contains_key(&f.code) {
            errors.push(err(format!("fee {} is defined twice", f.code)));
            continue;
        }
        fee_lines.insert(f.code.clone(), line);
        data.fees.insert(
            f.code.clone(),
            Fee {
                code: f.code,
                name: f.name,
                kind: f.kind,
                base_amount: base,
                tiers,
                cap,
                authority: f.authority,
                basis: f.basis,
                valid_from: f.valid_from,
                valid_until: f.valid_until,
                collector: f.collector,
            },
        );
    }
    fee_lines
}
