//! The assessor process: consume requests, answer, then commit offsets.

use crate::assess;
use anyhow::Context;
use feepay_proto::v1;
use feepay_runtime::convert::parse_assessment_request;
use feepay_runtime::envelope::{self, encode_body, DecodeError};
use feepay_runtime::http::{self, Readiness};
use feepay_runtime::kafka;
use feepay_runtime::lifecycle;
use feepay_runtime::metrics::{counter_vec, ConsumerMetrics};
use feepay_runtime::refdata::{self, LoadedReference};
use feepay_runtime::settings::{self, BatchSettings, DatabaseSettings, KafkaSettings, Topics};
use prometheus::{IntCounterVec, Registry};
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use sea_orm::DatabaseConnection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "feepay_assessor";

#[derive(Debug, Clone)]
pub struct AssessorSettings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub database: DatabaseSettings,
    pub batch: BatchSettings,
    /// `FEEPAY_ASSESSOR_HTTP_ADDR` (default `127.0.0.1:9102`).
    pub http_addr: SocketAddr,
    /// `FEEPAY_ASSESSOR_SOURCE` (default `/feepay/assessor`).
    pub source: String,
}

impl AssessorSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(AssessorSettings {
            kafka: KafkaSettings::from_env("feepay-assessor")?,
            topics: Topics::from_env(),
            database: DatabaseSettings::from_env()?,
            batch: BatchSettings::from_env()?,
            http_addr: settings::env_parse("FEEPAY_ASSESSOR_HTTP_ADDR", "127.0.0.1:9102".parse().expect("valid"))?,
            source: settings::env_or("FEEPAY_ASSESSOR_SOURCE", "/feepay/assessor"),
        })
    }
}

#[derive(Clone)]
struct Metrics {
    registry: Registry,
    consumer: ConsumerMetrics,
    assessments: IntCounterVec,
    waivers: IntCounterVec,
}

pub struct App {
    settings: AssessorSettings,
    db: DatabaseConnection,
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    metrics: Metrics,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    http: tokio::task::JoinHandle<()>,
}

impl App {
    pub async fn build(settings: AssessorSettings, shutdown: CancellationToken) -> anyhow::Result<App> {
        let db = feepay_runtime::db::connect(&settings.database).await.context("connecting to PostgreSQL")?;
        feepay_runtime::db::migrate(&db).await.context("applying migrations")?;
        kafka::ensure_topics(&settings.kafka, &settings.topics.all(), settings.kafka.partitions)
            .await
            .context("creating topics")?;
        let producer = kafka::producer(&settings.kafka)?;
        let consumer = Arc::new(kafka::consumer(&settings.kafka, &[&settings.topics.assessment_requested])?);
        let registry = Registry::new();
        let metrics = Metrics {
            consumer: ConsumerMetrics::new(&registry, SERVICE),
            assessments: counter_vec(
                &registry,
                "feepay_assessor_assessments_total",
                "Assessments answered, by outcome",
                &["outcome"],
            ),
            waivers: counter_vec(
                &registry,
                "feepay_assessor_waivers_applied_total",
                "Assessed lines on which a waiver rule applied",
                &["rule"],
            ),
            registry,
        };
        let readiness = Arc::new(Readiness::default());
        let (http_addr, http) = http::serve(
            settings.http_addr,
            http::ops_router(metrics.registry.clone(), readiness.clone()),
            shutdown.clone(),
        )
        .await?;
        lifecycle::spawn_database_check(db.clone(), readiness.clone(), shutdown.clone());
        lifecycle::spawn_consumer_check(consumer.clone(), readiness, metrics.consumer.clone(), shutdown.clone());
        Ok(App { settings, db, consumer, producer, metrics, http_addr, shutdown, http })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let App { settings, db, consumer, producer, metrics, shutdown, http, .. } = self;
        let mut loaded: Option<Arc<LoadedReference>> = None;
        tracing::info!(topic = %settings.topics.assessment_requested, "assessor consuming");
        while !shutdown.is_cancelled() {
            let batch =
                match kafka::recv_batch(&consumer, settings.batch.max_events, settings.batch.linger, &shutdown).await {
                    Ok(b) if !b.is_empty() => b,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka receive failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
            let started = std::time::Instant::now();
            // Reference data: reload when a newer version exists; wait while there is none.
            loop {
                match refdata::latest_version(&db).await {
                    Ok(Some(v)) if loaded.as_ref().is_some_and(|l| l.version == v) => break,
                    Ok(Some(_)) => match refdata::load_latest(&db).await {
                        Ok(Some(l)) => {
                            tracing::info!(version = l.version, "reference data loaded");
                            loaded = Some(Arc::new(l));
                            break;
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, "reference data unusable"),
                    },
                    Ok(None) => {
                        tracing::error!("no reference data loaded: run `receiptctl reference load`")
                    }
                    Err(e) => tracing::error!(error = %e, "database unreachable"),
                }
                tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => {}, _ = shutdown.cancelled() => return Ok(()) }
            }
            let reference = loaded.clone().expect("loaded above");
            let now = chrono::Utc::now();
            for m in &batch {
                metrics.consumer.consumed.with_label_values(&[m.topic()]).inc();
                let decoded: Result<_, DecodeError> =
                    envelope::decode::<v1::FeeAssessmentRequested>(m.headers(), m.payload()).and_then(|raw| {
                        parse_assessment_request(&raw).map_err(|e| DecodeError::new("invalid", e.to_string()))
                    });
                match decoded {
                    Ok(req) => {
                        let answer = assess(&reference, &req, now);
                        let outcome = if answer.error.is_empty() { "assessed" } else { "refused" };
                        metrics.assessments.with_label_values(&[outcome]).inc();
                        for l in &answer.lines {
                            if let Some(w) = &l.waiver {
                                metrics.waivers.with_label_values(&[&w.rule_id]).inc();
                            }
                        }
                        let id = format!("fee-assessed:{}", answer.assessment_id);
                        let headers = envelope::headers_for::<v1::FeeAssessed>(
                            &id,
                            &settings.source,
                            now,
                            settings.kafka.body_format,
                        );
                        let body = encode_body(&answer, settings.kafka.body_format);
                        let mut backoff = Duration::from_millis(100);
                        loop {
                            let rec = FutureRecord::to(&settings.topics.assessed)
                                .key(&answer.assessment_id)
                                .payload(&body)
                                .headers(headers.clone());
                            match producer.send(rec, Duration::from_secs(30)).await {
                                Ok(_) => break,
                                Err((e, _)) => {
                                    tracing::error!(error = %e, "answer not accepted by the broker, retrying");
                                    tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.cancelled() => return Ok(()) }
                                    backoff = (backoff * 2).min(Duration::from_secs(5));
                                }
                            }
                        }
                        metrics.consumer.processed.with_label_values(&[m.topic(), outcome]).inc();
                    }
                    Err(e) => {
                        tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), reason = %e, "event dead-lettered");
                        let dl = kafka::dead_letter_of(m, &e, SERVICE);
                        if !kafka::dead_letter_durably(&producer, &dl, &shutdown).await {
                            return Ok(());
                        }
                        metrics.consumer.count_dead_letter(&dl);
                    }
                }
            }
            if let Err(e) = kafka::commit_batch(&consumer, &batch) {
                tracing::warn!(error = %e, "offset commit failed; answers will be sent again");
            }
            metrics.consumer.batch_size.observe(batch.len() as f64);
            metrics.consumer.batch_duration.observe(started.elapsed().as_secs_f64());
        }
        let _ =
            tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5)))
                .await;
        let _ = http.await;
        tracing::info!("assessor stopped");
        Ok(())
    }
}
