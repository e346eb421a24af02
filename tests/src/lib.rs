//! Helpers for the cross-service tests: `stack` (a test's own database, topics and
//! signers — `TestStack`), `broker` (producing and reading events), `services` (the
//! services in process or as binaries, and receiptctl), `sinks` (an SMTP sink and a
//! Prometheus server of a test's own), `browser` (headless Chromium), `checks` (every series
//! verified), `pki` (the test CA and signers), `process` (private PostgreSQL, processes),
//! `fixtures` (payments and refunds).
//!
//! The tests need the local stack (`make up`): broker on 127.0.0.1:9092, PostgreSQL on
//! 127.0.0.1:5432 and the SMTP sink on 127.0.0.1:1025 (web API on 1080).

pub mod broker;
pub mod browser;
pub mod checks;
pub mod fixtures;
pub mod kafka;
pub mod pki;
pub mod process;
pub mod services;
pub mod sinks;
pub mod stack;

pub use broker::*;
pub use browser::*;
pub use checks::*;
pub use services::*;
pub use sinks::*;
pub use stack::*;

pub use pki::{test_keys, xmlsec_verify, xmlsec_verify_with};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

/// The time outside the services (the payment platform's, the operator's): the system
/// clock, read through the runtime's one reader.
pub fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    use feepay_runtime::clock::Clock as _;
    feepay_runtime::clock::SystemClock.now()
}

/// Broker address used by the tests (`FEEPAY_KAFKA_BROKERS`, default 127.0.0.1:9092).
pub fn brokers() -> String {
    feepay_runtime::settings::get(&feepay_runtime::settings::catalog::KAFKA_BROKERS)
}

/// Server URL without database (`FEEPAY_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`).
pub fn pg_server() -> String {
    feepay_runtime::settings::get(&feepay_runtime::settings::catalog::TEST_PG)
}

/// A short unique id for names.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Polls `check` until it returns `Some` or the timeout passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
