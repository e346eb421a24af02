//! `receiptctl deliveries`: the notifier's delivery log, and queuing an email again.

use crate::access::Role;
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::DeliveriesCmd;
use chrono::{DateTime, Utc};
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::sql::stmt;
use sea_orm::ConnectionTrait;
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: DeliveriesCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DeliveriesCmd::List { status, agency, limit } => {
            let (db, actor) = session(conn).await?;
            if !["queued", "sent", "failed", "skipped"].contains(&status.as_str()) {
                eprintln!("status must be queued, sent, failed or skipped");
                return Ok(ExitCode::from(2));
            }
            let rows = db
                .query_all(stmt(
                    "SELECT d.notification_id, d.kind, d.agency_code, d.payment_id, d.recipient, d.attempts, d.last_error, d.created_at \
                     FROM deliveries d WHERE d.status = $1 AND ($2::TEXT IS NULL OR d.agency_code = $2) AND ($4::TEXT[] IS NULL OR d.agency_code = ANY($4)) ORDER BY d.created_at DESC LIMIT $3",
                    vec![status.clone().into(), agency.into(), limit.into(), sea_orm::Value::Array(sea_orm::sea_query::ArrayType::String, actor.scope_value().map(|v| Box::new(v.into_iter().map(|s| sea_orm::Value::String(Some(Box::new(s)))).collect())))],
                ))
                .await?;
            let mut t = Vec::new();
            for r in rows {
                let at: DateTime<Utc> = r.try_get("", "created_at")?;
                t.push(vec![
                    datetime_gmt7(at),
                    r.try_get::<String>("", "kind")?,
                    r.try_get::<String>("", "agency_code")?,
                    r.try_get::<String>("", "payment_id")?,
                    r.try_get::<Option<String>>("", "recipient")?
                        .map(|e| feepay_domain::ids::mask_email(&e))
                        .unwrap_or_else(|| "—".into()),
                    r.try_get::<i32>("", "attempts")?.to_string(),
                    r.try_get::<Option<String>>("", "last_error")?.unwrap_or_default().chars().take(80).collect(),
                    r.try_get::<String>("", "notification_id")?,
                ]);
            }
            table::print(
                out,
                &["CREATED (GMT+7)", "KIND", "AGENCY", "PAYMENT", "TO", "ATTEMPTS", "LAST ERROR", "NOTIFICATION"],
                &t,
            )?;
            writeln!(out, "{} {status} deliver{}", t.len(), if t.len() == 1 { "y" } else { "ies" })?;
        }
        DeliveriesCmd::Resend { id, reason, yes } => {
            let (db, actor) = session(conn).await?;
            actor.require(Role::Operator, "resend emails")?;
            let rows = db
                .query_all(stmt(
                    "SELECT d.notification_id, d.status, d.recipient, d.agency_code FROM deliveries d LEFT JOIN receipts r ON r.receipt_id::TEXT = d.receipt_id \
                     WHERE d.receipt_id = $1 OR r.lookup_code = $1 OR d.payment_id = $1 ORDER BY d.created_at",
                    vec![id.clone().into()],
                ))
                .await?;
            if rows.is_empty() {
                eprintln!("no email was recorded for {id}: check the id (receipt id, lookup code or payment id) and that the notifier received the receipt event");
                return Ok(ExitCode::from(2));
            }
            let mut ids = Vec::new();
            for r in &rows {
                actor.check_agency(&r.try_get::<String>("", "agency_code")?)?;
                let nid: String = r.try_get("", "notification_id")?;
                let status: String = r.try_get("", "status")?;
                let to = r.try_get::<Option<String>>("", "recipient")?;
                if to.is_none() {
                    writeln!(out, "{nid}: {status}, no valid address on record; nothing to resend")?;
                    continue;
                }
                writeln!(out, "{nid}: {status} → queued again")?;
                ids.push(nid);
            }
            if ids.is_empty() {
                return Ok(ExitCode::from(2));
            }
            if !yes && !confirm(&format!("resend {} email(s)?", ids.len()))? {
                return Ok(ExitCode::from(2));
            }
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            txn.execute(stmt(
                "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = now(), last_error = NULL WHERE notification_id = ANY($1)",
                vec![ids.clone().into()],
            ))
            .await?;
            txn.execute(stmt(
                "INSERT INTO audit_log (actor, action, target, reason, details) VALUES ($1, 'delivery.resend', $2, $3, $4)",
                vec![actor.name.clone().into(), id.clone().into(), reason.into(), serde_json::json!({ "notifications": ids }).into()],
            ))
            .await?;
            txn.commit().await?;
            writeln!(out, "queued; the notifier sends within seconds")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
