//! `receiptctl dead-letters`: read the `.dlq` topics, check a letter, replay it.

use crate::access::{self, Role};
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::tables::dead_letter_replays as replays;
use crate::{dlq, DeadLettersCmd};
use anyhow::Context;
use chrono::DateTime;
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::parking;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: &DeadLettersCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    let topics = feepay_runtime::settings::Topics::from_env();
    let kafka = feepay_runtime::settings::KafkaSettings::from_env(
        feepay_runtime::kafka::access::Role::Operator.default_user(),
    )?;
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
                let replayed: std::collections::HashSet<(i32, i64)> = replays::Entity::find()
                    .select_only()
                    .columns([replays::Column::Partition, replays::Column::Offset])
                    .filter(replays::Column::DlqTopic.eq(t.as_str()))
                    .into_tuple()
                    .all(&db)
                    .await?
                    .into_iter()
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
            let before =
                replays::Entity::find_by_id((letter.topic.clone(), letter.partition, letter.offset)).one(&db).await?;
            if let Some(b) = &before {
                if !again {
                    eprintln!(
                        "{reference} was already replayed at {} by {}; add --again to replay it once more",
                        datetime_gmt7(b.replayed_at),
                        b.replayed_by
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
            use replays::Column as C;
            replays::Entity::insert(replays::ActiveModel {
                dlq_topic: Set(letter.topic.clone()),
                partition: Set(letter.partition),
                offset: Set(letter.offset),
                replayed_at: Set(crate::session::now()),
                replayed_by: Set(actor.name.clone()),
                target_topic: Set(letter.dead.original_topic.clone()),
                edited: Set(body.is_some()),
                db_login: NotSet,
            })
            .on_conflict(
                OnConflict::columns([C::DlqTopic, C::Partition, C::Offset])
                    .update_columns([C::ReplayedAt, C::ReplayedBy, C::Edited])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
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
