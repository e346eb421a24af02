//! The notifier's settings, from the environment.

use crate::smtp::{parse_schedule, SmtpSettings};
use feepay_runtime::dead_letter::DeadLetterSettings;
use feepay_runtime::settings::{self, catalog, BatchSettings, DatabaseSettings, KafkaSettings, Topics};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NotifierSettings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub database: DatabaseSettings,
    pub batch: BatchSettings,
    pub dead_letters: DeadLetterSettings,
    pub smtp: SmtpSettings,
    /// `FEEPAY_NOTIFIER_HTTP_ADDR` (default 127.0.0.1:9103).
    pub http_addr: SocketAddr,
    /// `FEEPAY_NOTIFIER_RETRY_SCHEDULE` (default `1m,5m,30m,2h,12h`): waits between attempts.
    pub retry_schedule: Vec<Duration>,
    /// `FEEPAY_SMTP_FROM` (default `Biên lai điện tử <bienlai@feepay.local>`).
    pub from: String,
    /// `FEEPAY_SMTP_REPLY_TO` (optional).
    pub reply_to: Option<String>,
    /// `FEEPAY_LOOKUP_BASE_URL` (default `http://127.0.0.1:8080/tra-cuu/`).
    pub lookup_base_url: String,
    /// `FEEPAY_MESSAGE_ID_DOMAIN` (default `feepay.local`).
    pub message_id_domain: String,
    /// `FEEPAY_TEMPLATES_DIR` (default `deploy/templates/email` when it exists).
    pub templates_dir: Option<PathBuf>,
    /// `FEEPAY_NOTIFIER_CONCURRENCY` (default 8): emails in flight.
    pub concurrency: usize,
    /// `FEEPAY_NOTIFIER_LEASE_SECS` (default 60): a pass's hold on its claimed rows,
    /// renewed every third of it (`lease`).
    pub lease: Duration,
    /// `FEEPAY_NOTIFIER_SOURCE` (default `/feepay/notifier`).
    pub source: String,
    pub shutdown_deadline: Duration,
}

impl NotifierSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let kafka = KafkaSettings::from_env("feepay-notifier")?;
        let smtp = SmtpSettings::from_env()?;
        let lease = Duration::from_secs(settings::parse(&catalog::NOTIFIER_LEASE_SECS)?);
        check_lease(lease, smtp.timeout)?;
        Ok(NotifierSettings {
            dead_letters: DeadLetterSettings::from_env(kafka.message_max_bytes)?,
            kafka,
            topics: Topics::from_env(),
            database: DatabaseSettings::from_env()?,
            batch: BatchSettings::from_env()?,
            smtp,
            lease,
            http_addr: settings::parse(&catalog::NOTIFIER_HTTP_ADDR)?,
            retry_schedule: parse_schedule(&settings::get(&catalog::NOTIFIER_RETRY_SCHEDULE))
                .map_err(|e| anyhow::anyhow!("FEEPAY_NOTIFIER_RETRY_SCHEDULE: {e}"))?,
            from: settings::get(&catalog::SMTP_FROM),
            reply_to: settings::opt(&catalog::SMTP_REPLY_TO),
            lookup_base_url: settings::get(&catalog::LOOKUP_BASE_URL),
            message_id_domain: settings::get(&catalog::MESSAGE_ID_DOMAIN),
            templates_dir: crate::compose::templates_dir(&settings::get(&catalog::TEMPLATES_DIR)),
            concurrency: settings::parse(&catalog::NOTIFIER_CONCURRENCY)?,
            source: settings::get(&catalog::NOTIFIER_SOURCE),
            shutdown_deadline: settings::shutdown_deadline()?,
        })
    }
}

/// A lease shorter than three SMTP timeouts could run out between two renewals while an
/// email is still being handed over.
pub fn check_lease(lease: Duration, smtp_timeout: Duration) -> Result<(), settings::SettingError> {
    if lease < smtp_timeout * 3 {
        return Err(settings::SettingError {
            name: "FEEPAY_NOTIFIER_LEASE_SECS".into(),
            message: format!(
                "{} s is less than 3 × FEEPAY_SMTP_TIMEOUT_SECS ({} s): the lease could run out while an email is sent",
                lease.as_secs(),
                smtp_timeout.as_secs()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lease_outlasts_three_smtp_timeouts() {
        use std::time::Duration;
        assert!(super::check_lease(Duration::from_secs(60), Duration::from_secs(10)).is_ok());
        let e = super::check_lease(Duration::from_secs(20), Duration::from_secs(10)).unwrap_err();
        assert!(e.to_string().contains("FEEPAY_NOTIFIER_LEASE_SECS"), "{e}");
    }
}
