//! Every `FEEPAY_*` variable, declared once: its name, default, who reads it and what it
//! means. The services read their defaults from here ([`super::get`], [`super::parse`]),
//! the README's configuration table is generated from here (`receiptctl settings
//! --markdown`; a test keeps the two equal), and a service warns at start about a
//! `FEEPAY_*` variable that is not declared here (a misspelt setting is otherwise silently
//! ignored).

use std::fmt::Write;

/// The default of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value, when the variable is unset or empty.
    Value(&'static str),
    /// Unset: the feature is off or the value is optional.
    Unset,
    /// Computed by the reader (e.g. the service's name); the text says how.
    Described(&'static str),
}

/// One environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub default: DefaultValue,
    pub used_by: &'static str,
    pub meaning: &'static str,
}

impl Var {
    /// The default as a value to parse; panics for a variable without a literal default
    /// (a programming error that the catalog's tests catch).
    pub const fn value(&self) -> &'static str {
        match self.default {
            DefaultValue::Value(v) => v,
            _ => panic!("this variable has no literal default"),
        }
    }
}

macro_rules! catalog {
    ($( $id:ident = $name:literal, $default:expr, $used:literal, $meaning:literal; )*) => {
        $(
            #[doc = $meaning]
            pub const $id: Var = Var { name: $name, default: $default, used_by: $used, meaning: $meaning };
        )*
        /// Every variable, in the README's order.
        pub const ALL: &[Var] = &[$($id),*];
    };
}

use DefaultValue::{Described, Unset, Value};

