//! The fixture of a test: its own database, topics and signers, cleaned up on drop.

use crate::*;
use feepay_runtime::settings::DatabaseSettings;
use sea_orm::DatabaseConnection;
use std::time::Duration;

/// A fresh database, migrated and loaded with the sample reference data; dropped (the
/// database itself) when the value is, also when the test panics.
pub struct TestDb {
    pub url: String,
    pub db: DatabaseConnection,
}

impl TestDb {
    pub async fn new() -> TestDb {
        if feepay_runtime::settings::opt(&feepay_runtime::settings::catalog::TEST_LOG).is_some() {
            feepay_runtime::lifecycle::init_telemetry();
        }
        let url = format!("{}/feepay_t_{}", pg_server(), unique());
        let settings = DatabaseSettings::new(url.clone(), 8);
        let db = feepay_runtime::db::connect(&settings).await.expect("PostgreSQL reachable (make up)");
        feepay_runtime::db::migrate(&db).await.expect("migrations apply");
        let files = feepay_runtime::refdata::ReferenceFiles::read_dir(&repo_root().join("deploy/reference"))
            .expect("sample files");
        feepay_runtime::refdata::store(&db, &files, "test").await.expect("sample reference data loads");
        register_every_series(&db).await;
        TestDb { url, db }
    }

    pub fn settings(&self) -> DatabaseSettings {
        DatabaseSettings::new(self.url.clone(), 8)
    }
}

/// Records, as the tax authority's acceptance (01/TB-ĐKĐT), a registration of every series of
/// the sample data from 1 June 2025 on, as a centre does before it issues: a test of the
/// unregistered path says so.
pub async fn register_every_series(db: &DatabaseConnection) {
    let loaded = feepay_runtime::refdata::load_latest(db).await.expect("reads").expect("reference data");
    for s in &loaded.reference.series {
        let acceptance = feepay_runtime::series_registrations::Acceptance {
            agency: &s.agency,
            template: &s.template,
            letters: &s.letters,
            notice: "01/TB-ĐKĐT số 1/TB-CT (test)",
            accepted_on: chrono::NaiveDate::from_ymd_opt(2025, 6, 1).expect("date"),
        };
        feepay_runtime::series_registrations::record(db, &acceptance, "test", wall_clock())
            .await
            .expect("registration recorded");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The test's runtime may be unwinding or already gone: a thread with a runtime of
        // its own drops the database (`WITH (FORCE)` ends the pool's connections).
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(feepay_runtime::db::drop_database(&url));
            }
        })
        .join();
    }
}

/// What a test needs: its own database (migrated, sample reference data), its own topics
/// and its own signers. Each part cleans up when dropped, also when the test panics; the
/// services a test starts stop with their [`Running`]. A test states only what is special
/// about it:
///
/// ```ignore
/// let stack = TestStack::new().await;
/// let issuer = stack.issuer().await;
/// let code = stack.issue_one_receipt(WAIT).await;
/// ```
pub struct TestStack {
    pub db: TestDb,
    pub topics: TestTopics,
    pub keys: pki::Signers,
}

impl TestStack {
    pub async fn new() -> TestStack {
        TestStack { db: TestDb::new().await, topics: topics(), keys: pki::test_keys() }
    }

    /// An issuer with the test defaults (a consumer group of its own, the system clock).
    pub async fn issuer(&self) -> Running {
        spawn_default_issuer(&self.db, &self.topics, &self.keys).await
    }

    /// Issuer settings for this stack, to change before [`spawn_issuer`].
    pub fn issuer_settings(&self) -> feepay_issuer::app::IssuerSettings {
        issuer_settings(&self.db, &self.topics, &self.keys, &format!("issuer-{}", unique()))
    }

    /// Publishes one payment and waits for its receipt; see [`issue_one_receipt`].
    pub async fn issue_one_receipt(&self, wait: Duration) -> String {
        issue_one_receipt(&self.db, &self.topics, wait).await
    }

    /// Counts rows of a query returning one BIGINT column `n`.
    pub async fn count(&self, sql: &str) -> i64 {
        count(&self.db.db, sql).await
    }
}
