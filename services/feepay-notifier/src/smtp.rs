//! SMTP transport from settings: host, port, TLS mode, authentication, pooling.

use feepay_runtime::settings::{env_opt, env_or, env_parse, Secret, SettingError};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use std::str::FromStr;
use std::time::Duration;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP (local sink, trusted relay on the same host).
    None,
    /// STARTTLS upgrade, required.
    StartTls,
    /// Implicit TLS (SMTPS, usually port 465).
    Tls,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::StartTls),
            "tls" => Ok(TlsMode::Tls),
            other => Err(format!("expected none, starttls or tls, got {other}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `FEEPAY_SMTP_HOST` (default 127.0.0.1).
    pub host: String,
    /// `FEEPAY_SMTP_PORT` (default 1025, the local sink).
    pub port: u16,
    /// `FEEPAY_SMTP_TLS`: none (default), starttls, tls.
    pub tls: TlsMode,
    /// `FEEPAY_SMTP_USERNAME` / `FEEPAY_SMTP_PASSWORD`.
    pub username: Option<String>,
    pub password: Secret,
    /// `FEEPAY_SMTP_POOL_SIZE` (default 4).
    pub pool_size: u32,
    /// `FEEPAY_SMTP_TIMEOUT_SECS` (default 10).
    pub timeout: Duration,
}

impl SmtpSettings {
    pub fn from_env() -> Result<Self, SettingError> {
        Ok(SmtpSettings {
            host: env_or("FEEPAY_SMTP_HOST", "127.0.0.1"),
            port: env_parse("FEEPAY_SMTP_PORT", 1025)?,
            tls: env_parse("FEEPAY_SMTP_TLS", TlsMode::None)?,
            username: env_opt("FEEPAY_SMTP_USERNAME"),
            password: Secret::new(env_or("FEEPAY_SMTP_PASSWORD", "")),
            pool_size: env_parse("FEEPAY_SMTP_POOL_SIZE", 4)?,
            timeout: Duration::from_secs(env_parse("FEEPAY_SMTP_TIMEOUT_SECS", 10)?),
        })
    }

    pub fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
        let tls = |required: bool| -> Result<Tls, lettre::transport::smtp::Error> {
            let p = TlsParameters::new(self.host.clone())?;
            Ok(if required { Tls::Required(p) } else { Tls::Wrapper(p) })
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(self.timeout));
        b = match self.tls {
            TlsMode::None => b.tls(Tls::None),
            TlsMode::StartTls => b.tls(tls(true)?),
            TlsMode::Tls => b.tls(tls(false)?),
        };
        if let Some(u) = &self.username {
            b = b.credentials(Credentials::new(u.clone(), self.password.expose().to_string()));
        }
        Ok(b.pool_config(PoolConfig::new().max_size(self.pool_size).idle_timeout(Duration::from_secs(30))).build())
    }
}

/// Parses a retry schedule such as `1m,5m,30m,2h,12h`.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',')
        .map(|p| {
            let p = p.trim();
            let (num, unit) = p.split_at(p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len()));
            let n: u64 = num.parse().map_err(|_| format!("{p:?}: expected a number and a unit (s, m, h)"))?;
            Ok(Duration::from_secs(match unit {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                _ => return Err(format!("{p:?}: unit must be s, m or h")),
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn schedules() {
        assert_eq!(
            super::parse_schedule("1m,5m,30m,2h,12h").unwrap().iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            vec![60, 300, 1800, 7200, 43200]
        );
        assert!(super::parse_schedule("5x").is_err());
    }
}
