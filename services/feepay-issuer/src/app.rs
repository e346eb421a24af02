//! The issuer process: settings, wiring, the Kafka loop and shutdown.

use crate::handler::PaymentsHandler;
use crate::issue::Issuer;
use crate::metrics::{IssuerMetrics, SERVICE};
use crate::signing::Signing;
use anyhow::Context;
use feepay_runtime::clock::Clock;
use feepay_runtime::consumer::{self, ConsumerState, Driver};
use feepay_runtime::dead_letter::DeadLetterSettings;
use feepay_runtime::http::{self, Readiness};
use feepay_runtime::kafka;
use feepay_runtime::lifecycle;
use feepay_runtime::outbox::Relay;
use feepay_runtime::settings::{self, catalog, BatchSettings, DatabaseSettings, KafkaSettings, Topics};
use feepay_runtime::startup;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything the issuer reads from the environment.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub database: DatabaseSettings,
    pub batch: BatchSettings,
    pub dead_letters: DeadLetterSettings,
    /// `FEEPAY_ISSUER_HTTP_ADDR` (default `127.0.0.1:9101`): metrics and health.
    pub http_addr: SocketAddr,
    /// `FEEPAY_SIGNERS_DIR` (default `.local/signers`): the agencies' signers — PKCS#11
    /// token configurations and PKCS#12 files (see `feepay_runtime::pki::signers`).
    pub signers_dir: PathBuf,
    /// `FEEPAY_TRUST_ANCHORS` (default `.local/pki/ca.pem`): the CA certificates (PEM) a
    /// signing certificate must chain to.
    pub trust_anchors: PathBuf,
    /// `FEEPAY_TAX_REPORT_PERIOD` (default `quarter`, or `month`): the period of the usage
    /// report BC26/BLĐT of receipts issued before 1 July 2026.
    pub tax_report_monthly: bool,
    /// `FEEPAY_TAX_SUMMARY_CUTOFF` (default `23:00`, GMT+7): from when the day's receipts go
    /// out on the summary 01/TH-BLĐT.
    pub summary_cutoff: chrono::NaiveTime,
    /// `FEEPAY_ISSUER_SOURCE` (default `/feepay/issuer`): CloudEvents source.
    pub source: String,
    /// `FEEPAY_ISSUER_RELAY` (default true): run the outbox relay in this process.
    pub relay: bool,
    /// `FEEPAY_SHUTDOWN_DEADLINE_SECS`.
    pub shutdown_deadline: Duration,
    /// `FEEPAY_ISSUER_SELF_CHECK_SECS` (default 60): numbering self-check period.
    pub self_check_every: Duration,
    /// `FEEPAY_ISSUER_WORKERS` (default 4): concurrent transactions per batch, payments
    /// split by agency. Each takes a database connection.
    pub workers: usize,
}

impl IssuerSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let kafka = KafkaSettings::from_env("feepay-issuer")?;
        let s = IssuerSettings {
            dead_letters: DeadLetterSettings::from_env(kafka.message_max_bytes)?,
            kafka,
            topics: Topics::from_env(),
            database: DatabaseSettings::from_env()?,
            batch: BatchSettings::from_env()?,
            http_addr: settings::parse(&catalog::ISSUER_HTTP_ADDR)?,
            signers_dir: PathBuf::from(settings::get(&catalog::SIGNERS_DIR)),
            trust_anchors: PathBuf::from(settings::get(&catalog::TRUST_ANCHORS)),
            tax_report_monthly: match settings::get(&catalog::TAX_REPORT_PERIOD).as_str() {
                "quarter" => false,
                "month" => true,
                other => anyhow::bail!("FEEPAY_TAX_REPORT_PERIOD must be quarter or month, got {other:?}"),
            },
            summary_cutoff: {
                let v = settings::get(&catalog::TAX_SUMMARY_CUTOFF);
                chrono::NaiveTime::parse_from_str(&v, "%H:%M")
                    .map_err(|e| anyhow::anyhow!("FEEPAY_TAX_SUMMARY_CUTOFF must be HH:MM (GMT+7), got {v:?}: {e}"))?
            },
            source: settings::get(&catalog::ISSUER_SOURCE),
            relay: settings::parse(&catalog::ISSUER_RELAY)?,
            shutdown_deadline: settings::shutdown_deadline()?,
            self_check_every: Duration::from_secs(settings::parse(&catalog::ISSUER_SELF_CHECK_SECS)?),
            workers: settings::parse(&catalog::ISSUER_WORKERS)?,
        };
        let connections = s.database.max_connections as usize;
        if s.workers == 0 || s.workers + 2 > connections {
            anyhow::bail!(
                "FEEPAY_ISSUER_WORKERS is {} but must be between 1 and FEEPAY_DATABASE_MAX_CONNECTIONS - 2 ({}): \
                 each worker holds a connection, and the relay and health checks need theirs",
                s.workers,
                connections.saturating_sub(2)
            );
        }
        Ok(s)
    }
}

