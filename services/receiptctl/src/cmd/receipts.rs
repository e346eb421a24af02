//! `receiptctl receipts`: find and show receipts, and ask the issuer to correct one: notify
//! an error or replace the receipt (Circular 91/2026/TT-BTC Art. 20), or cancel a receipt of
//! the rules before 1 July 2026; and the transition of receipts issued from 1 July 2026 with
//! the old symbol.

use crate::access::Role;
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::tables::{payments, receipts};
use crate::{reports, ReceiptsCmd};
use anyhow::Context;
use chrono::{DateTime, Utc};
use feepay_domain::receipt::datetime_gmt7;
use sea_orm::{ColumnTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait};
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: ReceiptsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ReceiptsCmd::List { agency, payment, dossier, from, to, limit } => {
            let (db, actor) = session(conn).await?;
            use receipts::Column as C;
            let mut q = receipts::Entity::find()
                .select_only()
                .columns([
                    C::AgencyCode,
                    C::Template,
                    C::Symbol,
                    C::Number,
                    C::Status,
                    C::Total,
                    C::IssuedAt,
                    C::PaymentId,
                ])
                .column(payments::Column::DossierCode)
                .column(C::LookupCode)
                .join(JoinType::InnerJoin, receipts::Relation::Payment.def());
            if let Some(scope) = actor.scope_value() {
                q = q.filter(C::AgencyCode.is_in(scope));
            }
            if let Some(a) = agency {
                q = q.filter(C::AgencyCode.eq(a));
            }
            if let Some(p) = payment {
                q = q.filter(C::PaymentId.eq(p));
            }
            if let Some(d) = dossier {
                q = q.filter(payments::Column::DossierCode.eq(d));
            }
            // Days are GMT+7 days: compare instants with midnight in Vietnam, computed here.
            if let Some(f) = from {
                q = q.filter(C::IssuedAt.gte(reports::day_start(f)));
            }
            if let Some(t) = to {
                q = q.filter(C::IssuedAt.lt(reports::day_start(t.succ_opt().unwrap_or(t))));
            }
            type Listed = (String, String, String, i32, String, i64, DateTime<Utc>, String, String, String);
            let rows: Vec<Listed> = q
                .order_by_desc(C::IssuedAt)
                .order_by_desc(C::Number)
                .limit(limit.max(0) as u64)
                .into_tuple()
                .all(&db)
                .await?;
            let mut table_rows = Vec::new();
            for (agency, template, symbol, number, status, total, issued, payment_id, dossier, lookup_code) in rows {
                table_rows.push(vec![
                    agency,
                    format!("{template} {symbol}"),
                    format!("{number:07}"),
                    status,
                    feepay_domain::Vnd::new(total).map(|v| v.grouped()).unwrap_or_default(),
                    datetime_gmt7(issued),
                    payment_id,
                    dossier,
                    lookup_code,
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
            let row = receipts::Entity::find().filter(receipts::named(&id)).one(&db).await?;
            let Some(row) = row.filter(|r| actor.covers(&r.agency_code)) else {
                eprintln!("no receipt with lookup code or id {id} (in your scope)");
                return Ok(ExitCode::from(2));
            };
            actor.record(&db, "receipt.show", &id, None, serde_json::json!({})).await?;
            writeln!(out, "status: {}", row.status)?;
            if row.status == "cancelled" {
                writeln!(out, "cancelled: {}", row.cancel_reason.unwrap_or_default())?;
            }
            if let (Some(by), Some(at)) = (row.replaced_by, row.replaced_at) {
                writeln!(out, "replaced on {} by receipt {by}", datetime_gmt7(at))?;
            }
            if let Some(d) = &row.delegate_code {
                writeln!(out, "issued by delegate {d} (numbers from {:07})", row.range_from)?;
            }
            writeln!(out, "{}", row.document)?;
        }
        ReceiptsCmd::Correct { id, reason, payer, yes } => {
            return correct(out, conn, CorrectionAsk { receipt: id, kind: "correct", reason, fix: payer.into() }, yes)
                .await;
        }
        ReceiptsCmd::Notify { id, reason, payer, yes } => {
            return correct(out, conn, CorrectionAsk { receipt: id, kind: "notify", reason, fix: payer.into() }, yes)
                .await;
        }
        ReceiptsCmd::Replace { id, reason, payer, yes } => {
            return correct(out, conn, CorrectionAsk { receipt: id, kind: "replace", reason, fix: payer.into() }, yes)
                .await;
        }
        ReceiptsCmd::Cancel { id, reason, yes } => {
            return correct(
                out,
                conn,
                CorrectionAsk { receipt: id, kind: "cancel", reason, fix: Default::default() },
                yes,
            )
            .await;
        }
        ReceiptsCmd::Transition { agency, apply, yes } => {
            return super::transition::run(out, conn, agency, apply, yes).await
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A correction an operator asks for.
pub struct CorrectionAsk {
    /// Receipt id or lookup code.
    pub receipt: String,
    /// `correct`, `notify`, `replace` or `cancel`.
    pub kind: &'static str,
    pub reason: String,
    /// The payer fields as they should read.
    pub fix: feepay_domain::correction::PayerCorrection,
}

/// Asks the issuer for a correction: the request is queued and the running issuer, which
/// holds the signing keys, carries it out in its own transaction; this waits for the outcome.
pub(super) async fn correct(
    out: &mut impl Write,
    conn: &Conn,
    ask: CorrectionAsk,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    actor.require(Role::Operator, "correct receipts")?;
    if let Err(e) = feepay_domain::correction::check_reason(&ask.reason) {
        eprintln!("{e}");
        return Ok(ExitCode::from(2));
    }
    let row = receipts::Entity::find().filter(receipts::named(&ask.receipt)).one(&db).await?;
    let Some(row) = row.filter(|r| actor.covers(&r.agency_code)) else {
        eprintln!("no receipt with id or lookup code {} (in your scope)", ask.receipt);
        return Ok(ExitCode::from(2));
    };
    let label = format!(
        "{} {} {} {:07} ({} đ, {})",
        row.agency_code,
        row.template,
        row.symbol,
        row.number,
        feepay_domain::Vnd::new(row.total).map(|v| v.grouped()).unwrap_or_default(),
        row.status,
    );
    let what = match ask.kind {
        "notify" => "notify the error on",
        "replace" => "replace",
        "cancel" => "cancel",
        _ => "correct",
    };
    writeln!(out, "{what} receipt {label}, reason: {}", ask.reason)?;
    if !yes && !confirm(&format!("{what} this receipt? It cannot be undone."))? {
        return Ok(ExitCode::from(2));
    }
    let fix = (ask.fix != Default::default()).then(|| serde_json::to_value(&ask.fix)).transpose()?;
    let id = feepay_runtime::correction_requests::request(
        &db,
        &ask.receipt,
        ask.kind,
        &ask.reason,
        fix,
        &actor.name,
        crate::session::now(),
    )
    .await?;
    let wait = std::time::Duration::from_secs(feepay_runtime::settings::parse(
        &feepay_runtime::settings::catalog::CORRECTION_WAIT_SECS,
    )?);
    let deadline = std::time::Instant::now() + wait;
    let mut told = None;
    loop {
        let r = feepay_runtime::correction_requests::get(&db, id).await?.context("the request vanished")?;
        if r.status == "pending" && r.last_error.is_some() && told != r.last_error {
            eprintln!(
                "request {id} could not be carried out yet ({}); the issuer tries again later and serves other requests meanwhile",
                r.last_error.as_deref().unwrap_or_default()
            );
            told = r.last_error.clone();
        }
        let outcome = r.outcome.unwrap_or_default();
        match r.status.as_str() {
            "done" => {
                let receipt = outcome["receipt"].as_str().unwrap_or_default();
                match outcome["procedure"].as_str().unwrap_or_default() {
                    "notify" => writeln!(
                        out,
                        "error on {receipt} notified: notice 04/SS-CTĐT {} signed; the receipt stands and the payer is emailed",
                        outcome["noticeDocumentId"].as_str().unwrap_or_default()
                    )?,
                    "replace" => writeln!(out, "{receipt} replaced")?,
                    _ => writeln!(out, "{receipt} cancelled")?,
                }
                if let (Some(rep), Some(code)) =
                    (outcome["replacement"].as_str(), outcome["replacementLookupCode"].as_str())
                {
                    writeln!(
                        out,
                        "replaced by {rep}, lookup code {code}; it goes to the tax authority on the day's summary 01/TH-BLĐT and the payer is emailed"
                    )?;
                }
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