catalog! {
    KAFKA_BROKERS = "FEEPAY_KAFKA_BROKERS", Value("127.0.0.1:9092"), "all", "bootstrap servers";
    KAFKA_SECURITY_PROTOCOL = "FEEPAY_KAFKA_SECURITY_PROTOCOL", Value("plaintext"), "all",
        "`plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`";
    KAFKA_SASL_MECHANISM = "FEEPAY_KAFKA_SASL_MECHANISM", Unset, "all", "`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`";
    KAFKA_SASL_USERNAME = "FEEPAY_KAFKA_SASL_USERNAME", Unset, "all but lookup",
        "SASL user, one broker user per service";
    KAFKA_SASL_PASSWORD = "FEEPAY_KAFKA_SASL_PASSWORD", Unset, "all but lookup",
        "SASL password (never logged); prefer `FEEPAY_KAFKA_SASL_PASSWORD_FILE`";
    KAFKA_SASL_PASSWORD_FILE = "FEEPAY_KAFKA_SASL_PASSWORD_FILE", Unset, "all but lookup",
        "file holding the SASL password (a mounted secret, not in the process environment)";
    KAFKA_SSL_CA_LOCATION = "FEEPAY_KAFKA_SSL_CA_LOCATION", Unset, "all", "CA certificates for TLS to the broker";
    KAFKA_SSL_CERTIFICATE_LOCATION = "FEEPAY_KAFKA_SSL_CERTIFICATE_LOCATION", Unset, "all",
        "client certificate for TLS to the broker";
    KAFKA_SSL_KEY_LOCATION = "FEEPAY_KAFKA_SSL_KEY_LOCATION", Unset, "all", "client key for TLS to the broker";
    KAFKA_GROUP_ID = "FEEPAY_KAFKA_GROUP_ID", Described("service name"), "consumers", "consumer group";
    KAFKA_CLIENT_ID = "FEEPAY_KAFKA_CLIENT_ID", Described("service name"), "all", "client id";
    KAFKA_SESSION_TIMEOUT_MS = "FEEPAY_KAFKA_SESSION_TIMEOUT_MS", Value("6000"), "consumers",
        "group session timeout; a group joins in about half of it";
    KAFKA_GROUP_PROTOCOL = "FEEPAY_KAFKA_GROUP_PROTOCOL", Value("classic"), "consumers",
        "`classic` (the client-side protocol, cooperative-sticky assignment) or `consumer` (KIP-848: the broker assigns partitions incrementally; Apache Kafka 4.0 or later)";
    KAFKA_FETCH_WAIT_MS = "FEEPAY_KAFKA_FETCH_WAIT_MS", Value("50"), "consumers",
        "longest a fetch waits at the broker (shorter: lower latency at low rates, more broker CPU under load; see Benchmark)";
    KAFKA_BODY_FORMAT = "FEEPAY_KAFKA_BODY_FORMAT", Value("protobuf"), "producers",
        "`protobuf` or `json` bodies for produced events";
    KAFKA_PARTITIONS = "FEEPAY_KAFKA_PARTITIONS", Value("4"), "all",
        "partitions of topics the services create when missing";
    KAFKA_MESSAGE_MAX_BYTES = "FEEPAY_KAFKA_MESSAGE_MAX_BYTES", Value("1000000"), "producers",
        "largest record produced (librdkafka `message.max.bytes`); keep it at or below the broker's limit";
    KAFKA_FETCH_MAX_BYTES = "FEEPAY_KAFKA_FETCH_MAX_BYTES", Value("4194304"), "consumers",
        "bytes per fetch and per partition fetch (a single larger record is still read)";
    KAFKA_GROUP_INSTANCE_ID = "FEEPAY_KAFKA_GROUP_INSTANCE_ID", Unset, "consumers",
        "static group membership (KIP-345) on brokers that honour it, e.g. a StatefulSet pod name";
    DLQ_INLINE_MAX_BYTES = "FEEPAY_DLQ_INLINE_MAX_BYTES", Value("262144"), "consumers",
        "largest original value carried inside a dead letter; larger ones are kept in PostgreSQL (`dead_letter_payloads`). Must be at least 64 KiB below `FEEPAY_KAFKA_MESSAGE_MAX_BYTES`";
    CONSUMER_STALL_SECS = "FEEPAY_CONSUMER_STALL_SECS", Value("60"), "consumers",
        "a batch retried this long, or events waiting with nothing committed this long, makes the consumer *stalled*: not ready, and `FeepayConsumerStalled` fires";
    TOPIC_ASSESSMENT_REQUESTED = "FEEPAY_TOPIC_ASSESSMENT_REQUESTED", Value("fees.assessment.requested"), "all",
        "topic name (a consumed topic's dead letters go to `<topic>.dlq`)";
    TOPIC_ASSESSED = "FEEPAY_TOPIC_ASSESSED", Value("fees.assessed"), "all", "topic name";
    TOPIC_PAYMENTS_SUCCEEDED = "FEEPAY_TOPIC_PAYMENTS_SUCCEEDED", Value("payments.succeeded"), "all",
        "topic name (a consumed topic's dead letters go to `<topic>.dlq`)";
    TOPIC_PAYMENTS_REFUNDED = "FEEPAY_TOPIC_PAYMENTS_REFUNDED", Value("payments.refunded"), "all",
        "topic name (a consumed topic's dead letters go to `<topic>.dlq`)";
    TOPIC_PAYMENTS_REJECTED = "FEEPAY_TOPIC_PAYMENTS_REJECTED", Value("payments.rejected"), "all", "topic name";
    TOPIC_PAYMENTS_WAIVED = "FEEPAY_TOPIC_PAYMENTS_WAIVED", Value("payments.waived"), "all",
        "topic name (a consumed topic's dead letters go to `<topic>.dlq`)";
    TOPIC_RECEIPTS_ISSUED = "FEEPAY_TOPIC_RECEIPTS_ISSUED", Value("receipts.issued"), "all",
        "topic name (a consumed topic's dead letters go to `<topic>.dlq`)";
    TOPIC_RECEIPTS_CANCELLED = "FEEPAY_TOPIC_RECEIPTS_CANCELLED", Value("receipts.cancelled"), "all",
        "topic name (a consumed topic's dead letters go to `<topic>.dlq`)";
    TOPIC_RECEIPTS_UPDATED = "FEEPAY_TOPIC_RECEIPTS_UPDATED", Value("receipts.updated"), "all",
        "topic name of the errors notified on receipts and the refunds recorded (a consumed topic's dead letters go to `<topic>.dlq`)";
    TOPIC_NOTIFICATIONS_SENT = "FEEPAY_TOPIC_NOTIFICATIONS_SENT", Value("notifications.sent"), "all", "topic name";
    TOPIC_NOTIFICATIONS_FAILED = "FEEPAY_TOPIC_NOTIFICATIONS_FAILED", Value("notifications.failed"), "all", "topic name";
    TOPIC_TAX_DOCUMENTS = "FEEPAY_TOPIC_TAX_DOCUMENTS", Value("tax.documents"), "all",
        "topic name of the signed documents for the tax authority";
    DATABASE_URL = "FEEPAY_DATABASE_URL", Value("postgres://postgres@127.0.0.1:5432/feepay?sslmode=disable"), "all",
        "PostgreSQL, with the process's own login user (see \"Database roles\"); a host other than this one gets `sslmode=verify-full` unless the URL says otherwise. The default talks to the local server over loopback without TLS (TLS there only costs CPU); use `sslmode=verify-full` for a server across a network";
    DATABASE_URL_FILE = "FEEPAY_DATABASE_URL_FILE", Unset, "all",
        "file holding `FEEPAY_DATABASE_URL` (a mounted secret; wins over the variable)";
    DATABASE_MAX_CONNECTIONS = "FEEPAY_DATABASE_MAX_CONNECTIONS", Value("8"), "all", "pool size";
    DATABASE_LOCK_TIMEOUT_MS = "FEEPAY_DATABASE_LOCK_TIMEOUT_MS", Value("10000"), "all",
        "longest a statement waits for a lock; a timeout fails the batch transiently and it is retried";
    BATCH_MAX_EVENTS = "FEEPAY_BATCH_MAX_EVENTS", Value("1000"), "consumers", "events per transaction at most";
    BATCH_LINGER_MS = "FEEPAY_BATCH_LINGER_MS", Value("5"), "consumers", "wait for more events once one arrived";
    SHUTDOWN_DEADLINE_SECS = "FEEPAY_SHUTDOWN_DEADLINE_SECS", Value("20"), "all", "drain time on SIGTERM / Ctrl-C";
    LOG_FORMAT = "FEEPAY_LOG_FORMAT", Value("json"), "all",
        "`json` lines or `text`; level from `RUST_LOG` (default `info`)";
    ISSUER_HTTP_ADDR = "FEEPAY_ISSUER_HTTP_ADDR", Value("127.0.0.1:9101"), "issuer", "metrics and health";
    ASSESSOR_HTTP_ADDR = "FEEPAY_ASSESSOR_HTTP_ADDR", Value("127.0.0.1:9102"), "assessor", "metrics and health";
    NOTIFIER_HTTP_ADDR = "FEEPAY_NOTIFIER_HTTP_ADDR", Value("127.0.0.1:9103"), "notifier", "metrics and health";
    SIGNERS_DIR = "FEEPAY_SIGNERS_DIR", Value(".local/signers"), "issuer, receiptctl",
        "agency signers: `<AGENCY>[+label].pkcs11.toml` (token) or `.p12` + `.p12.password`; re-read when the directory changes";
    TRUST_ANCHORS = "FEEPAY_TRUST_ANCHORS", Value(".local/pki/ca.pem"), "issuer, lookup, receiptctl",
        "CA certificates (PEM) a signing certificate must chain to";
    PKCS11_MODULE = "FEEPAY_PKCS11_MODULE", Value("/usr/lib/softhsm/libsofthsm2.so"), "issuer, receiptctl",
        "PKCS#11 module when a token configuration names none";
    TEST_CA_DIR = "FEEPAY_TEST_CA_DIR", Value(".local/pki"), "receiptctl keys", "the local test CA (`ca.pem`, `ca.key`)";
    ISSUER_RELAY = "FEEPAY_ISSUER_RELAY", Value("true"), "issuer", "run the outbox relay in this process";
    TAX_REPORT_PERIOD = "FEEPAY_TAX_REPORT_PERIOD", Value("quarter"), "issuer",
        "period of the usage report BC26/BLĐT of receipts issued before 1 July 2026: `quarter` or `month`";
    TAX_SUMMARY_CUTOFF = "FEEPAY_TAX_SUMMARY_CUTOFF", Value("23:00"), "issuer",
        "time of day (GMT+7, `HH:MM`) from which the day's receipts are sent on the summary 01/TH-BLĐT; later receipts of the day follow as supplements at the next pass";
    CORRECTION_WAIT_SECS = "FEEPAY_CORRECTION_WAIT_SECS", Value("60"), "receiptctl",
        "how long `receipts correct|notify|replace|cancel` waits for the issuer to carry the correction out";
    ISSUER_SELF_CHECK_SECS = "FEEPAY_ISSUER_SELF_CHECK_SECS", Value("60"), "issuer",
        "period of the numbering self-check, the certificates' refresh and the summaries 01/TH-BLĐT due";
    ISSUER_WORKERS = "FEEPAY_ISSUER_WORKERS", Value("4"), "issuer",
        "concurrent transactions per batch (payments split by agency; each takes a database connection, so keep it below `FEEPAY_DATABASE_MAX_CONNECTIONS`)";
    ISSUER_SOURCE = "FEEPAY_ISSUER_SOURCE", Value("/feepay/issuer"), "issuer", "CloudEvents `ce_source` of its events";
    ASSESSOR_SOURCE = "FEEPAY_ASSESSOR_SOURCE", Value("/feepay/assessor"), "assessor", "CloudEvents `ce_source` of its events";
    NOTIFIER_SOURCE = "FEEPAY_NOTIFIER_SOURCE", Value("/feepay/notifier"), "notifier", "CloudEvents `ce_source` of its events";
    SMTP_HOST = "FEEPAY_SMTP_HOST", Value("127.0.0.1"), "notifier", "SMTP server";
    SMTP_PORT = "FEEPAY_SMTP_PORT", Value("1025"), "notifier", "SMTP port";
    SMTP_TLS = "FEEPAY_SMTP_TLS", Value("none"), "notifier", "`none`, `starttls` (required) or `tls` (implicit)";
    SMTP_USERNAME = "FEEPAY_SMTP_USERNAME", Unset, "notifier", "SMTP authentication (needs `FEEPAY_SMTP_TLS`)";
    SMTP_PASSWORD = "FEEPAY_SMTP_PASSWORD", Unset, "notifier", "SMTP password; prefer `FEEPAY_SMTP_PASSWORD_FILE`";
    SMTP_PASSWORD_FILE = "FEEPAY_SMTP_PASSWORD_FILE", Unset, "notifier",
        "file holding the SMTP password (a mounted secret)";
    SMTP_ALLOW_PLAINTEXT_AUTH = "FEEPAY_SMTP_ALLOW_PLAINTEXT_AUTH", Value("false"), "notifier",
        "allow SMTP AUTH without TLS (a relay on the same host only)";
    SMTP_POOL_SIZE = "FEEPAY_SMTP_POOL_SIZE", Value("4"), "notifier",
        "pooled SMTP connections (opened with `TCP_NODELAY`; reused without a NOOP when used in the last 2 s, closed after 30 s idle)";
    SMTP_TIMEOUT_SECS = "FEEPAY_SMTP_TIMEOUT_SECS", Value("10"), "notifier", "SMTP timeout";
    SMTP_FROM = "FEEPAY_SMTP_FROM", Value("Biên lai điện tử <bienlai@feepay.local>"), "notifier",
        "default sender; agencies may set `email_from` in the reference data";
    SMTP_REPLY_TO = "FEEPAY_SMTP_REPLY_TO", Unset, "notifier",
        "default Reply-To; agencies may set `reply_to` in the reference data";
    NOTIFIER_RETRY_SCHEDULE = "FEEPAY_NOTIFIER_RETRY_SCHEDULE", Value("1m,5m,30m,2h,12h"), "notifier",
        "waits between attempts; after the last the email is failed";
    NOTIFIER_CONCURRENCY = "FEEPAY_NOTIFIER_CONCURRENCY", Value("8"), "notifier", "emails in flight";
    NOTIFIER_LEASE_SECS = "FEEPAY_NOTIFIER_LEASE_SECS", Value("60"), "notifier",
        "how long deliveries a sending pass claimed stay its own; renewed every third of it while the pass sends, so another replica never takes them over; at least 3 × `FEEPAY_SMTP_TIMEOUT_SECS`";
    TEMPLATES_DIR = "FEEPAY_TEMPLATES_DIR", Value("deploy/templates/email"), "notifier",
        "email templates; `<dir>/<AGENCY>/<name>` overrides per agency";
    LOOKUP_BASE_URL = "FEEPAY_LOOKUP_BASE_URL", Value("http://127.0.0.1:8080/tra-cuu/"), "notifier",
        "lookup link in emails (code appended)";
    MESSAGE_ID_DOMAIN = "FEEPAY_MESSAGE_ID_DOMAIN", Value("feepay.local"), "notifier",
        "right-hand side of stable Message-IDs";
    RETENTION_EMAIL_DAYS = "FEEPAY_RETENTION_EMAIL_DAYS", Value("30"), "receiptctl retention",
        "days a payer's email address (and the event a delivery was made of) is kept after the email's outcome, and on a receipt after its issue";
    RETENTION_DEAD_LETTER_DAYS = "FEEPAY_RETENTION_DEAD_LETTER_DAYS", Value("90"), "receiptctl retention",
        "days a dead letter's record (payer data of any kind) is kept before its value, key and headers are erased";
    RETENTION_PARKED_DAYS = "FEEPAY_RETENTION_PARKED_DAYS", Value("90"), "receiptctl retention",
        "days a resolved parked event's record is kept before its value, key and headers are erased";
    OPERATOR = "FEEPAY_OPERATOR", Value("operator"), "receiptctl",
        "who acts in open mode (no operators configured), for the audit log";
    OPERATOR_TOKEN = "FEEPAY_OPERATOR_TOKEN", Unset, "receiptctl", "operator token once operators are configured";
    LOOKUP_ADDR = "FEEPAY_LOOKUP_ADDR", Value("127.0.0.1:8080"), "lookup", "public address (pages and API)";
    LOOKUP_OPS_ADDR = "FEEPAY_LOOKUP_OPS_ADDR", Value("127.0.0.1:9104"), "lookup", "metrics and health (keep it private)";
    LOOKUP_PUBLIC_URL = "FEEPAY_LOOKUP_PUBLIC_URL", Value("http://127.0.0.1:8080"), "lookup, receiptctl demo",
        "address citizens use; the page's QR code links to `<url>/tra-cuu/<code>`";
    LOOKUP_RATE_PER_MINUTE = "FEEPAY_LOOKUP_RATE_PER_MINUTE", Value("120"), "lookup", "requests per client address and minute";
    LOOKUP_BURST = "FEEPAY_LOOKUP_BURST", Value("30"), "lookup", "requests a client address may make at once";
    LOOKUP_MIN_RESPONSE_MS = "FEEPAY_LOOKUP_MIN_RESPONSE_MS", Value("100"), "lookup",
        "every answer about a code takes at least this long";
    LOOKUP_PROXY_HOPS = "FEEPAY_LOOKUP_PROXY_HOPS", Value("0"), "lookup",
        "reverse proxies in front; the client is the address that many hops from the right of `X-Forwarded-For` + the peer (an address a client writes itself is never believed)";
    LOOKUP_TRUST_FORWARDED = "FEEPAY_LOOKUP_TRUST_FORWARDED", Value("false"), "lookup",
        "older form of `FEEPAY_LOOKUP_PROXY_HOPS`: `true` is read as 1 hop";
    LOOKUP_HEADER_TIMEOUT_SECS = "FEEPAY_LOOKUP_HEADER_TIMEOUT_SECS", Value("10"), "lookup",
        "a client must send its request head within this (slow clients are cut off)";
    LOOKUP_REQUEST_TIMEOUT_SECS = "FEEPAY_LOOKUP_REQUEST_TIMEOUT_SECS", Value("20"), "lookup",
        "a client must send its whole request within this (408)";
    LOOKUP_MAX_CONCURRENT = "FEEPAY_LOOKUP_MAX_CONCURRENT", Value("256"), "lookup", "requests served at once; more wait";
    LOOKUP_MAX_UPLOADS = "FEEPAY_LOOKUP_MAX_UPLOADS", Value("32"), "lookup",
        "documents uploaded for verification at once (each up to 1 MiB held while it arrives); more wait, within the request timeout";
    LOOKUP_IDLE_TIMEOUT_SECS = "FEEPAY_LOOKUP_IDLE_TIMEOUT_SECS", Value("30"), "lookup",
        "a public connection with no request in flight and nothing received for this long is closed (silent TCP, idle keep-alive, idle HTTP/2)";
    LOOKUP_MAX_CONNECTIONS = "FEEPAY_LOOKUP_MAX_CONNECTIONS", Value("1024"), "lookup",
        "public connections open at once; one more is closed on arrival";
    LOOKUP_MAX_CONNECTIONS_PER_ADDRESS = "FEEPAY_LOOKUP_MAX_CONNECTIONS_PER_ADDRESS", Value("32"), "lookup",
        "public connections open at once from one address (IPv6: a /64); 0 for none; not applied behind proxies (`FEEPAY_LOOKUP_PROXY_HOPS` above 0), where every connection is a proxy's";
    LOOKUP_VERIFY_WORKERS = "FEEPAY_LOOKUP_VERIFY_WORKERS", Described("number of cores"), "lookup",
        "documents verified at once, each on a blocking thread off the request workers; a verification that waits 2 s for one is answered 503 with Retry-After";
    DEMO_SMTP_WEB = "FEEPAY_DEMO_SMTP_WEB", Value("http://127.0.0.1:1080"), "receiptctl demo", "SMTP sink web address";
    DEMO_EXIT = "FEEPAY_DEMO_EXIT", Unset, "make run", "`1`: stop the services after the demo instead of keeping them running";
    BIN = "FEEPAY_BIN", Described("`target/release`"), "make run", "where the service binaries are";
    BROKER_PORT = "FEEPAY_BROKER_PORT", Value("9092"), "local stack", "port of the local broker";
    SMTP_WEB_PORT = "FEEPAY_SMTP_WEB_PORT", Value("1080"), "local stack", "port of the local SMTP sink's web UI";
    TEST_PG = "FEEPAY_TEST_PG", Value("postgres://postgres@127.0.0.1:5432"), "tests",
        "PostgreSQL server (no database) where each test creates its own database";
    TEST_LOG = "FEEPAY_TEST_LOG", Unset, "tests", "set: tests log what the services they drive do";
    TEST_KAFKA_USERS_DIR = "FEEPAY_TEST_KAFKA_USERS_DIR", Described("`.local/kafka/users` of the checkout"), "tests",
        "the local broker's users' password files (`<user>.password`, made by `make up`), `admin` among them";
}

