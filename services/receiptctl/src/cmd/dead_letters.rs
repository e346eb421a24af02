//! `receiptctl dead-letters`: read the `.dlq` topics, check a letter, replay it.

use crate::access::{self, Role};
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::{dlq, DeadLettersCmd};
use anyhow::Context;
use chrono::{DateTime, Utc};
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::parking;
use feepay_runtime::sql::stmt;
use sea_orm::ConnectionTrait;
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: &DeadLettersCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    let topics = feepay_runtime::settings::Topics::from_env();
    let kafka = feepay_runtime::settings::KafkaSettings::from_env("receiptctl")?;
    // What a scoped operator may see: the dead letters whose event names an agency in scope.
    let visible = |l: &dlq::Letter| match dlq::agency_of(&topics, &l.dead) {
        Some(a) => actor.covers(&a),
        None => actor.agencies.is_none(),
    };
    match cmd {
        DeadLettersCmd::List { topic } => {
            let names = match topic {
                Some(t) => vec![t.clone()],
                None => dlq::dlq_topics(&topics),
            };
            let mut rows = Vec::new();
            for t in &names {
                eprintln!("reading {t} ...");
                let letters = tokio::task::spawn_blocking({
                    let (k, t) = (kafka.clone(), t.clone());
                    move || dlq::read(&k, &t, None)
                })
                .await??;
                let replayed: std::collections::HashSet<(i32, i64)> = db
                    .query_all(stmt(
                        "SELECT partition, \"offset\" FROM dead_letter_replays WHERE dlq_topic = $1",
                        vec![t.clone().into()],
                    ))
                    .await?
                    .iter()
                    .filter_map(|r| Some((r.try_get("", "partition").ok()?, r.try_get("", "offset").ok()?)))
                    .collect();
                for l in letters.iter().filter(|l| visible(l)) {
                    let at = l.dead.dead_lettered_at.as_ref().and_then(|t| DateTime::from_timestamp(t.seconds, 0));
                    rows.push(vec![
                        l.reference(),
                        at.map(datetime_gmt7).unwrap_or_default(),
                        l.dead.reason_code.clone(),
                        l.dead.reason.chars().take(90).collect(),
                        if replayed.contains(&(l.partition, l.offset)) { "replayed".into() } else { String::new() },
                    ]);
                }
            }
            table::print(out, &["DEAD LETTER", "AT (GMT+7)", "CODE", "REASON", "STATE"], &rows)?;
            writeln!(out, "{} dead letter(s)", rows.len())?;
            actor
                .record(&db, "dead_letters.list", topic.as_deref().unwrap_or("*"), None, serde_json::json!({}))
                .await?;
        }
        DeadLettersCmd::Show { reference } => {
            let letter = read_one(&kafka, reference).await?;
            if !visible(&letter) {
                return Err(access::Denied(format!("{reference} concerns an agency outside your scope")).into());
            }
            let dl = &letter.dead;
            writeln!(out, "dead letter:   {}", letter.reference())?;
            writeln!(out, "original:      {}/{}/{}", dl.original_topic, dl.original_partition, dl.original_offset)?;
            writeln!(out, "service:       {}", dl.service)?;
            writeln!(out, "reason code:   {}", dl.reason_code)?;
            writeln!(out, "reason:        {}", dl.reason)?;
            writeln!(out, "key:           {}", String::from_utf8_lossy(&dl.original_key))?;
            writeln!(out, "headers:       {}", dlq::header_summary(dl))?;
            writeln!(out, "body:          {} bytes", dl.original_value.len())?;
            match dlq::decode_original(&topics, dl) {
                Ok(decoded) => writeln!(
                    out,
                    "decoded now (the fix may already be in place):\n{}",
                    serde_json::to_string_pretty(&decoded.json)?
                )?,
                Err(e) => {
                    writeln!(out, "does not decode now: {e}")?;
                    let text = String::from_utf8_lossy(&dl.original_value);
                    let shown: String = text.chars().take(2000).collect();
                    writeln!(
                        out,
                        "body as text{}:\n{shown}",
                        if text.chars().count() > 2000 { " (first 2000 characters)" } else { "" }
                    )?;
                }
            }
            actor.record(&db, "dead_letters.show", reference, None, serde_json::json!({})).await?;
        }
        DeadLettersCmd::Replay { reference, edited, reason, again, yes } => {
            actor.require(Role::Operator, "replay dead letters")?;
            let letter = read_one(&kafka, reference).await?;
            if !visible(&letter) {
                return Err(access::Denied(format!("{reference} concerns an agency outside your scope")).into());
            }
            let before = db
                .query_one(stmt(
                    "SELECT replayed_at, replayed_by FROM dead_letter_replays WHERE dlq_topic = $1 AND partition = $2 AND \"offset\" = $3",
                    vec![letter.topic.clone().into(), letter.partition.into(), letter.offset.into()],
                ))
                .await?;
            if let Some(b) = &before {
                if !again {
                    let at: DateTime<Utc> = b.try_get("", "replayed_at")?;
                    eprintln!(
                        "{reference} was already replayed at {} by {}; add --again to replay it once more",
                        datetime_gmt7(at),
                        b.try_get::<String>("", "replayed_by")?
                    );
                    return Ok(ExitCode::from(2));
                }
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
            // Check the replay decodes now, so a replay does not just dead-letter again.
            let mut probe = letter.dead.clone();
            if let Some((b, ct)) = &body {
                probe.original_value = b.clone();
                probe.original_headers.retain(|h| !h.key.eq_ignore_ascii_case("content-type"));
                probe
                    .original_headers
                    .push(feepay_proto::v1::RecordHeader { key: "content-type".into(), value: ct.as_bytes().to_vec() });
            }
            let decoded = match dlq::decode_original(&topics, &probe) {
                Ok(decoded) => decoded,
                Err(e) => {
                    eprintln!("the event still does not decode: {e}");
                    eprintln!("fix it (e.g. save the corrected JSON and pass --edited FILE) and run the command again");
                    return Ok(ExitCode::from(2));
                }
            };
            if let Some(a) = &decoded.agency {
                actor.check_agency(a)?;
            }
            writeln!(
                out,
                "replay {reference} ({}) through {}{}",
                decoded.subject,
                letter.dead.service,
                if body.is_some() { " with the edited body" } else { "" }
            )?;
            if !yes && !confirm("replay it?")? {
                return Ok(ExitCode::from(2));
            }
            let request = dlq::replay_request(&letter, &decoded, body.clone(), &actor);
            // The request, the replay record and the audit row (with the exact body's hash)
            // commit together; the owning service applies the event after that.
            let sent_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&request.payload));
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            let why = format!("replay of {reference} requested by {}: {reason}", actor.name);
            let Some(id) = parking::request_replay(&txn, &request, &why, &actor.name, crate::session::now()).await?
            else {
                eprintln!(
                    "{} is waiting already (parked or being retried): see receiptctl parked list",
                    decoded.subject
                );
                return Ok(ExitCode::from(2));
            };
            txn.execute(stmt(
                "INSERT INTO dead_letter_replays (dlq_topic, partition, \"offset\", replayed_by, target_topic, edited) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (dlq_topic, partition, \"offset\") DO UPDATE SET replayed_at = now(), replayed_by = EXCLUDED.replayed_by, edited = EXCLUDED.edited",
                vec![
                    letter.topic.clone().into(),
                    letter.partition.into(),
                    letter.offset.into(),
                    actor.name.clone().into(),
                    letter.dead.original_topic.clone().into(),
                    body.is_some().into(),
                ],
            ))
            .await?;
            actor
                .record(
                    &txn,
                    "dead_letters.replay",
                    reference,
                    Some(reason),
                    serde_json::json!({
                        "edited": body.is_some(),
                        "again": before.is_some(),
                        "target_topic": letter.dead.original_topic,
                        "service": letter.dead.service,
                        "parked_event": id,
                        "body_sha256": sent_sha256,
                        "body_bytes": request.payload.len(),
                        "original_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&letter.dead.original_value)),
                    }),
                )
                .await?;
            txn.commit().await?;
            writeln!(
                out,
                "replay requested as parked event {id} (body sha256 {sent_sha256}); {} applies it within seconds \
                 (receiptctl parked show {id})",
                letter.dead.service
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn read_one(kafka: &feepay_runtime::settings::KafkaSettings, reference: &str) -> anyhow::Result<dlq::Letter> {
    let (topic, partition, offset) = dlq::parse_reference(reference)?;
    let k = kafka.clone();
    let mut letters = tokio::task::spawn_blocking(move || dlq::read(&k, &topic, Some((partition, offset)))).await??;
    letters.pop().with_context(|| format!("{reference} was not found"))
}
