//! Typed settings from environment variables, with defaults that work against the local
//! stack started by `make up`. Every variable is declared once in [`catalog`] (name,
//! default, meaning), which also generates the README's configuration table; a variable is
//! read only through its declaration.

pub mod catalog;

pub use catalog::Var;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a setting cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {message}")]
pub struct SettingError {
    pub name: String,
    pub message: String,
}

/// The variable's value, or its declared default when unset or empty.
pub fn get(var: &Var) -> String {
    env_or(var.name, var.value())
}

/// The variable's value, or `default` (for a default computed by the reader, e.g. the
/// service's name).
pub fn get_or(var: &Var, default: &str) -> String {
    env_or(var.name, default)
}

/// The variable parsed, or its declared default parsed.
pub fn parse<T: FromStr>(var: &Var) -> Result<T, SettingError>
where
    T::Err: fmt::Display,
{
    let v = get(var);
    v.parse().map_err(|e: T::Err| SettingError { name: var.name.into(), message: format!("{e}: {v:?}") })
}

/// The variable, when set and not empty.
pub fn opt(var: &Var) -> Option<String> {
    read_env(var.name)
}

/// A secret: from the file named by `<name>_FILE` (a mounted secret, the safer way: not in
/// the process environment), else from the variable, else its default (or empty).
pub fn secret(var: &Var) -> Result<Secret, SettingError> {
    let file_var = format!("{}_FILE", var.name);
    debug_assert!(catalog::find(&file_var).is_some(), "{file_var} is not declared");
    match read_env(&file_var) {
        Some(path) => std::fs::read_to_string(&path)
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
            .map_err(|e| SettingError { name: file_var, message: format!("{path}: {e}") }),
        None => Ok(Secret::new(match var.default {
            catalog::DefaultValue::Value(d) => env_or(var.name, d),
            _ => opt(var).unwrap_or_default(),
        })),
    }
}

/// `FEEPAY_*` variables in this process's environment that no setting declares: a
/// misspelt name is otherwise silently ignored. Services log each at start.
pub fn undeclared_in_env() -> Vec<String> {
    let names: Vec<String> = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).collect();
    catalog::undeclared(names.iter().map(String::as_str)).into_iter().map(str::to_string).collect()
}

fn env_or(name: &str, default: &str) -> String {
    read_env(name).unwrap_or_else(|| default.to_string())
}

/// The one reader of the process environment; everything else goes through the catalog.
#[allow(clippy::disallowed_methods)]
fn read_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret: never printed, and its memory zeroed when dropped (`secrecy`).
#[derive(Clone)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(secrecy::SecretString::new(s.into()))
    }
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl Default for Secret {
    fn default() -> Self {
        Secret::new(String::new())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() { "Secret(<empty>)" } else { "Secret(<redacted>)" })
    }
}

/// How a consumer takes part in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// The classic protocol: the group's leader assigns, here with the cooperative-sticky
    /// assignor, so a rebalance moves only the partitions that change owner.
    Classic,
    /// KIP-848's consumer protocol: the broker assigns partitions incrementally and the
    /// session timeout is the broker's (`group.consumer.session.timeout.ms`).
    Consumer,
}

impl std::str::FromStr for GroupProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "classic" => Ok(GroupProtocol::Classic),
            "consumer" => Ok(GroupProtocol::Consumer),
            other => Err(format!("{other:?}: expected classic or consumer")),
        }
    }
}

