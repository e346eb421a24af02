//! Figures, self-checks, ceilings and the plot of a benchmark run.

use crate::{stmt_for, Expected};
use chrono::{DateTime, Utc};
use feepay_runtime::settings::KafkaSettings;
use feepay_runtime::sql::{placeholders, raw};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait, Value};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub count: i64,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub fixed_offered_per_s: f64,
    pub fixed_receipt_latency: Latency,
    pub fixed_email_latency: Option<Latency>,
    pub saturation_payments_per_s: f64,
    pub saturation_receipts_per_s: f64,
    pub saturation_receipt_latency: Latency,
    pub saturation_emails_per_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Checks {
    pub payments_expected: i64,
    pub payments_recorded: i64,
    pub issued_without_receipt: i64,
    pub receipts_for_rejected_or_waived: i64,
    pub numbering_defects: i64,
    pub series: i64,
    pub receipts: i64,
    pub dead_letters_expected: i64,
    pub dead_letters_found: i64,
    pub refunds_expected: i64,
    pub refunds_applied: i64,
    pub outbox_left: i64,
    pub emails_checked: bool,
    pub receipts_without_exactly_one_sent_email: i64,
    /// Deliveries recorded as sent, and the messages the SMTP sink counted.
    pub emails_sent: i64,
    pub smtp_accepted: Option<i64>,
}

impl Checks {
    pub fn ok(&self) -> bool {
        self.payments_expected == self.payments_recorded
            && self.issued_without_receipt == 0
            && self.receipts_for_rejected_or_waived == 0
            && self.numbering_defects == 0
            && self.dead_letters_expected == self.dead_letters_found
            && self.refunds_expected == self.refunds_applied
            && self.outbox_left == 0
            && (!self.emails_checked || self.receipts_without_exactly_one_sent_email == 0)
            && self.smtp_accepted.is_none_or(|n| n == self.emails_sent)
    }
}

#[derive(Debug, Serialize)]
pub struct BrokerFigures {
    /// CPU seconds the broker used from the first payment until every email was sent.
    pub cpu_seconds: f64,
    /// The same as cores kept busy on average.
    pub cores_busy: f64,
    /// Peak resident memory seen, KiB.
    pub peak_rss_kib: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub run: String,
    pub args: String,
    pub figures: Figures,
    /// Messages per second a bare consumer reads from the payments topic.
    pub consumer_rate: f64,
    /// Receipt rows per second PostgreSQL accepts in batches of 500.
    pub pg_rate: f64,
    /// Signatures per second with the agencies' software key (RSA-2048 unless `--key ec`),
    /// every core.
    pub sign_rate: f64,
    /// RSA-2048 signatures per second in a SoftHSM2 token, a session per core.
    pub softhsm_rate: Option<f64>,
    /// Messages per second the SMTP sink accepts from smtp-source (`smtp::ceiling`).
    pub smtp_sink_rate: Option<f64>,
    /// Peak resident memory per service, KiB.
    pub rss: Vec<(String, u64)>,
    /// The broker's own CPU and memory during the pipeline's phases.
    pub broker: Option<BrokerFigures>,
    pub checks: Checks,
}

