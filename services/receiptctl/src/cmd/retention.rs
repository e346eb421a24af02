//! `receiptctl retention`: personal data past its purpose (README, "Personal data").
//!
//! | kind | where | kept | then |
//! | --- | --- | --- | --- |
//! | payer's email, the event an email was made of | `deliveries.recipient`, `deliveries.event_pb` | until the email's outcome + `FEEPAY_RETENTION_EMAIL_DAYS` | cleared |
//! | payer's email on a receipt | `receipts.receipt_pb` (not in the signed document) | issue + `FEEPAY_RETENTION_EMAIL_DAYS` | cleared, the signed document untouched |
//! | a dead letter's record (any payer data) | `dead_letters`, `dead_letter_payloads` | `FEEPAY_RETENTION_DEAD_LETTER_DAYS` | value, key and headers erased; stored values deleted |
//! | a resolved parked event's record | `parked_events` | resolution + `FEEPAY_RETENTION_PARKED_DAYS` | value, key and headers erased |
//!
//! `erase` runs as a login of the `feepay_retention` group (migration 0020), which may
//! change only those columns; each run writes one audit row with what it erased.

use crate::session::{confirm, db, now, Conn};
use crate::{table, RetentionCmd};
use chrono::{DateTime, Duration, Utc};
use feepay_proto::v1;
use feepay_proto::Message as _;
use feepay_runtime::settings::{catalog, parse};
use feepay_runtime::sql::stmt;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use std::io::Write;
use std::process::ExitCode;

/// The cut-off of each kind: what is older is due.
struct Cutoffs {
    email: DateTime<Utc>,
    dead_letter: DateTime<Utc>,
    parked: DateTime<Utc>,
}

impl Cutoffs {
    fn from_env(now: DateTime<Utc>) -> anyhow::Result<Cutoffs> {
        let days = |s: &catalog::Var| -> anyhow::Result<Duration> { Ok(Duration::days(parse::<i64>(s)?)) };
        Ok(Cutoffs {
            email: now - days(&catalog::RETENTION_EMAIL_DAYS)?,
            dead_letter: now - days(&catalog::RETENTION_DEAD_LETTER_DAYS)?,
            parked: now - days(&catalog::RETENTION_PARKED_DAYS)?,
        })
    }
}

/// What is due, per table: the rows still holding the data and older than the cut-off `$1`.
const DELIVERIES: (&str, &str) = (
    "deliveries",
    "erased_at IS NULL AND status IN ('sent', 'failed', 'skipped') AND COALESCE(sent_at, created_at) < $1",
);
const RECEIPTS: (&str, &str) = ("receipts", "email_erased_at IS NULL AND issued_at < $1");
const DEAD_LETTERS: (&str, &str) = ("dead_letters", "erased_at IS NULL AND dead_lettered_at < $1");
const PAYLOADS: (&str, &str) = ("dead_letter_payloads", "stored_at < $1");
const PARKED: (&str, &str) = ("parked_events", "erased_at IS NULL AND status = 'resolved' AND resolved_at < $1");

fn from((table, due): (&str, &str)) -> String {
    format!("FROM {table} WHERE {due}")
}

/// `UPDATE` of the due rows of `kind`, setting `set` (which may name `$2`, the time now).
fn update((table, due): (&str, &str), set: &str) -> String {
    format!("UPDATE {table} SET {set} WHERE {due}")
}