/// Kafka connection, shared by every service.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `FEEPAY_KAFKA_BROKERS` (default `127.0.0.1:9092`).
    pub brokers: String,
    /// `FEEPAY_KAFKA_SECURITY_PROTOCOL`: plaintext, ssl, sasl_plaintext, sasl_ssl.
    pub security_protocol: String,
    /// `FEEPAY_KAFKA_SASL_MECHANISM`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// `FEEPAY_KAFKA_SASL_PASSWORD`.
    pub sasl_password: Secret,
    /// `FEEPAY_KAFKA_SSL_CA_LOCATION`, `_SSL_CERTIFICATE_LOCATION`, `_SSL_KEY_LOCATION`.
    pub ssl_ca_location: Option<String>,
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    /// `FEEPAY_KAFKA_GROUP_ID` (default: the service name).
    pub group_id: String,
    /// `FEEPAY_KAFKA_CLIENT_ID` (default: the service name).
    pub client_id: String,
    /// `FEEPAY_KAFKA_SESSION_TIMEOUT_MS` (default 6000: a group joins in about half of it).
    pub session_timeout_ms: u32,
    /// `FEEPAY_KAFKA_GROUP_PROTOCOL`: `classic` (default) or `consumer` (KIP-848).
    pub group_protocol: GroupProtocol,
    /// `FEEPAY_KAFKA_FETCH_WAIT_MS` (default 50): longest a fetch waits at the broker for
    /// data. Shorter lowers latency at low rates but multiplies fetch requests: 10 ms cost
    /// the local broker so much CPU under load that p99 at 1 000 payments/s doubled.
    pub fetch_wait_ms: u32,
    /// `FEEPAY_KAFKA_BODY_FORMAT`: `protobuf` (default) or `json` for produced events.
    pub body_format: crate::envelope::BodyFormat,
    /// `FEEPAY_KAFKA_PARTITIONS` for topics this service creates when missing (default 4).
    pub partitions: i32,
    /// `FEEPAY_KAFKA_MESSAGE_MAX_BYTES` (default 1000000): the largest record this service
    /// produces (librdkafka's `message.max.bytes`). Keep it at or below the broker's and the
    /// topics' `max.message.bytes`.
    pub message_max_bytes: usize,
    /// `FEEPAY_KAFKA_FETCH_MAX_BYTES` (default 4194304): bytes per fetch and per partition
    /// fetch. A single record larger than this is still read whole.
    pub fetch_max_bytes: usize,
    /// `FEEPAY_KAFKA_GROUP_INSTANCE_ID` (unset by default): static group membership
    /// (KIP-345), so a restarted instance takes its partitions back without a rebalance.
    /// Set it per instance (e.g. a StatefulSet pod name) on brokers that honour it.
    pub group_instance_id: Option<String>,
}

impl KafkaSettings {
    pub fn from_env(service: &str) -> Result<Self, SettingError> {
        Ok(KafkaSettings {
            brokers: get(&catalog::KAFKA_BROKERS),
            security_protocol: get(&catalog::KAFKA_SECURITY_PROTOCOL),
            sasl_mechanism: opt(&catalog::KAFKA_SASL_MECHANISM),
            sasl_username: opt(&catalog::KAFKA_SASL_USERNAME),
            sasl_password: secret(&catalog::KAFKA_SASL_PASSWORD)?,
            ssl_ca_location: opt(&catalog::KAFKA_SSL_CA_LOCATION),
            ssl_certificate_location: opt(&catalog::KAFKA_SSL_CERTIFICATE_LOCATION),
            ssl_key_location: opt(&catalog::KAFKA_SSL_KEY_LOCATION),
            group_id: get_or(&catalog::KAFKA_GROUP_ID, service),
            client_id: get_or(&catalog::KAFKA_CLIENT_ID, service),
            session_timeout_ms: parse(&catalog::KAFKA_SESSION_TIMEOUT_MS)?,
            group_protocol: parse(&catalog::KAFKA_GROUP_PROTOCOL)?,
            fetch_wait_ms: parse(&catalog::KAFKA_FETCH_WAIT_MS)?,
            body_format: parse(&catalog::KAFKA_BODY_FORMAT)?,
            partitions: parse(&catalog::KAFKA_PARTITIONS)?,
            message_max_bytes: parse(&catalog::KAFKA_MESSAGE_MAX_BYTES)?,
            fetch_max_bytes: parse(&catalog::KAFKA_FETCH_MAX_BYTES)?,
            group_instance_id: opt(&catalog::KAFKA_GROUP_INSTANCE_ID),
        })
    }
}

/// Topic names; each can be overridden by `FEEPAY_TOPIC_<NAME>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub assessment_requested: String,
    pub assessed: String,
    pub payments_succeeded: String,
    pub payments_refunded: String,
    pub payments_rejected: String,
    pub payments_waived: String,
    pub receipts_issued: String,
    pub receipts_cancelled: String,
    /// Errors notified on receipts (Circular 91/2026/TT-BTC Art. 20.1) and refunds recorded.
    pub receipts_updated: String,
    pub notifications_sent: String,
    pub notifications_failed: String,
    /// Signed documents for the tax authority (reports, notices).
    pub tax_documents: String,
}

