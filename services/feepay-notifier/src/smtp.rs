//! SMTP from settings: host, port, TLS mode, authentication, and a pool of connections.
//!
//! The pool ([`Mailer`]) is written here, not taken from lettre's `pool` feature, for a
//! measured reason: lettre's sockets keep Nagle's algorithm on and its client writes the
//! body and the final dot separately, so every message waited for the server's delayed ACK
//! (about 25 messages/s per connection). Go back to lettre's pool once it sets
//! `TCP_NODELAY` itself; the notifier's tests and `make bench` show the difference.

use feepay_runtime::settings::{catalog, get, opt, parse, Secret, SettingError};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

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
        let s = SmtpSettings {
            host: get(&catalog::SMTP_HOST),
            port: parse(&catalog::SMTP_PORT)?,
            tls: parse(&catalog::SMTP_TLS)?,
            username: opt(&catalog::SMTP_USERNAME),
            password: feepay_runtime::settings::secret(&catalog::SMTP_PASSWORD)?,
            pool_size: parse(&catalog::SMTP_POOL_SIZE)?,
            timeout: Duration::from_secs(parse(&catalog::SMTP_TIMEOUT_SECS)?),
        };
        // A password never crosses the network in clear: AUTH needs TLS unless the operator
        // opts out explicitly (a relay on the same host).
        if s.username.is_some() && s.tls == TlsMode::None && !parse::<bool>(&catalog::SMTP_ALLOW_PLAINTEXT_AUTH)? {
            return Err(SettingError {
                name: "FEEPAY_SMTP_TLS".into(),
                message: "SMTP authentication needs FEEPAY_SMTP_TLS=starttls or tls (or FEEPAY_SMTP_ALLOW_PLAINTEXT_AUTH=true for a relay on this host)".into(),
            });
        }
        Ok(s)
    }

    fn tls_parameters(&self) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        TlsParameters::new(self.host.clone())
    }
}

/// A connection in the pool and when it was last known to work.
struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// SMTP sender with its own pool of connections.
///
/// lettre's pooled transport writes the message body and the final `<CRLF>.<CRLF>` as two
/// writes on a socket with Nagle's algorithm on, so the terminator waits for the server's
/// delayed ACK (40 ms on Linux): about 25 messages/s per connection whatever the server's
/// speed. This pool opens its sockets itself with `TCP_NODELAY` and hands them to lettre's
/// SMTP client. It also skips lettre's NOOP before every reuse for connections that worked
/// less than [`Mailer::TRUST_IDLE`] ago.
pub struct Mailer {
    settings: SmtpSettings,
    hello: ClientId,
    credentials: Option<Credentials>,
    permits: Semaphore,
    idle: Mutex<Vec<Idle>>,
}

impl Mailer {
    /// A connection idle for less than this is reused without a NOOP first.
    const TRUST_IDLE: Duration = Duration::from_secs(2);
    /// A connection idle for longer than this is closed rather than reused.
    const MAX_IDLE: Duration = Duration::from_secs(30);

    pub fn new(settings: SmtpSettings) -> Result<Self, lettre::transport::smtp::Error> {
        if settings.tls != TlsMode::None {
            // Fail at start, not at the first email, when the TLS settings cannot work.
            settings.tls_parameters()?;
        }
        let credentials =
            settings.username.as_ref().map(|u| Credentials::new(u.clone(), settings.password.expose().to_string()));
        Ok(Mailer {
            permits: Semaphore::new(settings.pool_size.max(1) as usize),
            hello: ClientId::default(),
            credentials,
            idle: Mutex::new(Vec::new()),
            settings,
        })
    }

    /// Sends one message; at most `pool_size` are in flight at once.
    pub async fn send(&self, message: &Message) -> Result<(), SendError> {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let mut conn = self.checkout().await?;
        let body = message.formatted();
        let sent = tokio::time::timeout(self.settings.timeout, conn.send(message.envelope(), &body)).await;
        match sent {
            Ok(Ok(_)) => {
                self.idle.lock().await.push(Idle { conn, since: Instant::now() });
                Ok(())
            }
            Ok(Err(e)) => {
                Self::close(conn).await;
                Err(e.into())
            }
            Err(_) => Err(SendError::TimedOut(self.settings.timeout)),
        }
    }

    /// A working connection: a recently used one, a checked older one, or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let Some(Idle { mut conn, since }) = self.idle.lock().await.pop() else {
                return self.connect().await;
            };
            let idle = since.elapsed();
            if idle < Self::TRUST_IDLE && !conn.has_broken() {
                return Ok(conn);
            }
            if idle < Self::MAX_IDLE
                && tokio::time::timeout(self.settings.timeout, conn.test_connected()).await.unwrap_or(false)
            {
                return Ok(conn);
            }
            Self::close(conn).await;
        }
    }

    /// Says QUIT if the server still listens, without waiting long for a dead one.
    async fn close(mut conn: AsyncSmtpConnection) {
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.abort()).await;
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let s = &self.settings;
        let connect = async {
            let mut conn = if s.tls == TlsMode::Tls {
                // Implicit TLS goes through lettre's own connect (its stream type is not
                // public to wrap), so Nagle stays on for SMTPS.
                AsyncSmtpConnection::connect_tokio1(
                    (s.host.as_str(), s.port),
                    Some(s.timeout),
                    &self.hello,
                    Some(s.tls_parameters()?),
                    None,
                )
                .await?
            } else {
                let tcp = TcpStream::connect((s.host.as_str(), s.port)).await?;
                tcp.set_nodelay(true)?;
                let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?;
                if s.tls == TlsMode::StartTls {
                    conn.starttls(s.tls_parameters()?, &self.hello).await?;
                }
                conn
            };
            if let Some(c) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await?;
            }
            Ok::<_, SendError>(conn)
        };
        tokio::time::timeout(s.timeout, connect).await.map_err(|_| SendError::TimedOut(s.timeout))?
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("connecting to the SMTP server: {0}")]
    Connect(#[from] std::io::Error),
    #[error("the SMTP server did not answer within {0:?}")]
    TimedOut(Duration),
}

impl SendError {
    /// A refusal that trying again will not change (5xx).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Smtp(e) if e.is_permanent())
    }
}

/// Parses a retry schedule such as `1m,5m,30m,2h,12h` (each item a humantime duration).
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',')
        .map(|p| {
            let p = p.trim();
            humantime::parse_duration(p).map_err(|e| format!("{p:?}: {e} (e.g. 30s, 5m, 2h, 1h 30m)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;
    #[test]
    fn schedules() {
        assert_eq!(
            super::parse_schedule("1m,5m,30m,2h,12h").unwrap().iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            vec![60, 300, 1800, 7200, 43200]
        );
        assert!(super::parse_schedule("5x").is_err());
        assert!(super::parse_schedule("5").is_err(), "a unit is required");
        assert_eq!(
            super::parse_schedule("90s, 1h 30m").unwrap(),
            vec![Duration::from_secs(90), Duration::from_secs(5400)]
        );
    }
}