async fn count(db: &impl ConnectionTrait, kind: (&str, &str), cutoff: DateTime<Utc>) -> anyhow::Result<i64> {
    let from = from(kind);
    let row = db.query_one(stmt(format!("SELECT count(*)::BIGINT AS n {from}"), vec![cutoff.into()])).await?;
    Ok(match row {
        Some(r) => r.try_get("", "n")?,
        None => 0,
    })
}

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: RetentionCmd) -> anyhow::Result<ExitCode> {
    let db = db(&conn.database_url).await?;
    let behind = feepay_runtime::db::schema_behind(&db).await?;
    if !behind.is_empty() {
        anyhow::bail!(
            "the database schema is behind ({} migration(s) not applied): run `receiptctl migrate`",
            behind.len()
        );
    }
    let at = now();
    let c = Cutoffs::from_env(at)?;
    let kinds = [
        ("email of a delivery", DELIVERIES, c.email),
        ("email on a receipt", RECEIPTS, c.email),
        ("dead letter's record", DEAD_LETTERS, c.dead_letter),
        ("stored dead-letter value", PAYLOADS, c.dead_letter),
        ("resolved parked event's record", PARKED, c.parked),
    ];
    match cmd {
        RetentionCmd::Due => {
            let mut rows = Vec::new();
            for (kind, due, cutoff) in kinds {
                rows.push(vec![
                    kind.to_string(),
                    feepay_domain::receipt::datetime_gmt7(cutoff),
                    count(&db, due, cutoff).await?.to_string(),
                ]);
            }
            table::print(out, &["PERSONAL DATA", "KEPT UNTIL (GMT+7)", "DUE"], &rows)?;
        }
        RetentionCmd::Erase { yes } => {
            if !yes && !confirm("erase the personal data that is due?")? {
                return Ok(ExitCode::from(2));
            }
            let erased = erase(&db, &c, at).await?;
            for (kind, n) in &erased {
                writeln!(out, "{kind}: {n} erased")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Erases what is due and writes the audit row, all in one transaction.
async fn erase(db: &DatabaseConnection, c: &Cutoffs, at: DateTime<Utc>) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let txn = db.begin().await?;
    let run = |sql: String, cutoff: DateTime<Utc>| stmt(sql, vec![cutoff.into(), at.into()]);
    let deliveries = txn
        .execute(run(update(DELIVERIES, "recipient = NULL, event_pb = '\\x', erased_at = $2"), c.email))
        .await?
        .rows_affected();
    let receipts = erase_receipt_emails(&txn, c.email, at).await?;
    let dead_letters = txn
        .execute(run(
            update(DEAD_LETTERS, "payload = '\\x', headers = '[]', record_key = '\\x', erased_at = $2"),
            c.dead_letter,
        ))
        .await?
        .rows_affected();
    let payloads =
        txn.execute(stmt(format!("DELETE {}", from(PAYLOADS)), vec![c.dead_letter.into()])).await?.rows_affected();
    let parked = txn
        .execute(run(update(PARKED, "payload = '\\x', headers = '[]', record_key = '\\x', erased_at = $2"), c.parked))
        .await?
        .rows_affected();
    let erased = vec![
        ("deliveries", deliveries),
        ("receipts", receipts),
        ("dead_letters", dead_letters),
        ("dead_letter_payloads", payloads),
        ("parked_events", parked),
    ];
    let details: serde_json::Map<String, serde_json::Value> =
        erased.iter().map(|(k, n)| (k.to_string(), serde_json::json!(n))).collect();
    feepay_runtime::audit::record(
        &txn,
        feepay_runtime::audit::Entry {
            actor: "retention",
            action: "retention.erase",
            target: "personal-data",
            reason: Some("past its retention period"),
            details: serde_json::json!({
                "erased": details,
                "email_before": c.email.to_rfc3339(),
                "dead_letter_before": c.dead_letter.to_rfc3339(),
                "parked_before": c.parked.to_rfc3339(),
            }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(erased)
}

/// Clears the payer's email in the stored protobuf of receipts issued before `cutoff`; the
/// signed document, which holds no email, is not touched.
async fn erase_receipt_emails(
    txn: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    at: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let rows =
        txn.query_all(stmt(format!("SELECT receipt_id, receipt_pb {}", from(RECEIPTS)), vec![cutoff.into()])).await?;
    let mut n = 0;
    for row in rows {
        let id: uuid::Uuid = row.try_get("", "receipt_id")?;
        let pb: Vec<u8> = row.try_get("", "receipt_pb")?;
        let mut r = v1::Receipt::decode(pb.as_slice())?;
        if let Some(p) = r.payer.as_mut() {
            p.email.clear();
        }
        txn.execute(stmt(
            "UPDATE receipts SET receipt_pb = $1, email_erased_at = $2 WHERE receipt_id = $3",
            vec![r.encode_to_vec().into(), at.into(), id.into()],
        ))
        .await?;
        n += 1;
    }
    Ok(n)
}
