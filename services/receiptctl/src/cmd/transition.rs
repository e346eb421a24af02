//! `receiptctl receipts transition`: receipts issued from 1 July 2026 that bear a symbol of
//! the rules that ended (Circular 32/2025's `26T`) instead of Circular 91/2026/TT-BTC's
//! (`26TAA`).
//!
//! What the rules ask: the symbol is content Decree 254/2026/NĐ-CP Art. 23.2.b requires "as
//! the Minister of Finance provides", and a receipt not made as Art. 23 says cannot be
//! accounted for (Art. 26.2). Circular 91 Art. 20 corrects an error by notice only when it
//! is in other content with the right tax code and amount, and otherwise by a replacement;
//! Art. 24.2 has documents made under Decree 123/2020, Decree 70/2025 and Circular 32/2025
//! "adjusted or replaced as provided", and receipts have no adjustment. So each such receipt
//! is replaced by one of the collector's registered series that names it; the replacement
//! and (late, with the reason) the original go to the tax authority on the summaries
//! 01/TH-BLĐT of their days, and the payer is emailed the replacement.

use super::receipts::{correct, CorrectionAsk};
use crate::access::Role;
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::tables::receipts;
use feepay_domain::numbering::date_gmt7;
use feepay_domain::receipt::datetime_gmt7;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use std::io::Write;
use std::process::ExitCode;

/// Why each is replaced, as the notice and audit log say it.
pub const REASON: &str = "Ký hiệu biên lai không theo Phụ lục II Thông tư 91/2026/TT-BTC (áp dụng từ ngày 01/7/2026); lập biên lai thay thế theo khoản 2 Điều 20 Thông tư 91/2026/TT-BTC";

/// The first day of the rules of Decree 254/2026/NĐ-CP and Circular 91/2026/TT-BTC.
fn first_day() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 7, 1).expect("a date")
}

pub async fn run(
    out: &mut impl Write,
    conn: &Conn,
    agency: Option<String>,
    apply: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    actor.require(if apply { Role::Operator } else { Role::Auditor }, "replace receipts of the old symbol")?;
    let Some(loaded) = feepay_runtime::refdata::load_latest(&db).await? else {
        eprintln!("no reference data loaded: run `receiptctl reference load`");
        return Ok(ExitCode::from(2));
    };
    let reference = &loaded.reference;
    let mut q = receipts::Entity::find()
        .filter(receipts::Column::Status.eq("issued"))
        .filter(receipts::Column::IssuedAt.gte(crate::reports::day_start(first_day())));
    if let Some(scope) = actor.scope_value() {
        q = q.filter(receipts::Column::AgencyCode.is_in(scope));
    }
    if let Some(a) = &agency {
        q = q.filter(receipts::Column::AgencyCode.eq(a));
    }
    let rows = q.order_by_asc(receipts::Column::IssuedAt).all(&db).await?;
    let mut wrong = Vec::new();
    for r in rows {
        let day = date_gmt7(r.issued_at);
        let right: Vec<String> = reference
            .series
            .iter()
            .filter(|s| s.agency == r.agency_code && s.template == r.template)
            .filter_map(|s| s.symbol_on(day))
            .collect();
        if !right.contains(&r.symbol) {
            wrong.push((r, right));
        }
    }
    let table_rows: Vec<Vec<String>> = wrong
        .iter()
        .map(|(r, right)| {
            vec![
                r.agency_code.clone(),
                format!("{} {} {:07}", r.template, r.symbol, r.number),
                datetime_gmt7(r.issued_at),
                right.join(", "),
                r.lookup_code.clone(),
            ]
        })
        .collect();
    table::print(out, &["AGENCY", "RECEIPT", "ISSUED (GMT+7)", "SYMBOL DUE", "LOOKUP CODE"], &table_rows)?;
    writeln!(out, "{} receipt(s) issued from 1 July 2026 bear a symbol of the rules that ended", wrong.len())?;
    if wrong.is_empty() || !apply {
        if !wrong.is_empty() {
            writeln!(out, "run again with --apply to replace them (Circular 91/2026/TT-BTC Art. 20.2)")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !yes && !confirm(&format!("replace these {} receipt(s)?", wrong.len()))? {
        return Ok(ExitCode::from(2));
    }
    let mut failed = 0;
    for (r, _) in &wrong {
        let ask = CorrectionAsk {
            receipt: r.receipt_id.to_string(),
            kind: "replace",
            reason: REASON.to_string(),
            fix: Default::default(),
        };
        if correct(out, conn, ask, true).await? != ExitCode::SUCCESS {
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} replacement(s) could not be made; see above", wrong.len());
        return Ok(ExitCode::from(1));
    }
    writeln!(
        out,
        "{} receipt(s) replaced; the originals and their replacements go to the tax authority on the summaries 01/TH-BLĐT of their days",
        wrong.len()
    )?;
    Ok(ExitCode::SUCCESS)
}