/// A built issuer, ready to run.
pub struct App {
    pub settings: IssuerSettings,
    pub issuer: Arc<Issuer>,
    pub readiness: Arc<Readiness>,
    pub http_addr: SocketAddr,
    driver: Driver<PaymentsHandler>,
    shutdown: CancellationToken,
    http: tokio::task::JoinHandle<()>,
}

/// The consumer outcomes and rejection reasons, created at 0 so dashboards and alerts see
/// them before the first event.
fn init_metrics(metrics: &IssuerMetrics, topics: &Topics) {
    metrics.consumer.init(
        &[&topics.payments_succeeded, &topics.payments_refunded],
        &[
            "issued",
            "waived",
            "rejected",
            "duplicate",
            "conflict",
            "dead_lettered",
            "refund_applied",
            "refund_pending",
            "refund_rejected",
        ],
    );
    for r in [
        "unknown_agency",
        "unknown_fee",
        "no_series",
        "amount_mismatch",
        "conflicting_duplicate",
        "invalid_refund",
        "kind_mismatch",
        "limit_exceeded",
    ] {
        metrics.payments_rejected.with_label_values(&[r]).inc_by(0);
    }
    for k in ["payment", "refund"] {
        metrics.conflicts.with_label_values(&[k]).inc_by(0);
    }
}

