//! The assessor process: the consumer driver answers each request on `fees.assessed`, then
//! commits its offset. An answer is sent at least once (the portal keys it by assessment
//! id).

use crate::assess;
use anyhow::Context;
use chrono::{DateTime, Utc};
use feepay_proto::v1;
use feepay_runtime::clock::{self, Clock};
use feepay_runtime::consumer::{self, Applied, ConsumerState, Driver, Failure, Handler, Record};
use feepay_runtime::convert::{parse_assessment_request, AssessmentRequest};
use feepay_runtime::dead_letter::DeadLetterSettings;
use feepay_runtime::envelope::{self, encode_body, DecodeError};
use feepay_runtime::http::{self, Readiness};
use feepay_runtime::ids::{event, subject};
use feepay_runtime::kafka;
use feepay_runtime::lifecycle;
use feepay_runtime::metrics::{counter_vec, ConsumerMetrics};
use feepay_runtime::refdata::{self, LoadedReference};
use feepay_runtime::settings::{self, catalog, BatchSettings, DatabaseSettings, KafkaSettings, Topics};
use feepay_runtime::startup;
use prometheus::{IntCounterVec, Registry};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sea_orm::DatabaseConnection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = feepay_runtime::service::ASSESSOR;

#[derive(Debug, Clone)]
pub struct AssessorSettings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub database: DatabaseSettings,
    pub batch: BatchSettings,
    pub dead_letters: DeadLetterSettings,
    /// `FEEPAY_ASSESSOR_HTTP_ADDR` (default `127.0.0.1:9102`).
    pub http_addr: SocketAddr,
    /// `FEEPAY_ASSESSOR_SOURCE` (default `/feepay/assessor`).
    pub source: String,
}

