//! Least privilege, tried as an attacker would: the public lookup service's database role
//! cannot write anything, an operator's role reads and files requests but cannot change a
//! receipt, scoped admins stay in their scope, the last admin of a scope stays, open mode
//! never comes back, and day filters are Vietnamese days.

use chrono::{TimeZone, Utc};
use feepay_issuer::clock::{FixedClock, SystemClock};
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::gplx_payment;
use feepay_tests::*;
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

/// A login user in one of the service roles, for this test's database.
struct LoginUser {
    name: String,
}

impl LoginUser {
    async fn create(db: &TestDb, group: &str) -> LoginUser {
        let name = format!("{}_{}", group.trim_start_matches("feepay_"), unique());
        db.db.execute_unprepared(&format!("CREATE ROLE {name} LOGIN IN ROLE {group}")).await.expect("login user");
        LoginUser { name }
    }

    fn url(&self, db: &TestDb) -> String {
        db.url.replacen("postgres@", &format!("{}@", self.name), 1)
    }

    async fn connect(&self, db: &TestDb) -> sea_orm::DatabaseConnection {
        feepay_runtime::db::connect(&feepay_runtime::settings::DatabaseSettings::new(self.url(db), 2))
            .await
            .expect("the login user connects")
    }

    /// Drops the user (after the database, which held its grants, is gone).
    async fn drop(self) {
        let admin = feepay_runtime::db::connect(&feepay_runtime::settings::DatabaseSettings::new(
            format!("{}/postgres", pg_server()),
            1,
        ))
        .await
        .expect("server");
        let _ = admin.execute_unprepared(&format!("DROP ROLE IF EXISTS {}", self.name)).await;
    }
}

