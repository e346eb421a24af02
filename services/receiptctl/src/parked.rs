//! `receiptctl parked`: events that failed on their own (no usable key or certificate, an
//! exhausted series, ...), waiting with their reason; listed, shown, and retried after the
//! fix (the owning service applies a retried event within seconds).

use crate::access::{Actor, Denied, Role};
use crate::table;
use anyhow::Context;
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::parking::{self, Parked};
use sea_orm::DatabaseConnection;
use std::io::Write;
use std::process::ExitCode;

/// What a scoped operator may see: parked events of an agency in scope (events that name
/// no agency, such as refunds, only with an all-agency scope).
fn visible(actor: &Actor, p: &Parked) -> bool {
    match &p.agency_code {
        Some(a) => actor.covers(a),
        None => actor.agencies.is_none(),
    }
}

pub async fn list(out: &mut impl Write, db: &DatabaseConnection, actor: &Actor, all: bool) -> anyhow::Result<ExitCode> {
    let rows: Vec<Vec<String>> = parking::list(db, all, 500)
        .await?
        .into_iter()
        .filter(|p| visible(actor, p))
        .map(|p| {
            vec![
                p.id.to_string(),
                datetime_gmt7(p.parked_at),
                p.service.trim_start_matches("feepay_").to_string(),
                p.subject.clone(),
                p.agency_code.clone().unwrap_or_default(),
                p.reason_code.clone(),
                p.reason.chars().take(80).collect(),
                serde_json::to_value(p.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                p.attempts.to_string(),
            ]
        })
        .collect();
    table::print(
        out,
        &["ID", "PARKED (GMT+7)", "SERVICE", "EVENT", "AGENCY", "REASON", "DETAIL", "STATE", "TRIES"],
        &rows,
    )?;
    writeln!(out, "{} parked event(s)", rows.len())?;
    actor.record(db, "parked.list", "*", None, serde_json::json!({ "all": all })).await?;
    Ok(ExitCode::SUCCESS)
}

async fn one(db: &DatabaseConnection, actor: &Actor, id: i64) -> anyhow::Result<Parked> {
    let p = parking::get(db, id).await?.with_context(|| format!("no parked event {id}"))?;
    if !visible(actor, &p) {
        return Err(Denied(format!("parked event {id} concerns an agency outside your scope")).into());
    }
    Ok(p)
}

pub async fn show(out: &mut impl Write, db: &DatabaseConnection, actor: &Actor, id: i64) -> anyhow::Result<ExitCode> {
    let p = one(db, actor, id).await?;
    writeln!(out, "parked event:  {}", p.id)?;
    writeln!(out, "service:       {}", p.service)?;
    writeln!(out, "event:         {}", p.subject)?;
    writeln!(out, "agency:        {}", p.agency_code.as_deref().unwrap_or("-"))?;
    writeln!(out, "record:        {}/{}/{}", p.topic, p.partition, p.offset)?;
    writeln!(out, "reason:        {} — {}", p.reason_code, p.reason)?;
    writeln!(
        out,
        "parked at:     {} (GMT+7), tried {} time(s), last {}",
        datetime_gmt7(p.parked_at),
        p.attempts,
        datetime_gmt7(p.last_attempt_at)
    )?;
    writeln!(out, "state:         {:?}", p.status)?;
    if let Some(by) = &p.retry_requested_by {
        writeln!(out, "retry asked:   by {by}")?;
    }
    if let Some(at) = p.resolved_at {
        writeln!(out, "resolved at:   {} (GMT+7)", datetime_gmt7(at))?;
    }
    let body = String::from_utf8_lossy(&p.payload);
    if body.starts_with('{') {
        writeln!(out, "event body:    {body}")?;
    } else {
        writeln!(out, "event body:    {} bytes of protobuf", p.payload.len())?;
    }
    actor.record(db, "parked.show", &id.to_string(), None, serde_json::json!({})).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(
    out: &mut impl Write,
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    actor.require(Role::Operator, "retry parked events")?;
    let p = one(db, actor, id).await?;
    // The database checks the role and scope again, and writes the audit row itself.
    match parking::request_retry(db, id, reason, &actor.name).await? {
        parking::RetryAsked::Requested => {}
        parking::RetryAsked::NotParked(status) => {
            eprintln!("parked event {id} is {status}, not waiting for a retry; nothing changed");
            return Ok(ExitCode::from(2));
        }
        parking::RetryAsked::Unknown => {
            eprintln!("no parked event {id} in your scope");
            return Ok(ExitCode::from(2));
        }
    }
    writeln!(out, "retry of parked event {id} ({}) requested; {} applies it within seconds", p.subject, p.service)?;
    Ok(ExitCode::SUCCESS)
}