impl Topics {
    /// The variable of each topic name, with its default.
    const VARIABLES: [Var; 12] = [
        catalog::TOPIC_ASSESSMENT_REQUESTED,
        catalog::TOPIC_ASSESSED,
        catalog::TOPIC_PAYMENTS_SUCCEEDED,
        catalog::TOPIC_PAYMENTS_REFUNDED,
        catalog::TOPIC_PAYMENTS_REJECTED,
        catalog::TOPIC_PAYMENTS_WAIVED,
        catalog::TOPIC_RECEIPTS_ISSUED,
        catalog::TOPIC_RECEIPTS_CANCELLED,
        catalog::TOPIC_RECEIPTS_UPDATED,
        catalog::TOPIC_NOTIFICATIONS_SENT,
        catalog::TOPIC_NOTIFICATIONS_FAILED,
        catalog::TOPIC_TAX_DOCUMENTS,
    ];

    /// Builds topics from names in the order of [`Self::VARIABLES`].
    fn from_names(mut name: impl FnMut(&'static str, &'static str) -> String) -> Self {
        let [a, b, c, d, e, f, g, h, u, i, j, k] = Self::VARIABLES.map(|var| name(var.name, var.value()));
        Topics {
            assessment_requested: a,
            assessed: b,
            payments_succeeded: c,
            payments_refunded: d,
            payments_rejected: e,
            payments_waived: f,
            receipts_issued: g,
            receipts_cancelled: h,
            receipts_updated: u,
            notifications_sent: i,
            notifications_failed: j,
            tax_documents: k,
        }
    }

    pub fn from_env() -> Self {
        Self::from_names(env_or)
    }

    /// The `FEEPAY_TOPIC_*` variables that make [`Topics::from_env`] give these names back
    /// (to start a service process with them).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let names = [
            &self.assessment_requested,
            &self.assessed,
            &self.payments_succeeded,
            &self.payments_refunded,
            &self.payments_rejected,
            &self.payments_waived,
            &self.receipts_issued,
            &self.receipts_cancelled,
            &self.receipts_updated,
            &self.notifications_sent,
            &self.notifications_failed,
            &self.tax_documents,
        ];
        Self::VARIABLES.iter().zip(names).map(|(var, name)| (var.name, name.clone())).collect()
    }

    /// Topics with a test-specific prefix, so parallel tests never share a topic.
    pub fn with_prefix(prefix: &str) -> Self {
        Self::from_names(|_, default| format!("{prefix}{default}"))
    }

    pub fn default_names() -> Self {
        Self::from_names(|_, default| default.to_string())
    }

    /// The topics consumed by some service; each has a dead-letter topic `<topic>.dlq`.
    pub fn consumed(&self) -> Vec<&str> {
        vec![
            &self.assessment_requested,
            &self.payments_succeeded,
            &self.payments_refunded,
            &self.receipts_issued,
            &self.receipts_cancelled,
            &self.receipts_updated,
            &self.payments_waived,
        ]
    }

    /// Every topic, dead-letter topics included.
    pub fn all(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            self.assessment_requested.clone(),
            self.assessed.clone(),
            self.payments_succeeded.clone(),
            self.payments_refunded.clone(),
            self.payments_rejected.clone(),
            self.payments_waived.clone(),
            self.receipts_issued.clone(),
            self.receipts_cancelled.clone(),
            self.receipts_updated.clone(),
            self.notifications_sent.clone(),
            self.notifications_failed.clone(),
            self.tax_documents.clone(),
        ];
        v.extend(self.consumed().into_iter().map(dlq_topic));
        v
    }
}

/// The dead-letter topic of a consumed topic.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Database connection.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `FEEPAY_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/feepay?sslmode=disable`: the
    /// local server over loopback, where TLS only costs CPU; use `sslmode=verify-full` for a
    /// server across a network).
    pub url: Secret,
    /// `FEEPAY_DATABASE_MAX_CONNECTIONS` (default 8).
    pub max_connections: u32,
    /// `FEEPAY_DATABASE_LOCK_TIMEOUT_MS` (default 10000): longest a statement waits for a
    /// row or table lock; a timeout fails the batch transiently and it is retried.
    pub lock_timeout: Duration,
}