impl AssessorSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let kafka = KafkaSettings::from_env("feepay-assessor")?;
        Ok(AssessorSettings {
            dead_letters: DeadLetterSettings::from_env(kafka.message_max_bytes)?,
            kafka,
            topics: Topics::from_env(),
            database: DatabaseSettings::from_env()?,
            batch: BatchSettings::from_env()?,
            http_addr: settings::parse(&catalog::ASSESSOR_HTTP_ADDR)?,
            source: settings::get(&catalog::ASSESSOR_SOURCE),
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

/// A request as consumed: assessable, or over a business limit (answered with the error).
pub enum Request {
    Valid(AssessmentRequest),
    OverLimit { raw: v1::FeeAssessmentRequested, detail: String },
}

/// Answers requests.
pub struct AssessmentsHandler {
    db: DatabaseConnection,
    producer: FutureProducer,
    topics: Topics,
    source: String,
    format: feepay_runtime::envelope::BodyFormat,
    metrics: Metrics,
    reference: refdata::Cache,
    clock: Arc<dyn Clock>,
}

impl AssessmentsHandler {
    /// The newest reference data (reloaded when a newer version exists).
    async fn reference(&self) -> Result<Arc<LoadedReference>, Failure> {
        let current = self.reference.current(&self.db).await.map_err(|e| Failure::Transient(e.to_string()))?;
        Ok(current.reference)
    }

    fn answer(&self, reference: &LoadedReference, request: &Request, now: DateTime<Utc>) -> v1::FeeAssessed {
        match request {
            Request::Valid(req) => assess(reference, req, now),
            Request::OverLimit { raw, detail } => v1::FeeAssessed {
                assessment_id: raw.assessment_id.clone(),
                agency_code: raw.agency_code.clone(),
                procedure_code: raw.procedure_code.clone(),
                lines: Vec::new(),
                total_due: String::new(),
                assessed_at: Some(feepay_runtime::convert::ts(now)),
                error: detail.clone(),
            },
        }
    }
}

#[async_trait::async_trait]
impl Handler for AssessmentsHandler {
    type Item = Request;

    fn decode(&self, record: &Record<'_>) -> Result<Request, DecodeError> {
        let raw: v1::FeeAssessmentRequested = envelope::decode_record(record)?;
        match parse_assessment_request(&raw).map_err(|e| DecodeError::new("invalid", e.to_string()))? {
            Ok(req) => Ok(Request::Valid(req)),
            Err(detail) => Ok(Request::OverLimit { raw, detail }),
        }
    }

    fn subject(&self, item: &Request) -> String {
        match item {
            Request::Valid(r) => subject::assessment(&r.assessment_id),
            Request::OverLimit { raw, .. } => subject::assessment(&raw.assessment_id),
        }
    }

    /// An edit of a request's dead letter keeps its id and agency.
    fn identity(&self, record: &Record<'_>) -> Option<feepay_runtime::dead_letter::Identity> {
        let raw: v1::FeeAssessmentRequested = envelope::decode_record(record).ok()?;
        Some(
            feepay_runtime::dead_letter::Identity::new(
                subject::assessment(&raw.assessment_id),
                Some(raw.agency_code.clone()),
            )
            .fact("assessment_id", raw.assessment_id),
        )
    }

    fn agency(&self, item: &Request) -> Option<String> {
        Some(match item {
            Request::Valid(r) => r.agency_code.clone(),
            Request::OverLimit { raw, .. } => raw.agency_code.clone(),
        })
    }

    async fn apply(&self, items: &[Request]) -> Result<Applied, Failure> {
        let reference = self.reference().await?;
        let now = self.clock.now();
        let answers: Vec<v1::FeeAssessed> = items.iter().map(|r| self.answer(&reference, r, now)).collect();
        let sends = answers.iter().map(|answer| {
            let id = event::fee_assessed(&answer.assessment_id);
            let headers = envelope::headers_for::<v1::FeeAssessed>(&id, &self.source, now, self.format);
            let body = encode_body(answer, self.format);
            let producer = self.producer.clone();
            let topic = self.topics.assessed.clone();
            async move {
                let rec = FutureRecord::to(&topic).key(&answer.assessment_id).payload(&body).headers(headers);
                producer.send(rec, Duration::from_secs(30)).await.map_err(|(e, _)| e)
            }
        });
        for r in futures::future::join_all(sends).await {
            if let Err(e) = r {
                return Err(match e.rdkafka_error_code() {
                    Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge) => Failure::Poison(e.to_string()),
                    _ => Failure::Transient(format!("answer not accepted by the broker: {e}")),
                });
            }
        }
        // Every answer is acknowledged: count them.
        let mut applied = Applied::default();
        for answer in &answers {
            let outcome = if answer.error.is_empty() { "assessed" } else { "refused" };
            self.metrics.assessments.with_label_values(&[outcome]).inc();
            for l in &answer.lines {
                if let Some(w) = &l.waiver {
                    self.metrics.waivers.with_label_values(&[&w.rule_id]).inc();
                }
            }
            applied.count(&self.topics.assessment_requested, outcome, 1);
        }
        Ok(applied)
    }
}

pub struct App {
    pub http_addr: SocketAddr,
    driver: Driver<AssessmentsHandler>,
    shutdown: CancellationToken,
    http: tokio::task::JoinHandle<()>,
}

impl App {
    /// Binds the operations port (reporting not ready), then waits for PostgreSQL with a
    /// current schema and for the broker, and creates the clients.
    pub async fn build(settings: AssessorSettings, shutdown: CancellationToken) -> anyhow::Result<App> {
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
        metrics.consumer.init(&[&settings.topics.assessment_requested], &["assessed", "refused", "dead_lettered"]);
        let readiness = Arc::new(Readiness::default());
        let (http_addr, http) = http::serve(
            settings.http_addr,
            http::ops_router(metrics.registry.clone(), readiness.clone()),
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("binding {}", settings.http_addr))?;
        let db = startup::database(&settings.database, &readiness, &shutdown)
            .await
            .context("stopped while waiting for PostgreSQL")?;
        anyhow::ensure!(
            startup::broker(
                &settings.kafka,
                &feepay_runtime::kafka::access::Role::Assessor.topics(&settings.topics),
                &readiness,
                &shutdown
            )
            .await,
            "stopped while waiting for the broker"
        );
        let producer = kafka::producer(&settings.kafka).context("creating the Kafka producer")?;
        let state = Arc::new(ConsumerState::new(settings.batch.stall_after));
        let consumer = Arc::new(
            consumer::group_consumer(&settings.kafka, &[&settings.topics.assessment_requested], state.clone())
                .context("creating the Kafka consumer")?,
        );
        readiness.follow(state.clone());
        lifecycle::spawn_database_check(db.clone(), readiness.clone(), shutdown.clone());
        consumer::spawn_monitor(
            consumer.clone(),
            state.clone(),
            readiness,
            metrics.consumer.clone(),
            db.clone(),
            SERVICE,
            shutdown.clone(),
        );
        let handler = AssessmentsHandler {
            db: db.clone(),
            producer: producer.clone(),
            topics: settings.topics.clone(),
            source: settings.source.clone(),
            format: settings.kafka.body_format,
            metrics: metrics.clone(),
            reference: refdata::Cache::new(),
            clock: clock::system(),
        };
        let clock = handler.clock.clone();
        let driver = Driver {
            service: SERVICE,
            consumer,
            state,
            producer,
            db,
            handler: Arc::new(handler),
            batch: settings.batch,
            dead_letters: settings.dead_letters,
            metrics: metrics.consumer,
            clock,
        };
        Ok(App { http_addr, driver, shutdown, http })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let App { driver, shutdown, http, .. } = self;
        tracing::info!("assessor consuming");
        driver.run(&shutdown).await;
        let producer = driver.producer.clone();
        let _ =
            tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5)))
                .await;
        let _ = http.await;
        tracing::info!("assessor stopped");
        Ok(())
    }
}
