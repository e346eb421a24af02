//! `receiptctl deliveries`: the notifier's delivery log, and queuing an email again.

use crate::access::Role;
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::tables::{deliveries, receipts};
use crate::DeliveriesCmd;
use feepay_domain::receipt::datetime_gmt7;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
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
            use deliveries::Column as C;
            let mut q = deliveries::Entity::find().filter(C::Status.eq(status.as_str()));
            if let Some(a) = agency {
                q = q.filter(C::AgencyCode.eq(a));
            }
            if let Some(scope) = actor.scope_value() {
                q = q.filter(C::AgencyCode.is_in(scope));
            }
            let rows = q.order_by_desc(C::CreatedAt).limit(limit.max(0) as u64).all(&db).await?;
            let mut t = Vec::new();
            for r in rows {
                t.push(vec![
                    datetime_gmt7(r.created_at),
                    r.kind,
                    r.agency_code,
                    r.payment_id,
                    r.recipient.map(|e| feepay_domain::ids::mask_email(&e)).unwrap_or_else(|| "—".into()),
                    r.attempts.to_string(),
                    r.last_error.unwrap_or_default().chars().take(80).collect(),
                    r.notification_id,
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
            use deliveries::Column as C;
            // The id is a receipt id, a lookup code (whose receipt id is looked up) or a
            // payment id.
            let receipt: Option<uuid::Uuid> = receipts::Entity::find()
                .select_only()
                .column(receipts::Column::ReceiptId)
                .filter(receipts::named(&id))
                .into_tuple()
                .one(&db)
                .await?;
            let mut which = Condition::any().add(C::ReceiptId.eq(id.as_str())).add(C::PaymentId.eq(id.as_str()));
            if let Some(r) = receipt {
                which = which.add(C::ReceiptId.eq(r.to_string()));
            }
            let rows = deliveries::Entity::find().filter(which).order_by_asc(C::CreatedAt).all(&db).await?;
            if rows.is_empty() {
                eprintln!("no email was recorded for {id}: check the id (receipt id, lookup code or payment id) and that the notifier received the receipt event");
                return Ok(ExitCode::from(2));
            }
            let mut ids = Vec::new();
            for r in rows {
                actor.check_agency(&r.agency_code)?;
                let (nid, status) = (r.notification_id, r.status);
                if r.recipient.is_none() {
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
            deliveries::Entity::update_many()
                .col_expr(C::Status, Expr::value("queued"))
                .col_expr(C::Attempts, Expr::value(0))
                .col_expr(C::NextAttemptAt, Expr::value(crate::session::now()))
                .col_expr(C::LastError, Expr::value(Option::<String>::None))
                .filter(C::NotificationId.is_in(ids.clone()))
                .exec(&txn)
                .await?;
            actor
                .record(&txn, "delivery.resend", &id, Some(&reason), serde_json::json!({ "notifications": ids }))
                .await?;
            txn.commit().await?;
            writeln!(out, "queued; the notifier sends within seconds")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