impl App {
    /// Binds the operations port (reporting not ready), then waits for PostgreSQL with a
    /// current schema and for the broker, loads the keys and creates the Kafka clients.
    /// Returns an error only for what waiting cannot fix (bad keys, a port in use) or when
    /// shutdown came first.
    pub async fn build(
        settings: IssuerSettings,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<App> {
        let metrics = IssuerMetrics::new();
        init_metrics(&metrics, &settings.topics);
        let readiness = Arc::new(Readiness::default());
        let (http_addr, http) = http::serve(
            settings.http_addr,
            http::ops_router(metrics.registry.clone(), readiness.clone()),
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("binding {}", settings.http_addr))?;
        let trust = feepay_runtime::pki::TrustAnchors::load(&settings.trust_anchors).map_err(anyhow::Error::msg)?;
        let signing = Signing::watching(&settings.signers_dir, trust, settings.workers)
            .with_context(|| format!("loading the signers of {}", settings.signers_dir.display()))?;
        let db = startup::database(&settings.database, &readiness, &shutdown)
            .await
            .context("stopped while waiting for PostgreSQL")?;
        let topics = feepay_runtime::kafka::access::Role::Issuer.topics(&settings.topics);
        anyhow::ensure!(
            startup::broker(&settings.kafka, &topics, &readiness, &shutdown).await,
            "stopped while waiting for the broker"
        );
        let producer = kafka::producer(&settings.kafka).context("creating the Kafka producer")?;
        let state = Arc::new(ConsumerState::new(settings.batch.stall_after));
        let consumer = Arc::new(
            consumer::group_consumer(
                &settings.kafka,
                &[&settings.topics.payments_succeeded, &settings.topics.payments_refunded],
                state.clone(),
            )
            .context("creating the Kafka consumer")?,
        );
        readiness.follow(state.clone());
        let issuer = Arc::new(
            Issuer::new(
                db.clone(),
                signing,
                clock,
                metrics.clone(),
                settings.topics.clone(),
                settings.kafka.body_format,
                settings.source.clone(),
            )
            .with_workers(settings.workers)
            .with_summary_cutoff(settings.summary_cutoff),
        );
        issuer.register_certificates().await.context("registering the signing certificates")?;
        lifecycle::spawn_database_check(db.clone(), readiness.clone(), shutdown.clone());
        consumer::spawn_monitor(
            consumer.clone(),
            state.clone(),
            readiness.clone(),
            metrics.consumer.clone(),
            db.clone(),
            SERVICE,
            shutdown.clone(),
        );
        let driver = Driver {
            service: SERVICE,
            consumer,
            state,
            producer,
            db,
            handler: Arc::new(PaymentsHandler { issuer: issuer.clone(), topics: settings.topics.clone() }),
            batch: settings.batch,
            dead_letters: settings.dead_letters,
            metrics: metrics.consumer.clone(),
            clock: issuer.clock.clone(),
        };
        Ok(App { settings, issuer, readiness, http_addr, driver, shutdown, http })
    }

    /// Runs until the shutdown token is cancelled, then drains within the deadline.
    pub async fn run(self) -> anyhow::Result<()> {
        let App { settings, issuer, driver, shutdown, http, .. } = self;
        let relay_stop = CancellationToken::new();
        let relay = settings.relay.then(|| {
            let relay = Relay {
                db: issuer.db.clone(),
                producer: driver.producer.clone(),
                name: SERVICE.to_string(),
                batch: 1000,
                metrics: issuer.metrics.outbox.clone(),
                bodies: Some(Arc::new(crate::issue::ReceiptIssuedBodies)),
                clock: issuer.clock.clone(),
            };
            tokio::spawn(relay.run(relay_stop.clone()))
        });
        let checker = {
            let issuer = issuer.clone();
            let stop = shutdown.clone();
            let every = settings.self_check_every;
            let monthly = settings.tax_report_monthly;
            tokio::spawn(async move {
                loop {
                    let year = feepay_domain::numbering::year_gmt7(issuer.clock.now());
                    if let Err(e) = issuer.numbering_self_check(year).await {
                        tracing::warn!(error = %e, "numbering self-check failed");
                    }
                    // New or rotated certificates are registered even while no payment
                    // arrives, and the expiry gauges stay current.
                    if let Err(e) = issuer.refresh_signers().await {
                        tracing::warn!(error = %e, "refreshing the signers failed");
                    }
                    issuer.observe_certificates();
                    if let Err(e) = issuer.observe_waiting_refunds().await {
                        tracing::warn!(error = %e, "counting the refunds waiting for their payment failed");
                    }
                    // The summaries 01/TH-BLĐT due: the day's once past the cut-off, any late ones.
                    match issuer.produce_daily_summaries().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(documents = n, "daily summaries 01/TH-BLĐT signed"),
                        Err(e) => tracing::warn!(error = %e, "daily summaries could not be made yet"),
                    }
                    // The usage reports of the last closed period, once (zero reports too).
                    match issuer.produce_usage_reports(monthly).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(reports = n, "usage reports BC26/BLĐT signed"),
                        Err(e) => tracing::warn!(error = %e, "usage reports could not be made yet"),
                    }
                    tokio::select! { _ = tokio::time::sleep(every) => {}, _ = stop.cancelled() => break }
                }
            })
        };
        // Operators' corrections queued by receiptctl: carried out here, where the keys are.
        let corrections = {
            let issuer = issuer.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = issuer.serve_correction_requests().await {
                        tracing::warn!(error = %e, "serving correction requests failed; retrying");
                    }
                    tokio::select! { _ = tokio::time::sleep(Duration::from_millis(500)) => {}, _ = stop.cancelled() => break }
                }
            })
        };
        tracing::info!(topics = ?[&settings.topics.payments_succeeded, &settings.topics.payments_refunded], group = %settings.kafka.group_id, "issuer consuming");
        driver.run(&shutdown).await;
        // Drain: the batch in flight is done and committed; give the relay the rest of the deadline.
        relay_stop.cancel();
        if let Some(r) = relay {
            if tokio::time::timeout(settings.shutdown_deadline, r).await.is_err() {
                tracing::warn!("outbox relay did not drain within the deadline; the rest is published at next start");
            }
        }
        let producer = driver.producer.clone();
        let _ =
            tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5)))
                .await;
        checker.abort();
        corrections.abort();
        let _ = http.await;
        tracing::info!("issuer stopped");
        Ok(())
    }
}