/// The variable called `name`, if declared.
pub fn find(name: &str) -> Option<&'static Var> {
    ALL.iter().find(|v| v.name == name)
}

/// `FEEPAY_*` names in `vars` that are not declared: misspelt or left over.
pub fn undeclared<'a>(vars: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = vars.into_iter().filter(|n| n.starts_with("FEEPAY_") && find(n).is_none()).collect();
    out.sort_unstable();
    out
}

/// The README's configuration table.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | used by | meaning |\n| --- | --- | --- | --- |\n");
    for v in ALL {
        let default = match v.default {
            Value(d) => format!("`{d}`"),
            Unset => "—".to_string(),
            Described(d) => d.to_string(),
        };
        let _ = writeln!(out, "| `{}` | {} | {} | {} |", v.name, default, v.used_by, v.meaning);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- settings:begin (generated: receiptctl settings --markdown) -->\n";
    const END: &str = "<!-- settings:end -->";

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut names: Vec<_> = ALL.iter().map(|v| v.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a variable is declared twice");
        for n in names {
            assert!(
                n.starts_with("FEEPAY_")
                    && n[7..].chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{n}"
            );
        }
        assert_eq!(undeclared(["FEEPAY_KAFKA_BROKERS", "FEEPAY_KAFKA_BROKER", "PATH"]), vec!["FEEPAY_KAFKA_BROKER"]);
    }

    #[test]
    fn the_readme_table_is_the_generated_one() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let start = readme.find(BEGIN).expect("README marks the generated settings table") + BEGIN.len();
        let end = readme[start..].find(END).expect("README ends the generated settings table") + start;
        let expected = markdown_table();
        assert!(
            readme[start..end] == expected,
            "README's configuration table differs from the declared settings; run `receiptctl settings --markdown` and paste it between the markers:\n{expected}"
        );
    }

    /// Every `"FEEPAY_..."` literal in the services' sources names a declared variable.
    #[test]
    fn every_variable_the_code_names_is_declared() {
        let services = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let mut missing = Vec::new();
        let mut stack = vec![services.to_path_buf(), services.join("../tests")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if !path.ends_with("target") {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("settings/catalog.rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, _) in text.match_indices("\"FEEPAY_") {
                        let name: String = text[i + 1..]
                            .chars()
                            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                            .collect();
                        // `format!("FEEPAY_{}_...")` builds a name; the bench sets service addresses.
                        if !name.ends_with('_') && find(&name).is_none() {
                            missing.push(format!("{}: {name}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "declare these in settings/catalog.rs: {missing:#?}");
    }
}