impl Report {
    #[allow(clippy::print_stdout)]
    pub fn print(&self) {
        let f = &self.figures;
        println!("\n=== feepay benchmark {} ===", self.run);
        println!("{:<58} {:>14}", "figure", "value");
        let row = |k: &str, v: String| println!("{k:<58} {v:>14}");
        row("fixed load: offered payments/s", format!("{:.0}", f.fixed_offered_per_s));
        row(
            "fixed load: payment → receipt p50 / p95 / p99 (ms)",
            format!(
                "{:.0} / {:.0} / {:.0}",
                f.fixed_receipt_latency.p50_ms, f.fixed_receipt_latency.p95_ms, f.fixed_receipt_latency.p99_ms
            ),
        );
        if let Some(e) = &f.fixed_email_latency {
            row(
                "fixed load: payment → email accepted p50 / p95 / p99 (ms)",
                format!("{:.0} / {:.0} / {:.0}", e.p50_ms, e.p95_ms, e.p99_ms),
            );
        }
        row("saturation: payments/s end to end", format!("{:.0}", f.saturation_payments_per_s));
        row("saturation: receipts/s committed and signed", format!("{:.0}", f.saturation_receipts_per_s));
        row(
            "saturation: payment → receipt p50 / p99 (ms)",
            format!("{:.0} / {:.0}", f.saturation_receipt_latency.p50_ms, f.saturation_receipt_latency.p99_ms),
        );
        if let Some(e) = f.saturation_emails_per_s {
            row("saturation: emails accepted by SMTP/s", format!("{e:.0}"));
        }
        row("ceiling: bare consumer messages/s", format!("{:.0}", self.consumer_rate));
        row("ceiling: PostgreSQL receipt rows/s (batches of 500)", format!("{:.0}", self.pg_rate));
        row("ceiling: signatures/s, the agencies' software key, all cores", format!("{:.0}", self.sign_rate));
        if let Some(r) = self.softhsm_rate {
            row("ceiling: RSA-2048 signatures/s, SoftHSM2 token, all cores", format!("{r:.0}"));
        }
        if let Some(r) = self.smtp_sink_rate {
            row("ceiling: smtp-sink messages/s from smtp-source (32 sessions)", format!("{r:.0}"));
            if let Some(e) = f.saturation_emails_per_s {
                row("ratio: emails accepted/s ÷ smtp-sink ceiling", format!("{:.3}", e / r.max(1.0)));
            }
        }
        row(
            "ratio: pipeline receipts/s ÷ signing ceiling",
            format!("{:.3}", f.saturation_receipts_per_s / self.sign_rate.max(1.0)),
        );
        row(
            "ratio: pipeline payments/s ÷ consumer ceiling",
            format!("{:.3}", f.saturation_payments_per_s / self.consumer_rate.max(1.0)),
        );
        row(
            "ratio: pipeline receipts/s ÷ PostgreSQL ceiling",
            format!("{:.3}", f.saturation_receipts_per_s / self.pg_rate.max(1.0)),
        );
        for (s, kib) in &self.rss {
            row(&format!("peak resident memory: {s} (MiB)"), format!("{:.1}", *kib as f64 / 1024.0));
        }
        if let Some(b) = &self.broker {
            row(
                "broker: CPU seconds over the phases (cores busy)",
                format!("{:.0} ({:.2})", b.cpu_seconds, b.cores_busy),
            );
            row("broker: peak resident memory (MiB)", format!("{:.1}", b.peak_rss_kib as f64 / 1024.0));
        }
        let c = &self.checks;
        println!("\nchecks:");
        println!(
            "  payments recorded {}/{}, issued without receipt {}, receipts for rejected/waived {}",
            c.payments_recorded, c.payments_expected, c.issued_without_receipt, c.receipts_for_rejected_or_waived
        );
        println!("  {} receipts in {} series, numbering defects {}", c.receipts, c.series, c.numbering_defects);
        println!(
            "  dead letters {}/{}, refunds applied {}/{}, outbox left {}",
            c.dead_letters_found, c.dead_letters_expected, c.refunds_applied, c.refunds_expected, c.outbox_left
        );
        if c.emails_checked {
            println!("  receipts without exactly one sent email: {}", c.receipts_without_exactly_one_sent_email);
            if let Some(n) = c.smtp_accepted {
                println!("  emails recorded sent {}, messages the SMTP sink accepted {n}", c.emails_sent);
            }
        }
        println!("  verdict: {}", if c.ok() { "CORRECT" } else { "WRONG" });
    }
}

async fn latency(db: &DatabaseConnection, sql: &str, v: Vec<Value>) -> anyhow::Result<Latency> {
    let r = db.query_one(stmt_for(sql, v)).await?.ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(Latency {
        p50_ms: r.try_get::<Option<f64>>("", "p50")?.unwrap_or(0.0) * 1000.0,
        p95_ms: r.try_get::<Option<f64>>("", "p95")?.unwrap_or(0.0) * 1000.0,
        p99_ms: r.try_get::<Option<f64>>("", "p99")?.unwrap_or(0.0) * 1000.0,
        count: r.try_get("", "n")?,
    })
}

const PCT: &str =
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, percentile_cont(0.95) WITHIN GROUP (ORDER BY d) AS p95, \
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99, count(*)::BIGINT AS n";

