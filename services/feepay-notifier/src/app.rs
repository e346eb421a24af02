//! The notifier process: wiring. The consumer driver records receipt events into the
//! delivery log; the sender loop sends from it; the outbox relay publishes the outcomes.

use crate::deliveries::Notifier;
use crate::handler::NotificationsHandler;
use crate::metrics::{NotifierMetrics, SERVICE};
pub use crate::settings::NotifierSettings;
use anyhow::Context;
use feepay_runtime::consumer::{self, ConsumerState, Driver};
use feepay_runtime::http::{self, Readiness};
use feepay_runtime::kafka;
use feepay_runtime::lifecycle;
use feepay_runtime::outbox::Relay;
use feepay_runtime::startup;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct App {
    pub notifier: Arc<Notifier>,
    pub http_addr: SocketAddr,
    driver: Driver<NotificationsHandler>,
    shutdown: CancellationToken,
    http: tokio::task::JoinHandle<()>,
}

fn init_metrics(metrics: &NotifierMetrics, topics: &feepay_runtime::settings::Topics) {
    metrics.consumer.init(&["all"], &["queued", "skipped", "refused", "duplicate", "dead_lettered"]);
    for t in [&topics.receipts_issued, &topics.receipts_cancelled, &topics.receipts_updated, &topics.payments_waived] {
        metrics.consumer.consumed.with_label_values(&[t]).inc_by(0);
        for r in feepay_runtime::metrics::DEAD_LETTER_REASONS {
            metrics.consumer.dead_lettered.with_label_values(&[t.as_str(), r]).inc_by(0);
        }
        for r in feepay_runtime::parking::REASONS {
            metrics.consumer.parked.with_label_values(&[t.as_str(), r]).inc_by(0);
        }
    }
    for k in ["receipt_issued", "receipt_cancelled", "waiver_notice", "receipt_notice", "refund_recorded"] {
        for o in ["sent", "retrying", "failed", "skipped"] {
            metrics.emails.with_label_values(&[k, o]).inc_by(0);
        }
    }
    for o in ["accepted", "refused"] {
        let _ = metrics.smtp_latency.with_label_values(&[o]);
    }
}

impl App {
    /// Binds the operations port (reporting not ready), then waits for PostgreSQL with a
    /// current schema and for the broker, and creates the clients.
    pub async fn build(settings: NotifierSettings, shutdown: CancellationToken) -> anyhow::Result<App> {
        let metrics = NotifierMetrics::new();
        init_metrics(&metrics, &settings.topics);
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
                &feepay_runtime::kafka::access::Role::Notifier.topics(&settings.topics),
                &readiness,
                &shutdown
            )
            .await,
            "stopped while waiting for the broker"
        );
        let producer = kafka::producer(&settings.kafka).context("creating the Kafka producer")?;
        let t = &settings.topics;
        let state = Arc::new(ConsumerState::new(settings.batch.stall_after));
        let consumer = Arc::new(
            consumer::group_consumer(
                &settings.kafka,
                &[&t.receipts_issued, &t.receipts_cancelled, &t.receipts_updated, &t.payments_waived],
                state.clone(),
            )
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
        let (batch, dead_letters, topics) = (settings.batch, settings.dead_letters, settings.topics.clone());
        let consumer_metrics = metrics.consumer.clone();
        let notifier = Arc::new(Notifier::new(db.clone(), settings, metrics)?);
        let driver = Driver {
            service: SERVICE,
            consumer,
            state,
            producer,
            db,
            handler: Arc::new(NotificationsHandler { notifier: notifier.clone(), topics }),
            batch,
            dead_letters,
            metrics: consumer_metrics,
            clock: notifier.clock.clone(),
        };
        Ok(App { notifier, http_addr, driver, shutdown, http })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let App { notifier, driver, shutdown, http, .. } = self;
        let relay_stop = CancellationToken::new();
        let relay = Relay {
            db: notifier.db.clone(),
            producer: driver.producer.clone(),
            name: SERVICE.into(),
            batch: 1000,
            metrics: notifier.metrics.outbox.clone(),
            bodies: None,
            clock: notifier.clock.clone(),
        };
        let relay = tokio::spawn(relay.run(relay_stop.clone()));
        let sender = {
            let n = notifier.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut last_gauge = std::time::Instant::now() - Duration::from_secs(10);
                loop {
                    if last_gauge.elapsed() > Duration::from_secs(2) {
                        let _ = n.observe_queue().await;
                        last_gauge = std::time::Instant::now();
                    }
                    let busy = match n.send_due(500).await {
                        Ok(p) => p.sent + p.retrying + p.failed > 0,
                        Err(e) => {
                            tracing::warn!(error = %e, "delivery pass failed");
                            false
                        }
                    };
                    if stop.is_cancelled() {
                        break;
                    }
                    if !busy {
                        tokio::select! { _ = tokio::time::sleep(Duration::from_millis(100)) => {}, _ = stop.cancelled() => break }
                    }
                }
            })
        };
        tracing::info!("notifier consuming");
        driver.run(&shutdown).await;
        let deadline = notifier.settings.shutdown_deadline;
        let _ = tokio::time::timeout(deadline, sender).await;
        relay_stop.cancel();
        let _ = tokio::time::timeout(deadline, relay).await;
        let producer = driver.producer.clone();
        let _ =
            tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5)))
                .await;
        let _ = http.await;
        tracing::info!("notifier stopped");
        Ok(())
    }
}
