//! `receiptctl reconcile` and `receiptctl report usage`: the printed reports (the queries
//! are `crate::reports`).

use crate::session::{session, Conn};
use crate::table;
use crate::{reports, Format, ReconcileArgs};
use chrono::NaiveDate;
use feepay_domain::numbering::gmt7;
use std::io::Write;
use std::process::ExitCode;

pub async fn reconcile(out: &mut impl Write, conn: &Conn, a: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    if let Some(agency) = &a.agency {
        actor.check_agency(agency)?;
    }
    let day = a.date.unwrap_or_else(|| {
        let today = crate::session::now().with_timezone(&gmt7()).date_naive();
        today.pred_opt().unwrap_or(today)
    });
    let (rows, unmatched) = reports::reconcile(&db, &actor, day, a.agency.as_deref(), a.provider.as_deref()).await?;
    actor
        .record(
            &db,
            "report.reconcile",
            &day.to_string(),
            None,
            serde_json::json!({"agency": a.agency, "provider": a.provider}),
        )
        .await?;
    match (a.format, a.unmatched) {
        (Format::Csv, false) => {
            writeln!(out, "{}", reports::RECON_HEADERS.join(","))?;
            for r in &rows {
                writeln!(out, "{}", reports::csv_line(&r.cells(false)))?;
            }
        }
        (Format::Csv, true) => {
            writeln!(out, "{}", reports::UNMATCHED_HEADERS.join(","))?;
            for u in &unmatched {
                writeln!(out, "{}", reports::csv_line(&u.cells()))?;
            }
        }
        (Format::Xml, _) => {
            eprintln!("reconcile prints a table or csv");
            return Ok(ExitCode::from(2));
        }
        (Format::Table, _) => {
            writeln!(out, "reconciliation of payments made on {day} (GMT+7)")?;
            let headers: Vec<String> = reports::RECON_HEADERS.iter().map(|h| h.to_uppercase()).collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells(true)).collect();
            table::print(out, &headers, &cells)?;
            let total = |f: fn(&reports::ReconRow) -> i64| rows.iter().map(f).sum::<i64>();
            writeln!(
                out,
                "total: {} payments, {} đ paid, {} đ collected on valid receipts, {} đ waived",
                total(|r| r.payments),
                feepay_domain::Vnd::new(total(|r| r.paid)).map(|v| v.grouped()).unwrap_or_default(),
                feepay_domain::Vnd::new(total(|r| r.collected)).map(|v| v.grouped()).unwrap_or_default(),
                feepay_domain::Vnd::new(total(|r| r.waived)).map(|v| v.grouped()).unwrap_or_default(),
            )?;
            writeln!(out, "\npayments without a valid receipt: {}", unmatched.len())?;
            if !unmatched.is_empty() {
                let headers: Vec<String> = reports::UNMATCHED_HEADERS.iter().map(|h| h.to_uppercase()).collect();
                let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
                let cells: Vec<Vec<String>> = unmatched.iter().map(|u| u.cells()).collect();
                table::print(out, &headers, &cells)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn usage(
    out: &mut impl Write,
    conn: &Conn,
    from: NaiveDate,
    to: NaiveDate,
    agency: Option<String>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    if let Some(a) = &agency {
        actor.check_agency(a)?;
    }
    if to < from {
        eprintln!("--to {to} is before --from {from}");
        return Ok(ExitCode::from(2));
    }
    let rows = reports::usage(&db, &actor, from, to, agency.as_deref()).await?;
    actor.record(&db, "report.usage", &format!("{from}..{to}"), None, serde_json::json!({"agency": agency})).await?;
    match format {
        Format::Csv => {
            writeln!(out, "{}", reports::USAGE_HEADERS.join(","))?;
            for r in &rows {
                writeln!(out, "{}", reports::csv_line(&r.cells(from, to)))?;
            }
        }
        Format::Xml => {
            eprintln!(
                "the official XML of BC26/BLĐT is signed by the issuer for each closed period: receiptctl tax list --kind usage-report"
            );
            return Ok(ExitCode::from(2));
        }
        Format::Table => {
            writeln!(out, "receipt usage from {from} to {to} (GMT+7)")?;
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let c = r.cells(from, to);
                    vec![
                        c[0].clone(),
                        c[3].clone(),
                        c[4].clone(),
                        c[7].clone(),
                        c[8].clone(),
                        c[9].clone(),
                        c[10].clone(),
                        c[11].clone(),
                        c[12].clone(),
                        c[14].clone(),
                    ]
                })
                .collect();
            table::print(
                out,
                &[
                    "AGENCY",
                    "TEMPLATE",
                    "SYMBOL",
                    "OPENING",
                    "FROM",
                    "TO",
                    "USED",
                    "CANCELLED",
                    "CANCELLED NUMBERS",
                    "CLOSING",
                ],
                &cells,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