pub async fn figures(
    db: &DatabaseConnection,
    p1_start: DateTime<Utc>,
    p1_end: DateTime<Utc>,
    burst_start: DateTime<Utc>,
    offered_secs: f64,
    fixed_total: u32,
    emails: bool,
) -> anyhow::Result<Figures> {
    let rec = |from: DateTime<Utc>, to: DateTime<Utc>| {
        (
            format!(
                "SELECT {PCT} FROM (SELECT EXTRACT(EPOCH FROM r.issued_at - p.paid_at)::FLOAT8 AS d FROM receipts r JOIN payments p USING (payment_id) \
                 WHERE p.paid_at >= $1 AND p.paid_at < $2 AND r.replaces IS NULL) x"
            ),
            vec![Value::from(from), Value::from(to)],
        )
    };
    let (sql, v) = rec(p1_start, p1_end);
    let fixed_receipt_latency = latency(db, &sql, v).await?;
    let fixed_email_latency = if emails {
        Some(
            latency(
                db,
                &format!(
                    "SELECT {PCT} FROM (SELECT EXTRACT(EPOCH FROM d.sent_at - p.paid_at)::FLOAT8 AS d FROM deliveries d JOIN payments p USING (payment_id) \
                     WHERE d.kind = 'receipt_issued' AND d.status = 'sent' AND p.paid_at >= $1 AND p.paid_at < $2) x"
                ),
                vec![p1_start.into(), p1_end.into()],
            )
            .await?,
        )
    } else {
        None
    };
    let far = crate::wall_clock() + chrono::Duration::days(1);
    let (sql, v) = rec(burst_start, far);
    let saturation_receipt_latency = latency(db, &sql, v).await?;
    let rate = |sql: &'static str| async move {
        let r =
            db.query_one(stmt_for(sql, vec![burst_start.into()])).await?.ok_or_else(|| anyhow::anyhow!("no row"))?;
        let n: i64 = r.try_get("", "n")?;
        let secs: f64 = r.try_get::<Option<f64>>("", "s")?.unwrap_or(0.0);
        anyhow::Ok(if secs > 0.0 { n as f64 / secs } else { 0.0 })
    };
    let saturation_payments_per_s = rate(
        "SELECT count(*)::BIGINT AS n, EXTRACT(EPOCH FROM max(processed_at) - min(paid_at))::FLOAT8 AS s FROM payments WHERE paid_at >= $1",
    )
    .await?;
    let saturation_receipts_per_s = rate(
        "SELECT count(*)::BIGINT AS n, EXTRACT(EPOCH FROM max(r.issued_at) - min(p.paid_at))::FLOAT8 AS s FROM receipts r JOIN payments p USING (payment_id) \
         WHERE p.paid_at >= $1 AND r.replaces IS NULL",
    )
    .await?;
    let saturation_emails_per_s = if emails {
        Some(
            rate(
                "SELECT count(*)::BIGINT AS n, EXTRACT(EPOCH FROM max(d.sent_at) - min(d.created_at))::FLOAT8 AS s FROM deliveries d JOIN payments p USING (payment_id) \
                 WHERE p.paid_at >= $1 AND d.status = 'sent'",
            )
            .await?,
        )
    } else {
        None
    };
    Ok(Figures {
        fixed_offered_per_s: fixed_total as f64 / offered_secs.max(0.001),
        fixed_receipt_latency,
        fixed_email_latency,
        saturation_payments_per_s,
        saturation_receipts_per_s,
        saturation_receipt_latency,
        saturation_emails_per_s,
    })
}

async fn one(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    Ok(db.query_one(raw(sql)).await?.ok_or_else(|| anyhow::anyhow!("no row"))?.try_get("", "n")?)
}

