//! Dead letters: read them from the `.dlq` topics, decode what can be decoded, and hand one
//! back to the service that owns it after a fix (a replay request, applied by that service:
//! the operator needs read access to the `.dlq` topics only, no right to write anywhere on
//! the broker).
//!
//! A dead letter is named `<dlq topic>/<partition>/<offset>`, e.g.
//! `payments.succeeded.dlq/0/12`.

use crate::access::Actor;
use anyhow::{bail, Context};
use feepay_proto::v1;
use feepay_runtime::envelope;
use feepay_runtime::ids::subject;
use feepay_runtime::settings::{dlq_topic, KafkaSettings, Topics};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// A dead letter as read back.
#[derive(Debug, Clone)]
pub struct Letter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub dead: v1::DeadLetter,
}

impl Letter {
    pub fn reference(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// Parses `<topic>/<partition>/<offset>`.
pub fn parse_reference(s: &str) -> anyhow::Result<(String, i32, i64)> {
    let mut parts = s.rsplitn(3, '/');
    let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("a dead letter is named <dlq topic>/<partition>/<offset>, e.g. payments.succeeded.dlq/0/12 (see `receiptctl dead-letters list`)");
    };
    Ok((
        topic.to_string(),
        partition.parse().context("partition must be a number")?,
        offset.parse().context("offset must be a number")?,
    ))
}

/// The dead-letter topics of the consumed topics.
pub fn dlq_topics(topics: &Topics) -> Vec<String> {
    topics.consumed().into_iter().map(dlq_topic).collect()
}

fn reader(k: &KafkaSettings) -> anyhow::Result<BaseConsumer> {
    Ok(feepay_runtime::kafka::client_config(k)
        // Partitions are assigned, never joined, and no offset is committed; librdkafka
        // still looks the group's coordinator up, so the group's name is within the
        // operator's ACLs (groups starting with its user name).
        .set("group.id", format!("{}-{}", k.group_id, uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?)
}

/// Reads every dead letter of `topic` (from the low to the high watermark of each partition),
/// or only the one at `at`.
pub fn read(k: &KafkaSettings, topic: &str, at: Option<(i32, i64)>) -> anyhow::Result<Vec<Letter>> {
    let c = reader(k)?;
    let md =
        c.fetch_metadata(Some(topic), Duration::from_secs(10)).context("reading topic metadata from the broker")?;
    let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut tpl = TopicPartitionList::new();
    let mut want: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    for p in partitions {
        if at.is_some_and(|(ap, _)| ap != p) {
            continue;
        }
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        let (start, end) = match at {
            Some((_, o)) if o < lo || o >= hi => {
                bail!("{topic}/{p}/{o} does not exist (partition {p} holds offsets {lo}..{hi})")
            }
            Some((_, o)) => (o, o + 1),
            None => (lo, hi),
        };
        if end > start {
            tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
            want.insert(p, end);
        }
    }
    let mut out = Vec::new();
    if want.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !want.is_empty() && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(500)) else { continue };
        let m = m?;
        let Some(end) = want.get(&m.partition()).copied() else { continue };
        if m.offset() < end {
            let dead = v1::DeadLetter::decode(m.payload().unwrap_or_default())
                .with_context(|| format!("{topic}/{}/{} is not a DeadLetter record", m.partition(), m.offset()))?;
            out.push(Letter { topic: topic.to_string(), partition: m.partition(), offset: m.offset(), dead });
        }
        if m.offset() + 1 >= end {
            want.remove(&m.partition());
        }
    }
    if !want.is_empty() {
        bail!("timed out reading {topic}: the broker did not deliver every record");
    }
    out.sort_by_key(|l| (l.partition, l.offset));
    Ok(out)
}

fn owned_headers(h: &[v1::RecordHeader]) -> OwnedHeaders {
    h.iter().fold(OwnedHeaders::new(), |acc, h| acc.insert(Header { key: &h.key, value: Some(&h.value) }))
}

/// A dead letter's event as it decodes now.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The event as canonical JSON.
    pub json: serde_json::Value,
    /// The agency it concerns, if it says.
    pub agency: Option<String>,
    /// What it is about, as its consumer names it (`payment:<id>`, ...).
    pub subject: String,
}