impl DatabaseSettings {
    /// Settings for `url` with the default lock timeout.
    pub fn new(url: impl Into<String>, max_connections: u32) -> Self {
        DatabaseSettings { url: Secret::new(url), max_connections, lock_timeout: Duration::from_secs(10) }
    }

    pub fn from_env() -> Result<Self, SettingError> {
        Ok(DatabaseSettings {
            url: Secret::new(with_tls_default(secret(&catalog::DATABASE_URL)?.expose())),
            max_connections: parse(&catalog::DATABASE_MAX_CONNECTIONS)?,
            lock_timeout: Duration::from_millis(parse(&catalog::DATABASE_LOCK_TIMEOUT_MS)?),
        })
    }
}

/// A database on another host is reached with TLS and its certificate verified, unless the
/// URL says otherwise (`sslmode=...`); on this host (loopback) TLS would only cost CPU.
pub fn with_tls_default(url: &str) -> String {
    if url.contains("sslmode=") {
        return url.to_string();
    }
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .map(|auth| auth.rsplit('@').next().unwrap_or(auth))
        .map(|h| h.trim_start_matches('[').split(']').next().unwrap_or(h))
        .map(|h| if h.contains(':') && !h.contains("::") { h.split(':').next().unwrap_or(h) } else { h })
        .unwrap_or("");
    let local = matches!(host, "127.0.0.1" | "localhost" | "::1" | "") || host.starts_with('/');
    if local {
        url.to_string()
    } else {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}sslmode=verify-full")
    }
}

#[cfg(test)]
mod tls_tests {
    use super::with_tls_default;

    #[test]
    fn remote_databases_verify_tls_unless_told() {
        assert_eq!(
            with_tls_default("postgres://u@db.example.gov.vn:5432/feepay"),
            "postgres://u@db.example.gov.vn:5432/feepay?sslmode=verify-full"
        );
        assert_eq!(
            with_tls_default("postgres://u:p@10.0.0.5/feepay?application_name=x"),
            "postgres://u:p@10.0.0.5/feepay?application_name=x&sslmode=verify-full"
        );
        assert_eq!(
            with_tls_default("postgres://u@db.example.gov.vn/feepay?sslmode=require"),
            "postgres://u@db.example.gov.vn/feepay?sslmode=require"
        );
        assert_eq!(
            with_tls_default("postgres://postgres@127.0.0.1:5432/feepay"),
            "postgres://postgres@127.0.0.1:5432/feepay"
        );
        assert_eq!(with_tls_default("postgres://postgres@localhost/feepay"), "postgres://postgres@localhost/feepay");
    }
}

/// Batching of consumed events.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// `FEEPAY_BATCH_MAX_EVENTS` (default 1000): events per database transaction at most.
    pub max_events: usize,
    /// `FEEPAY_BATCH_LINGER_MS` (default 5): how long to wait for more events once one arrived.
    pub linger: Duration,
    /// `FEEPAY_CONSUMER_STALL_SECS` (default 60): a consumer holding one batch (retrying it)
    /// this long, or with events waiting and nothing committed for this long, is stalled:
    /// `/readyz` says not ready and the stall alert fires.
    pub stall_after: Duration,
}

impl BatchSettings {
    pub fn from_env() -> Result<Self, SettingError> {
        Ok(BatchSettings {
            max_events: parse(&catalog::BATCH_MAX_EVENTS)?,
            linger: Duration::from_millis(parse(&catalog::BATCH_LINGER_MS)?),
            stall_after: Duration::from_secs(parse(&catalog::CONSUMER_STALL_SECS)?),
        })
    }
}

/// `FEEPAY_SHUTDOWN_DEADLINE_SECS` (default 20): how long a service may take to drain.
pub fn shutdown_deadline() -> Result<Duration, SettingError> {
    Ok(Duration::from_secs(parse(&catalog::SHUTDOWN_DEADLINE_SECS)?))
}