pub async fn check(
    db: &DatabaseConnection,
    e: &Expected,
    emails: bool,
    kafka: &KafkaSettings,
    dlq_topic: &str,
) -> anyhow::Result<Checks> {
    let dlq = dead_letters(kafka, dlq_topic).unwrap_or(-1);
    Ok(Checks {
        payments_expected: e.payments,
        payments_recorded: one(db, "SELECT count(*)::BIGINT AS n FROM payments").await?,
        issued_without_receipt: one(db, "SELECT count(*)::BIGINT AS n FROM payments p WHERE status = 'issued' AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.payment_id = p.payment_id)").await?,
        receipts_for_rejected_or_waived: one(db, "SELECT count(*)::BIGINT AS n FROM receipts r JOIN payments p USING (payment_id) WHERE p.status <> 'issued'").await?,
        numbering_defects: one(
            db,
            // Each range (a delegate's starts above 1) holds range_from..=last_number once each.
            "SELECT COALESCE(sum(abs(GREATEST(c.last_number, x.mx) - (c.range_from - 1) - x.d) + (x.n - x.d)), 0)::BIGINT AS n FROM series_counters c JOIN \
             (SELECT agency_code, template, symbol, year, range_from, count(*) AS n, count(DISTINCT number) AS d, max(number) AS mx FROM receipts GROUP BY 1, 2, 3, 4, 5) x \
             ON x.agency_code = c.agency AND x.template = c.template AND x.symbol = c.symbol AND x.year = c.year AND x.range_from = c.range_from",
        )
        .await?,
        series: one(db, "SELECT count(*)::BIGINT AS n FROM series_counters WHERE last_number > 0").await?,
        receipts: one(db, "SELECT count(*)::BIGINT AS n FROM receipts").await?,
        dead_letters_expected: e.invalid,
        dead_letters_found: dlq,
        refunds_expected: e.refunds,
        refunds_applied: one(db, "SELECT count(*)::BIGINT AS n FROM refunds WHERE status = 'applied'").await?,
        outbox_left: one(db, "SELECT count(*)::BIGINT AS n FROM outbox").await?,
        emails_checked: emails,
        receipts_without_exactly_one_sent_email: if emails {
            one(
                db,
                "SELECT count(*)::BIGINT AS n FROM receipts r WHERE (SELECT count(*) FROM deliveries d WHERE d.receipt_id = r.receipt_id::TEXT \
                 AND d.kind = 'receipt_issued' AND d.status = 'sent') <> 1",
            )
            .await?
        } else {
            0
        },
        emails_sent: if emails {
            one(db, "SELECT count(*)::BIGINT AS n FROM deliveries WHERE status = 'sent'").await?
        } else {
            0
        },
        smtp_accepted: None,
    })
}

/// Dead letters on the broker: the sum over partitions of the DLQ topic's watermarks.
fn dead_letters(kafka: &KafkaSettings, topic: &str) -> anyhow::Result<i64> {
    let c: BaseConsumer = feepay_runtime::kafka::client_config(kafka).set("group.id", "feepay-bench-dlq").create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut n = 0i64;
    for t in md.topics() {
        for p in t.partitions() {
            let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
            n += hi - lo;
        }
    }
    Ok(n)
}

/// Reads `expected` messages of a topic with a consumer that does nothing else.
pub async fn bare_consumer_rate(kafka: &KafkaSettings, topic: &str, expected: usize) -> anyhow::Result<f64> {
    let kafka = kafka.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let c: BaseConsumer = feepay_runtime::kafka::client_config(&kafka)
            .set("group.id", format!("feepay-bench-ceiling-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()?;
        let md = c.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
        let mut tpl = TopicPartitionList::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
            }
        }
        c.assign(&tpl)?;
        let mut n = 0usize;
        let mut first: Option<Instant> = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        while n < expected && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                first.get_or_insert_with(Instant::now);
                std::hint::black_box(m.payload());
                n += 1;
            }
        }
        let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(1.0);
        Ok(n as f64 / secs.max(0.001))
    })
    .await?
}