/// The original event decoded and validated exactly as its consumer does, so "decodes"
/// means "would be accepted", or why it cannot be.
pub fn decode_original(topics: &Topics, dl: &v1::DeadLetter) -> Result<Decoded, String> {
    let headers = owned_headers(&dl.original_headers);
    let h = Some(headers.as_borrowed());
    let body = Some(dl.original_value.as_slice());
    let t = dl.original_topic.as_str();
    use feepay_runtime::convert;
    if t == topics.payments_succeeded {
        let e = envelope::decode::<v1::PaymentSucceeded>(h, body).map_err(|e| e.to_string())?;
        convert::parse_payment(&e).map_err(|e| format!("invalid: {e}"))?;
        Ok(Decoded {
            json: serde_json::to_value(&e).unwrap_or_default(),
            agency: Some(e.agency_code.clone()),
            subject: subject::payment(&e.payment_id),
        })
    } else if t == topics.payments_refunded {
        let e = envelope::decode::<v1::PaymentRefunded>(h, body).map_err(|e| e.to_string())?;
        convert::parse_refund(&e).map_err(|e| format!("invalid: {e}"))?;
        Ok(Decoded {
            json: serde_json::to_value(&e).unwrap_or_default(),
            agency: None,
            subject: subject::refund(&e.refund_id),
        })
    } else if t == topics.assessment_requested {
        let e = envelope::decode::<v1::FeeAssessmentRequested>(h, body).map_err(|e| e.to_string())?;
        let _ = convert::parse_assessment_request(&e).map_err(|e| format!("invalid: {e}"))?;
        Ok(Decoded {
            json: serde_json::to_value(&e).unwrap_or_default(),
            agency: Some(e.agency_code.clone()),
            subject: subject::assessment(&e.assessment_id),
        })
    } else {
        Err(format!("no decoder for topic {t}"))
    }
}

/// The agency an event names, read without validating the rest (for scoping what an
/// operator may see of a dead letter).
pub fn agency_of(topics: &Topics, dl: &v1::DeadLetter) -> Option<String> {
    let headers = owned_headers(&dl.original_headers);
    let h = Some(headers.as_borrowed());
    let body = Some(dl.original_value.as_slice());
    let t = dl.original_topic.as_str();
    if t == topics.payments_succeeded {
        envelope::decode::<v1::PaymentSucceeded>(h, body).ok().map(|e| e.agency_code)
    } else if t == topics.assessment_requested {
        envelope::decode::<v1::FeeAssessmentRequested>(h, body).ok().map(|e| e.agency_code)
    } else {
        None
    }
}

/// The replay request of a letter (or of its `edited` body): the original record as its
/// owning service (the one that dead-lettered it) applies it, with the original key and
/// headers plus `feepay_replayed_from` and `feepay_replayed_by`; an edited body gets the
/// content type of its format.
pub fn replay_request(
    letter: &Letter,
    decoded: &Decoded,
    edited: Option<(Vec<u8>, &'static str)>,
    actor: &Actor,
) -> feepay_runtime::parking::NewParked {
    let dl = &letter.dead;
    let mut headers: Vec<(String, Vec<u8>)> = dl
        .original_headers
        .iter()
        .filter(|h| edited.is_none() || !h.key.eq_ignore_ascii_case("content-type"))
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    let payload = match edited {
        Some((b, ct)) => {
            headers.push(("content-type".into(), ct.as_bytes().to_vec()));
            b
        }
        None => dl.original_value.clone(),
    };
    headers.push(("feepay_replayed_from".into(), letter.reference().into_bytes()));
    headers.push(("feepay_replayed_by".into(), actor.name.clone().into_bytes()));
    feepay_runtime::parking::NewParked {
        service: dl.service.clone(),
        topic: dl.original_topic.clone(),
        partition: dl.original_partition,
        offset: dl.original_offset,
        key: dl.original_key.clone(),
        headers,
        payload,
        subject: decoded.subject.clone(),
        agency: decoded.agency.clone(),
    }
}

/// Names the headers of a record for display (values of `ce_*` and content type).
pub fn header_summary(dl: &v1::DeadLetter) -> String {
    let headers = owned_headers(&dl.original_headers);
    headers
        .iter()
        .filter(|h| h.key.starts_with("ce_") || h.key == "content-type")
        .map(|h| format!("{}={}", h.key, String::from_utf8_lossy(h.value.unwrap_or_default())))
        .collect::<Vec<_>>()
        .join(" ")
}
