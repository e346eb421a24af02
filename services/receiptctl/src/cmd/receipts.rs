//! `receiptctl receipts`: find and show receipts, and ask the issuer to cancel or replace one.

use crate::access::Role;
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::{reports, ReceiptsCmd};
use anyhow::Context;
use chrono::{DateTime, Utc};
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::sql::stmt;
use sea_orm::ConnectionTrait;
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: ReceiptsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ReceiptsCmd::List { agency, payment, dossier, from, to, limit } => {
            let (db, actor) = session(conn).await?;
            let mut sql = String::from(
                "SELECT r.agency_code, r.template, r.symbol, r.number, r.status, r.total, r.issued_at, r.payment_id, p.dossier_code, r.lookup_code \
                 FROM receipts r JOIN payments p USING (payment_id) WHERE true",
            );
            let mut v: Vec<sea_orm::Value> = Vec::new();
            let add = |cond: &str, val: sea_orm::Value, v: &mut Vec<sea_orm::Value>, sql: &mut String| {
                v.push(val);
                sql.push_str(&cond.replace("$?", &format!("${}", v.len())));
            };
            if let Some(scope) = actor.scope_value() {
                add(" AND r.agency_code = ANY($?)", scope.into(), &mut v, &mut sql);
            }
            if let Some(a) = agency {
                add(" AND r.agency_code = $?", a.into(), &mut v, &mut sql);
            }
            if let Some(p) = payment {
                add(" AND r.payment_id = $?", p.into(), &mut v, &mut sql);
            }
            if let Some(d) = dossier {
                add(" AND p.dossier_code = $?", d.into(), &mut v, &mut sql);
            }
            // Days are GMT+7 days: compare instants with midnight in Vietnam, computed here.
            // (PostgreSQL reads `AT TIME ZONE '+07'` as POSIX, i.e. UTC−7.)
            if let Some(f) = from {
                add(" AND r.issued_at >= $?", reports::day_start(f).into(), &mut v, &mut sql);
            }
            if let Some(t) = to {
                add(" AND r.issued_at < $?", reports::day_start(t.succ_opt().unwrap_or(t)).into(), &mut v, &mut sql);
            }
            v.push(limit.into());
            sql.push_str(&format!(" ORDER BY r.issued_at DESC, r.number DESC LIMIT ${}", v.len()));
            let rows = db.query_all(stmt(sql, v)).await?;
            let mut table_rows = Vec::new();
            for r in rows {
                let issued: DateTime<Utc> = r.try_get("", "issued_at")?;
                let total: i64 = r.try_get("", "total")?;
                table_rows.push(vec![
                    r.try_get::<String>("", "agency_code")?,
                    format!("{} {}", r.try_get::<String>("", "template")?, r.try_get::<String>("", "symbol")?),
                    format!("{:07}", r.try_get::<i32>("", "number")?),
                    r.try_get::<String>("", "status")?,
                    feepay_domain::Vnd::new(total).map(|v| v.grouped()).unwrap_or_default(),
                    datetime_gmt7(issued),
                    r.try_get::<String>("", "payment_id")?,
                    r.try_get::<String>("", "dossier_code")?,
                    r.try_get::<String>("", "lookup_code")?,
                ]);
            }
            table::print(
                out,
                &[
                    "AGENCY",
                    "SERIES",
                    "NUMBER",
                    "STATUS",
                    "TOTAL (đ)",
                    "ISSUED (GMT+7)",
                    "PAYMENT",
                    "DOSSIER",
                    "LOOKUP CODE",
                ],
                &table_rows,
            )?;
            writeln!(out, "{} receipt(s)", table_rows.len())?;
        }
        ReceiptsCmd::Show { id } => {
            let (db, actor) = session(conn).await?;
            let row = db
                .query_one(stmt(
                    "SELECT agency_code, document, status, cancel_reason, cancelled_at FROM receipts WHERE lookup_code = $1 OR receipt_id::text = $1",
                    vec![id.clone().into()],
                ))
                .await?;
            let Some(row) = row.filter(|r| r.try_get::<String>("", "agency_code").is_ok_and(|a| actor.covers(&a)))
            else {
                eprintln!("no receipt with lookup code or id {id} (in your scope)");
                return Ok(ExitCode::from(2));
            };
            actor.record(&db, "receipt.show", &id, None, serde_json::json!({})).await?;
            let status: String = row.try_get("", "status")?;
            writeln!(out, "status: {status}")?;
            if status == "cancelled" {
                writeln!(
                    out,
                    "cancelled: {}",
                    row.try_get::<Option<String>>("", "cancel_reason")?.unwrap_or_default()
                )?;
            }
            writeln!(out, "{}", row.try_get::<String>("", "document")?)?;
        }
        ReceiptsCmd::Cancel { id, reason, yes } => {
            return correct(out, conn, CorrectionAsk { receipt: id, reason, replace: None }, yes).await;
        }
        ReceiptsCmd::Replace { id, reason, payer_name, payer_id, payer_tax_code, payer_address, yes } => {
            let replace = feepay_domain::correction::PayerCorrection {
                full_name: payer_name,
                personal_id: payer_id,
                tax_code: payer_tax_code,
                address: payer_address,
            };
            return correct(out, conn, CorrectionAsk { receipt: id, reason, replace: Some(replace) }, yes).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A correction an operator asks for.
pub struct CorrectionAsk {
    /// Receipt id or lookup code.
    pub receipt: String,
    pub reason: String,
    /// The payer fields to change for a replacement.
    pub replace: Option<feepay_domain::correction::PayerCorrection>,
}

/// Cancels or replaces a receipt: the request is queued and the running issuer, which holds
/// the signing keys, carries it out in its own transaction; this waits for the outcome.
async fn correct(out: &mut impl Write, conn: &Conn, ask: CorrectionAsk, yes: bool) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    actor.require(Role::Operator, "cancel or replace receipts")?;
    if let Err(e) = feepay_domain::correction::check_reason(&ask.reason) {
        eprintln!("{e}");
        return Ok(ExitCode::from(2));
    }
    let row = db
        .query_one(stmt(
            "SELECT agency_code, template, symbol, number, status, total FROM receipts WHERE receipt_id::TEXT = $1 OR lookup_code = $1",
            vec![ask.receipt.clone().into()],
        ))
        .await?;
    let Some(row) = row.filter(|r| r.try_get::<String>("", "agency_code").is_ok_and(|a| actor.covers(&a))) else {
        eprintln!("no receipt with id or lookup code {} (in your scope)", ask.receipt);
        return Ok(ExitCode::from(2));
    };
    let label = format!(
        "{} {} {} {:07} ({} đ, {})",
        row.try_get::<String>("", "agency_code")?,
        row.try_get::<String>("", "template")?,
        row.try_get::<String>("", "symbol")?,
        row.try_get::<i32>("", "number")?,
        feepay_domain::Vnd::new(row.try_get::<i64>("", "total")?).map(|v| v.grouped()).unwrap_or_default(),
        row.try_get::<String>("", "status")?,
    );
    let what = if ask.replace.is_some() { "cancel and replace" } else { "cancel" };
    writeln!(out, "{what} receipt {label}, reason: {}", ask.reason)?;
    if !yes && !confirm(&format!("{what} this receipt? It cannot be undone."))? {
        return Ok(ExitCode::from(2));
    }
    let replace = ask.replace.as_ref().map(serde_json::to_value).transpose()?;
    let id = feepay_runtime::correction_requests::request(
        &db,
        &ask.receipt,
        &ask.reason,
        replace,
        &actor.name,
        crate::session::now(),
    )
    .await?;
    let wait = std::time::Duration::from_secs(feepay_runtime::settings::parse(
        &feepay_runtime::settings::catalog::CORRECTION_WAIT_SECS,
    )?);
    let deadline = std::time::Instant::now() + wait;
    loop {
        let r = feepay_runtime::correction_requests::get(&db, id).await?.context("the request vanished")?;
        let outcome = r.outcome.unwrap_or_default();
        match r.status.as_str() {
            "done" => {
                writeln!(out, "cancelled {}", outcome["cancelled"].as_str().unwrap_or_default())?;
                if let (Some(rep), Some(code)) =
                    (outcome["replacement"].as_str(), outcome["replacementLookupCode"].as_str())
                {
                    writeln!(out, "replaced by {rep}, lookup code {code}")?;
                }
                writeln!(
                    out,
                    "the issuer publishes the receipt events and the notice to the tax authority; the payer is emailed"
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            "refused" => {
                eprintln!("{}", outcome["error"].as_str().unwrap_or("refused"));
                return Ok(ExitCode::from(2));
            }
            _ if std::time::Instant::now() > deadline => {
                eprintln!(
                    "request {id} is queued but the issuer has not carried it out within {} s: is feepay-issuer running? \
                     It will be carried out when the issuer runs (receiptctl does not sign).",
                    wait.as_secs()
                );
                return Ok(ExitCode::from(1));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}