/// Inserts copies of real receipt rows into a scratch table in batches of 500 rows per
/// statement and 10 statements per transaction, and reports rows per second.
pub async fn pg_batch_rate(db: &DatabaseConnection) -> anyhow::Result<f64> {
    db.execute_unprepared(
        "DROP TABLE IF EXISTS ceiling_receipts; CREATE TABLE ceiling_receipts (LIKE receipts INCLUDING DEFAULTS)",
    )
    .await?;
    let rows = db
        .query_all(raw(
            "SELECT receipt_id, payment_id, agency_code, template, symbol, year, number, total, waived, status, issued_at, lookup_code, key_id, \
             signature, previous_hash, document_hash, document, receipt_pb FROM receipts LIMIT 20000",
        ))
        .await?;
    if rows.is_empty() {
        return Ok(0.0);
    }
    let mut values: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        values.push(vec![
            uuid::Uuid::new_v4().into(),
            r.try_get::<String>("", "payment_id")?.into(),
            r.try_get::<String>("", "agency_code")?.into(),
            r.try_get::<String>("", "template")?.into(),
            r.try_get::<String>("", "symbol")?.into(),
            r.try_get::<i32>("", "year")?.into(),
            (i as i32 + 1).into(),
            r.try_get::<i64>("", "total")?.into(),
            r.try_get::<i64>("", "waived")?.into(),
            r.try_get::<String>("", "status")?.into(),
            r.try_get::<DateTime<Utc>>("", "issued_at")?.into(),
            format!("C{i}").into(),
            r.try_get::<String>("", "key_id")?.into(),
            r.try_get::<String>("", "signature")?.into(),
            r.try_get::<String>("", "previous_hash")?.into(),
            r.try_get::<String>("", "document_hash")?.into(),
            r.try_get::<String>("", "document")?.into(),
            r.try_get::<Vec<u8>>("", "receipt_pb")?.into(),
        ]);
    }
    let cols = "receipt_id, payment_id, agency_code, template, symbol, year, number, total, waived, status, issued_at, lookup_code, key_id, \
                signature, previous_hash, document_hash, document, receipt_pb";
    let start = Instant::now();
    for tx_chunk in values.chunks(5000) {
        let txn = db.begin().await?;
        for chunk in tx_chunk.chunks(500) {
            let v: Vec<Value> = chunk.iter().flatten().cloned().collect();
            txn.execute(stmt_for(
                &format!("INSERT INTO ceiling_receipts ({cols}) VALUES {}", placeholders(chunk.len(), 18)),
                v,
            ))
            .await?;
        }
        txn.commit().await?;
    }
    let rate = values.len() as f64 / start.elapsed().as_secs_f64();
    db.execute_unprepared("DROP TABLE ceiling_receipts").await?;
    Ok(rate)
}

/// Throughput and p99 latency per second over the run, as SVG.
pub async fn svg(db: &DatabaseConnection, from: DateTime<Utc>) -> anyhow::Result<String> {
    let rows = db
        .query_all(stmt_for(
            "SELECT EXTRACT(EPOCH FROM date_trunc('second', r.issued_at) - $1)::FLOAT8 AS t, count(*)::BIGINT AS n, \
             percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM r.issued_at - p.paid_at))::FLOAT8 AS p99 \
             FROM receipts r JOIN payments p USING (payment_id) WHERE r.replaces IS NULL GROUP BY 1 ORDER BY 1",
            vec![from.into()],
        ))
        .await?;
    let pts: Vec<(f64, f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.try_get::<f64>("", "t").ok()?,
                r.try_get::<i64>("", "n").ok()? as f64,
                r.try_get::<f64>("", "p99").ok()? * 1000.0,
            ))
        })
        .collect();
    let (w, h, pad) = (900.0, 260.0, 50.0);
    let tmax = pts.iter().map(|p| p.0).fold(1.0, f64::max);
    let chart = |y0: f64, title: &str, vals: Vec<(f64, f64)>, unit: &str| {
        let vmax = vals.iter().map(|v| v.1).fold(1.0, f64::max);
        let path: Vec<String> = vals
            .iter()
            .map(|(t, v)| {
                format!("{:.1},{:.1}", pad + t / tmax * (w - 2.0 * pad), y0 + h - pad - v / vmax * (h - 2.0 * pad))
            })
            .collect();
        format!(
            "<text x=\"{pad}\" y=\"{}\" font-size=\"14\" font-family=\"sans-serif\">{title} (max {vmax:.0} {unit})</text>\
             <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/><line x1=\"{pad}\" y1=\"{}\" x2=\"{pad}\" y2=\"{}\" stroke=\"#888\"/>\
             <polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" font-family=\"sans-serif\">{tmax:.0} s</text>",
            y0 + 20.0,
            y0 + h - pad,
            w - pad,
            y0 + h - pad,
            y0 + pad,
            y0 + h - pad,
            path.join(" "),
            w - pad - 30.0,
            y0 + h - pad + 15.0
        )
    };
    let a = chart(0.0, "receipts committed per second", pts.iter().map(|p| (p.0, p.1)).collect(), "/s");
    let b = chart(h, "payment → receipt p99 per second", pts.iter().map(|p| (p.0, p.2)).collect(), "ms");
    Ok(format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>{a}{b}</svg>\n", 2.0 * h, 2.0 * h))
}