/// SQLSTATE of a failed statement.
async fn refused(db: &sea_orm::DatabaseConnection, sql: &str) -> Option<String> {
    match db.execute_unprepared(sql).await {
        Ok(_) => None,
        Err(e) => feepay_runtime::db::sqlstate(&e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_service_runs_read_only_and_an_operator_role_cannot_touch_a_receipt() {
    let db = TestDb::new().await;
    let topics = topics();
    let keys = test_keys();
    let issuer =
        spawn_issuer(issuer_settings(&db, &topics, &keys, &format!("issuer-{}", unique())), Arc::new(SystemClock))
            .await;
    let id = format!("PG-{}", unique());
    produce(&producer(), &topics.payments_succeeded, &id, &gplx_payment(&id, Utc::now()), BodyFormat::Protobuf).await;
    let code = eventually(WAIT, "a receipt", || async {
        db.db
            .query_one(feepay_runtime::sql::raw("SELECT lookup_code FROM receipts"))
            .await
            .unwrap()
            .map(|r| r.try_get::<String>("", "lookup_code").unwrap())
    })
    .await;

    // The public service, with its own role and nothing else.
    let lookup_user = LoginUser::create(&db, "feepay_lookup").await;
    let mut settings = lookup_settings(&db);
    settings.database.url = feepay_runtime::settings::Secret::new(lookup_user.url(&db));
    let lookup = spawn_lookup(settings).await;
    let r = reqwest::get(format!("{}/api/v1/receipts/{code}", lookup.base)).await.unwrap();
    assert_eq!(r.status(), 200, "the lookup service works with its read-only role");
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/v1/verify", lookup.base))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "lookupCode": code }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["authentic"], true, "{v}");
    // Whoever takes the service over gets that role: it writes nothing, reads no secret.
    let as_lookup = lookup_user.connect(&db).await;
    for sql in [
        "INSERT INTO operators (name, role, scope, token_sha256, created_by) VALUES ('x', 'admin', '*', 'x', 'x')",
        "UPDATE receipts SET status = 'cancelled'",
        "INSERT INTO signing_certificates (fingerprint, agency_code, serial, subject, issuer, not_before, not_after, key_store, certificate, registered_by) \
         VALUES ('f', 'BN', '1', 's', 'i', now(), now(), 'pkcs12', '\\x00', 'x')",
        "INSERT INTO signing_keys (key_id, agency_code, algorithm, public_key) VALUES ('k', 'BN', 'Ed25519', 'x')",
        "INSERT INTO outbox (producer, topic, key, ce_id, ce_type, ce_source, content_type, payload) VALUES ('x','x','x','x','x','x','x','\\x00')",
        "INSERT INTO correction_requests (receipt, reason, actor) VALUES ('x', 'x', 'x')",
        "SELECT * FROM operators",
        "SELECT * FROM payments",
        "SELECT * FROM deliveries",
        "CREATE TABLE evil (x int)",
    ] {
        assert_eq!(refused(&as_lookup, sql).await.as_deref(), Some("42501"), "the lookup role may not: {sql}");
    }

    // An operator's role: reads, files a correction request; the issuer carries it out.
    let operator_user = LoginUser::create(&db, "feepay_operator").await;
    let as_operator = operator_user.connect(&db).await;
    for sql in [
        "UPDATE receipts SET status = 'cancelled'",
        "INSERT INTO payments (payment_id) VALUES ('x')",
        "DELETE FROM audit_log",
        "UPDATE operators SET role = 'admin'",
        "INSERT INTO operators (name, role, scope, token_sha256, created_by) VALUES ('x', 'admin', '*', 'x', 'x')",
    ] {
        assert_eq!(refused(&as_operator, sql).await.as_deref(), Some("42501"), "the operator role may not: {sql}");
    }
    let mut cli = receiptctl_as(&db, &topics, &operator_user.url(&db), &["receipts", "list"]).await;
    assert_eq!(cli.code, 0, "{cli:?}");
    assert!(cli.stdout.contains(&code), "{cli:?}");
    cli = receiptctl_as(
        &db,
        &topics,
        &operator_user.url(&db),
        &["receipts", "cancel", &code, "--reason", "Thu nhầm hồ sơ", "--yes"],
    )
    .await;
    assert_eq!(cli.code, 0, "the operator's request is carried out by the issuer: {cli:?}");
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts WHERE status = 'cancelled'").await, 1);
    drop((as_lookup, as_operator));
    lookup.running.stop().await;
    issuer.stop().await;
    db.drop().await;
    lookup_user.drop().await;
    operator_user.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_admins_stay_in_scope_the_last_admin_stays_and_open_mode_never_returns() {
    let db = TestDb::new().await;
    let topics = topics();
    let run = |token: Option<String>, args: Vec<&'static str>| {
        let (db, topics) = (&db, &topics);
        async move { receiptctl(db, topics, token.as_deref(), &args).await }
    };
    let token_of = |r: &CliRun| r.stdout.lines().last().unwrap().trim().to_string();
    let root = run(None, vec!["operators", "add", "root", "--role", "admin", "--scope", "*"]).await;
    assert_eq!(root.code, 0, "{root:?}");
    let root_token = token_of(&root);
    let bn =
        run(Some(root_token.clone()), vec!["operators", "add", "bn-admin", "--role", "admin", "--scope", "BN"]).await;
    let bn_token = token_of(&bn);
    // A scoped admin cannot revoke an all-agency admin.
    let r = run(Some(bn_token.clone()), vec!["operators", "revoke", "root", "--reason", "chiếm quyền"]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("wider than or outside"), "{r:?}");
    // The last all-agency admin stays.
    let r = run(Some(root_token.clone()), vec!["operators", "revoke", "root", "--reason", "thử"]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("last admin of scope *"), "{r:?}");
    // The BN admin is its scope's last admin too, but root covers BN: it may go.
    let r = run(Some(root_token.clone()), vec!["operators", "revoke", "bn-admin", "--reason", "chuyển công tác"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let logged = count(
        &db.db,
        "SELECT count(*)::BIGINT AS n FROM audit_log WHERE action = 'operator.revoke' AND details->>'scope' = 'BN'",
    )
    .await;
    assert_eq!(logged, 1);
    // Even with every operator revoked behind the tool's back, open mode does not return.
    db.db.execute_unprepared("UPDATE operators SET revoked_at = now()").await.unwrap();
    let r = run(None, vec!["operators", "whoami"]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("give your token"), "{r:?}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn day_filters_are_days_in_vietnam() {
    let db = TestDb::new().await;
    let topics = topics();
    let keys = test_keys();
    let gmt7 = feepay_domain::numbering::gmt7();
    // 00:30 on 20 November in Vietnam is still 19 November in UTC.
    let at = gmt7.with_ymd_and_hms(2026, 11, 20, 0, 30, 0).unwrap().with_timezone(&Utc);
    let issuer = spawn_issuer(
        issuer_settings(&db, &topics, &keys, &format!("issuer-{}", unique())),
        Arc::new(FixedClock::new(at)),
    )
    .await;
    let id = format!("PG-{}", unique());
    produce(&producer(), &topics.payments_succeeded, &id, &gplx_payment(&id, at), BodyFormat::Protobuf).await;
    eventually(WAIT, "a receipt", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 1).then_some(())
    })
    .await;
    let on = |day: &'static str| {
        let (db, topics) = (&db, &topics);
        async move { receiptctl(db, topics, None, &["receipts", "list", "--from", day, "--to", day]).await }
    };
    assert!(on("2026-11-20").await.stdout.contains(&id), "the receipt is of 20 November in Vietnam");
    assert!(!on("2026-11-19").await.stdout.contains(&id), "and not of 19 November");
    issuer.stop().await;
    db.drop().await;
}
