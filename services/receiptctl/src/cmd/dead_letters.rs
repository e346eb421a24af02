//! `receiptctl dead-letters`: the dead letters on record, one in detail, a replay.

use crate::access::{self, Role};
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::{dlq, DeadLettersCmd};
use anyhow::Context;
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::dead_letter::{self, OnRecord};
use feepay_runtime::parking::{self, ReplayAsked};
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: &DeadLettersCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    let topics = feepay_runtime::settings::Topics::from_env();
    // The database scopes an operator login's rows; the same rule here for a session with
    // the owner's connection: a letter naming no agency is for all-agency operators.
    let visible = |dl: &OnRecord| match &dl.agency_code {
        Some(a) => actor.covers(a),
        None => actor.agencies.is_none(),
    };
    let get = |id: i64| {
        let db = db.clone();
        async move {
            dead_letter::record::get(&db, id).await?.filter(visible).ok_or_else(|| {
                anyhow::Error::from(access::Denied(format!("dead letter {id} does not exist or is outside your scope")))
            })
        }
    };
    match cmd {
        DeadLettersCmd::List { topic, all } => {
            let letters = dlq::list(&db, topic.as_deref(), *all).await?;
            let rows: Vec<Vec<String>> = letters
                .iter()
                .filter(|dl| visible(dl))
                .map(|dl| {
                    vec![
                        dl.id.to_string(),
                        datetime_gmt7(dl.dead_lettered_at),
                        dl.topic.clone(),
                        dl.subject.clone().unwrap_or_else(|| "(unreadable)".into()),
                        dl.reason_code.clone(),
                        dl.reason.chars().take(70).collect(),
                        match dl.replays {
                            0 => String::new(),
                            n => format!("replayed ×{n}"),
                        },
                    ]
                })
                .collect();
            table::print(out, &["ID", "AT (GMT+7)", "TOPIC", "SUBJECT", "CODE", "REASON", "STATE"], &rows)?;
            writeln!(out, "{} dead letter(s)", rows.len())?;
            actor
                .record(&db, "dead_letters.list", topic.as_deref().unwrap_or("*"), None, serde_json::json!({}))
                .await?;
        }
        DeadLettersCmd::Show { id } => {
            let dl = get(*id).await?;
            writeln!(out, "dead letter:   {}", dl.id)?;
            writeln!(out, "record:        {}/{}/{}", dl.topic, dl.partition, dl.offset)?;
            writeln!(out, "service:       {}", dl.service)?;
            writeln!(out, "at (GMT+7):    {}", datetime_gmt7(dl.dead_lettered_at))?;
            writeln!(out, "subject:       {}", dl.subject.as_deref().unwrap_or("(unreadable)"))?;
            writeln!(out, "agency:        {}", dl.agency_code.as_deref().unwrap_or("(none named)"))?;
            writeln!(out, "reason code:   {}", dl.reason_code)?;
            writeln!(out, "reason:        {}", dl.reason)?;
            writeln!(out, "key:           {}", String::from_utf8_lossy(&dl.record_key))?;
            writeln!(
                out,
                "headers:       {}{}",
                dlq::header_summary(&dl),
                if dl.headers_truncated { " (some dropped: over the dead letter's budget)" } else { "" }
            )?;
            writeln!(out, "body:          {} bytes, sha256 {}", dl.payload.len(), dl.payload_sha256)?;
            if let Some(i) = dl.identity() {
                let facts: Vec<String> = i.facts.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(out, "what an edit must keep: {}", facts.join(" "))?;
            } else {
                writeln!(out, "what an edit must keep: (unreadable: only a replay as recorded is applied)")?;
            }
            if dl.replays > 0 {
                writeln!(
                    out,
                    "replayed:      {} time(s), last {} by {}",
                    dl.replays,
                    dl.last_replayed_at.map(datetime_gmt7).unwrap_or_default(),
                    dl.last_replayed_by.as_deref().unwrap_or("?")
                )?;
            }
            match dlq::decode(&topics, &dlq::Body::recorded(&dl)) {
                Ok(decoded) => writeln!(
                    out,
                    "decoded now (the fix may already be in place):\n{}",
                    serde_json::to_string_pretty(&decoded.json)?
                )?,
                Err(e) => {
                    writeln!(out, "does not decode now: {e}")?;
                    let text = String::from_utf8_lossy(&dl.payload);
                    let shown: String = text.chars().take(2000).collect();
                    writeln!(
                        out,
                        "body as text{}:\n{shown}",
                        if text.chars().count() > 2000 { " (first 2000 characters)" } else { "" }
                    )?;
                }
            }
            actor.record(&db, "dead_letters.show", &id.to_string(), None, serde_json::json!({})).await?;
        }
        DeadLettersCmd::Replay { id, edited, reason, again, yes } => {
            actor.require(Role::Operator, "replay dead letters")?;
            let dl = get(*id).await?;
            if dl.replays > 0 && !again {
                eprintln!(
                    "dead letter {id} was already replayed at {} by {}; add --again to replay it once more",
                    dl.last_replayed_at.map(datetime_gmt7).unwrap_or_default(),
                    dl.last_replayed_by.as_deref().unwrap_or("?")
                );
                return Ok(ExitCode::from(2));
            }
            let body = match edited {
                Some(path) => {
                    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                    let ct = if path.extension().is_some_and(|e| e == "pb") {
                        "application/protobuf"
                    } else {
                        "application/json"
                    };
                    Some((bytes, ct))
                }
                None => None,
            };
            // Check the replay decodes now, so a replay does not just fail again. The
            // service checks it again, and that it is the same event, before applying it.
            let probe = match &body {
                Some((b, ct)) => dlq::Body::edited(&dl, b, ct),
                None => dlq::Body::recorded(&dl),
            };
            let decoded = match dlq::decode(&topics, &probe) {
                Ok(decoded) => decoded,
                Err(e) => {
                    eprintln!("the event still does not decode: {e}");
                    eprintln!("fix it (e.g. save the corrected JSON and pass --edited FILE) and run the command again");
                    return Ok(ExitCode::from(2));
                }
            };
            writeln!(
                out,
                "replay dead letter {id} ({}) through {}{}",
                decoded.subject,
                dl.service,
                if body.is_some() { " with the edited body" } else { "" }
            )?;
            if !yes && !confirm("replay it?")? {
                return Ok(ExitCode::from(2));
            }
            let sent = body.as_ref().map(|(b, _)| b.as_slice()).unwrap_or(&dl.payload);
            let sent_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(sent));
            // The database makes the request of the recorded record and writes the audit
            // row (with the body's hash) in the same statement.
            let edit = body.as_ref().map(|(b, ct)| (b.as_slice(), *ct));
            match parking::request_replay(&db, *id, edit, reason, &actor.name, *again).await? {
                ReplayAsked::Requested(parked) => writeln!(
                    out,
                    "replay requested as parked event {parked} (body sha256 {sent_sha256}); {} applies it within \
                     seconds (receiptctl parked show {parked})",
                    dl.service
                )?,
                ReplayAsked::Open => {
                    eprintln!(
                        "{} is waiting already (parked or being retried): see receiptctl parked list",
                        decoded.subject
                    );
                    return Ok(ExitCode::from(2));
                }
                ReplayAsked::ReplayedBefore => {
                    eprintln!("dead letter {id} was already replayed; add --again to replay it once more");
                    return Ok(ExitCode::from(2));
                }
                ReplayAsked::Unknown => {
                    return Err(
                        access::Denied(format!("dead letter {id} does not exist or is outside your scope")).into()
                    )
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
