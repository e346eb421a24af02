//! Least privilege, tried as an attacker would: the public lookup service's database role
//! cannot write anything, an operator's role reads and files requests but cannot change a
//! receipt, a bound operator login is held to its agency scope by the database and by the
//! issuer, scoped admins stay in their scope, the last admin of a scope stays, open mode
//! never comes back, and day filters are Vietnamese days.

use chrono::{TimeZone, Utc};
use feepay_runtime::clock::FixedClock;
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
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let code = stack.issue_one_receipt(WAIT).await;

    // The public service, with its own role and nothing else.
    let lookup_user = LoginUser::create(db, "feepay_lookup").await;
    let mut settings = lookup_settings(db);
    settings.database.url = feepay_runtime::settings::Secret::new(lookup_user.url(db));
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
    let as_lookup = lookup_user.connect(db).await;
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

    // An operator's login: bound to an operator, it reads and files a correction request;
    // the issuer carries it out.
    let operator_user = LoginUser::create(db, "feepay_operator").await;
    let r = receiptctl_as(topics, &operator_user.url(db), None, &["receipts", "list"]).await;
    assert_eq!(r.code, 4, "an operator login bound to no operator is refused: {r:?}");
    assert!(r.stderr.contains("bound to no active operator"), "{r:?}");
    let add = receiptctl(
        db,
        topics,
        None,
        &["operators", "add", "an", "--role", "operator", "--scope", "*", "--db-login", &operator_user.name],
    )
    .await;
    assert_eq!(add.code, 0, "{add:?}");
    let token = add.stdout.lines().last().unwrap().trim().to_string();
    let as_operator = operator_user.connect(db).await;
    for sql in [
        "UPDATE receipts SET status = 'cancelled'",
        "INSERT INTO payments (payment_id) VALUES ('x')",
        "DELETE FROM audit_log",
        "UPDATE operators SET role = 'admin'",
        "UPDATE operators SET scope = '*'",
        "INSERT INTO signing_certificates (fingerprint) VALUES ('f')",
    ] {
        assert_eq!(refused(&as_operator, sql).await.as_deref(), Some("42501"), "the operator role may not: {sql}");
    }
    let url = operator_user.url(db);
    let mut cli = receiptctl_as(topics, &url, Some(&token), &["receipts", "list"]).await;
    assert_eq!(cli.code, 0, "{cli:?}");
    assert!(cli.stdout.contains(&code), "{cli:?}");
    cli = receiptctl_as(
        topics,
        &url,
        Some(&token),
        &["receipts", "notify", &code, "--reason", "Sai họ tên người nộp", "--payer-name", "Trần Văn Bình", "--yes"],
    )
    .await;
    assert_eq!(cli.code, 0, "the operator's request is carried out by the issuer: {cli:?}");
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipt_notices").await, 1);
    drop((as_lookup, as_operator));
    lookup.running.stop().await;
    issuer.stop().await;
    lookup_user.drop().await;
    operator_user.drop().await;
}

/// Lookup codes of the receipts of these payments, in order.
async fn request_outcome(db: &TestDb, code: &str) -> (String, String) {
    let sql = format!("SELECT status, outcome::TEXT AS outcome FROM correction_requests WHERE receipt = '{code}'");
    eventually(WAIT, "the request carried out or refused", || async {
        let row = db.db.query_one(feepay_runtime::sql::raw(&sql)).await.unwrap()?;
        let status: String = row.try_get("", "status").unwrap();
        (status != "pending")
            .then(|| (status, row.try_get::<Option<String>>("", "outcome").unwrap().unwrap_or_default()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_an_operator_login_to_its_scope_and_the_issuer_checks_the_requester() {
    use feepay_proto::v1;
    use feepay_tests::fixtures::{line, payment};
    use sea_orm::TransactionTrait;
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let u = unique();
    let (b1, b2, hp) = (format!("PG-{u}-b1"), format!("PG-{u}-b2"), format!("PG-{u}-hp"));
    let p = producer();
    for (id, agency) in [(&b1, "BN.TTPVHCC"), (&b2, "BN.KINHBAC"), (&hp, "HP.TTPVHCC")] {
        let pay = feepay_tests::fixtures::gplx_payment_to(id, agency, wall_clock());
        produce(&p, &topics.payments_succeeded, id, &pay, BodyFormat::Protobuf).await;
    }
    let codes = lookup_codes(db, &[&b1, &b2, &hp], WAIT).await;
    let (bn1, bn2, hp_code) = (&codes[0], &codes[1], &codes[2]);

    // The schema owner binds an all-agency admin; the admin binds a Bắc Ninh operator.
    let root = receiptctl(db, topics, None, &["operators", "add", "root", "--role", "admin", "--scope", "*"]).await;
    assert_eq!(root.code, 0, "{root:?}");
    let root_token = root.stdout.lines().last().unwrap().trim().to_string();
    let bn_user = LoginUser::create(db, "feepay_operator").await;
    let add = receiptctl(
        db,
        topics,
        Some(&root_token),
        &["operators", "add", "bn-op", "--role", "operator", "--scope", "BN", "--db-login", &bn_user.name],
    )
    .await;
    assert_eq!(add.code, 0, "{add:?}");
    let bn_token = add.stdout.lines().last().unwrap().trim().to_string();

    // With psql rather than receiptctl, the login still sees only Bắc Ninh's rows...
    let as_bn = bn_user.connect(db).await;
    let seen = |sql: &'static str| {
        let as_bn = &as_bn;
        async move {
            let rows = as_bn.query_all(feepay_runtime::sql::raw(sql)).await.unwrap();
            rows.iter().map(|r| r.try_get::<String>("", "agency_code").unwrap()).collect::<Vec<_>>()
        }
    };
    let receipts = seen("SELECT agency_code FROM receipts ORDER BY agency_code").await;
    assert_eq!(receipts, ["BN.KINHBAC", "BN.TTPVHCC"], "Hải Phòng's receipt is invisible");
    assert_eq!(seen("SELECT agency_code FROM payments ORDER BY agency_code").await.len(), 2);
    // ...files no request outside its scope, cannot widen itself, and cannot sign the audit
    // log with another name.
    let outside = format!(
        "INSERT INTO correction_requests (receipt, kind, reason, actor) VALUES ('{hp_code}', 'notify', 'Sai họ tên', 'bn-op')"
    );
    assert_eq!(refused(&as_bn, &outside).await.as_deref(), Some("42501"), "out of scope");
    for sql in [
        "INSERT INTO operators (name, role, scope, token_sha256, created_by) VALUES ('x', 'admin', '*', 'x', 'x')",
        "UPDATE operators SET scope = '*' WHERE name = 'bn-op'",
        "UPDATE operators SET role = 'admin' WHERE name = 'bn-op'",
    ] {
        assert_eq!(refused(&as_bn, sql).await.as_deref(), Some("42501"), "{sql}");
    }
    as_bn
        .execute_unprepared(
            "INSERT INTO audit_log (actor, action, target, db_login) VALUES ('root', 'x', 'y', 'postgres')",
        )
        .await
        .unwrap();
    let stamped = count(
        &db.db,
        &format!("SELECT count(*)::BIGINT AS n FROM audit_log WHERE actor = 'root' AND db_login = '{}'", bn_user.name),
    )
    .await;
    assert_eq!(stamped, 1, "the database stamps the real login");

    // The audit log is scoped too: the database derives each row's agency from what it is
    // about, and the login reads Bắc Ninh's rows and its own, not Hải Phòng's (whose lookup
    // codes would open the receipts).
    for code in [hp_code, bn1] {
        feepay_runtime::audit::record(
            &db.db,
            feepay_runtime::audit::Entry {
                actor: "root",
                action: "receipt.show",
                target: code,
                reason: None,
                details: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    }
    let derived = count(
        &db.db,
        &format!(
            "SELECT count(*)::BIGINT AS n FROM audit_log WHERE target = '{hp_code}' AND agency_code = 'HP.TTPVHCC'"
        ),
    )
    .await;
    assert_eq!(derived, 1, "the agency comes from the receipt");
    let visible = |code: String| {
        let as_bn = &as_bn;
        async move { count(as_bn, &format!("SELECT count(*)::BIGINT AS n FROM audit_log WHERE target = '{code}'")).await }
    };
    assert_eq!(visible(hp_code.clone()).await, 0, "another agency's audit rows are invisible");
    assert_eq!(visible(bn1.clone()).await, 1, "its own agency's are visible");
    assert_eq!(visible("y".into()).await, 1, "and the rows it wrote itself");

    // An email that failed can be resent, never marked sent; an auditor changes nothing.
    let failed = format!("N-{u}-bn");
    db.db
        .execute_unprepared(&format!(
            "INSERT INTO deliveries (notification_id, kind, payment_id, agency_code, recipient, status, attempts, last_error, message_id, event_pb) \
             VALUES ('{failed}', 'receipt_issued', '{b1}', 'BN.TTPVHCC', 'a@example.vn', 'failed', 5, '550 mailbox unavailable', 'm', '\\x')"
        ))
        .await
        .unwrap();
    let hide = format!("UPDATE deliveries SET status = 'sent', last_error = NULL WHERE notification_id = '{failed}'");
    assert_eq!(refused(&as_bn, &hide).await.as_deref(), Some("42501"), "a failed email cannot be marked sent");
    let auditor = LoginUser::create(db, "feepay_operator").await;
    let add = receiptctl(
        db,
        topics,
        Some(&root_token),
        &["operators", "add", "bn-audit", "--role", "auditor", "--scope", "BN", "--db-login", &auditor.name],
    )
    .await;
    assert_eq!(add.code, 0, "{add:?}");
    let as_auditor = auditor.connect(db).await;
    let resend = format!(
        "UPDATE deliveries SET status = 'queued', attempts = 0, last_error = NULL, next_attempt_at = now() WHERE notification_id = '{failed}'"
    );
    let by_auditor = as_auditor.execute_unprepared(&resend).await.unwrap().rows_affected();
    assert_eq!(by_auditor, 0, "an auditor reads, it does not requeue");
    assert_eq!(as_bn.execute_unprepared(&resend).await.unwrap().rows_affected(), 1, "an operator resends");

    // A replay is made only of a dead letter the owning service put on record: the login
    // cannot write a retry request itself (the way a made-up payment became a signed
    // receipt), sees only its agencies' dead letters, and an edited body the service finds
    // to be another event (another payment id, another amount) is refused.
    let not_a_replay = "INSERT INTO parked_events (service, topic, partition, \"offset\", record_key, headers, payload, content_hash, subject, agency_code, reason_code, reason, status) \
         VALUES ('feepay_issuer', 'x', 0, 0, '\\x', '[]', '\\x', 'h', 'payment:x', 'BN.TTPVHCC', 'dead_letter_replay', 'x', 'retry_requested')";
    assert_eq!(refused(&as_bn, not_a_replay).await.as_deref(), Some("42501"), "no retry request of its own");
    let forged_dl = "INSERT INTO dead_letters (service, topic, partition, \"offset\", record_key, headers, headers_truncated, payload, payload_sha256, agency_code, reason_code, reason, dead_lettered_at) \
         VALUES ('feepay_issuer', 'x', 0, 0, '\\x', '[]', false, '\\x', 'h', 'BN.TTPVHCC', 'invalid', 'x', now())";
    assert_eq!(refused(&as_bn, forged_dl).await.as_deref(), Some("42501"), "no dead letter of its own");
    let p = producer();
    let invalid = |id: &str, agency: &str| {
        let mut e = payment(
            id,
            agency,
            v1::Channel::Counter,
            vec![line("LP-GPLX", v1::FeeKind::LePhi, 1, 135_000)],
            wall_clock(),
        );
        e.payer.as_mut().unwrap().personal_id = "12345".into();
        e
    };
    let (bn_bad, hp_bad) = (format!("PG-{u}-dlbn"), format!("PG-{u}-dlhp"));
    produce(&p, &topics.payments_succeeded, &bn_bad, &invalid(&bn_bad, "BN.TTPVHCC"), BodyFormat::Json).await;
    produce(&p, &topics.payments_succeeded, &hp_bad, &invalid(&hp_bad, "HP.TTPVHCC"), BodyFormat::Json).await;
    let on_record = |id: String| async move {
        eventually(WAIT, "the issuer to put the dead letter on record", || async {
            let row = db
                .db
                .query_one(feepay_runtime::sql::raw(format!(
                    "SELECT id FROM dead_letters WHERE subject = 'payment:{id}'"
                )))
                .await
                .unwrap()?;
            Some(row.try_get::<i64>("", "id").unwrap())
        })
        .await
    };
    let (bn_dl, hp_dl) = (on_record(bn_bad.clone()).await, on_record(hp_bad.clone()).await);
    let mine =
        count(&as_bn, &format!("SELECT count(*)::BIGINT AS n FROM dead_letters WHERE id IN ({bn_dl}, {hp_dl})")).await;
    assert_eq!(mine, 1, "Hải Phòng's dead letter (its payer) is invisible to Bắc Ninh");
    use feepay_runtime::parking::{request_replay, ReplayAsked};
    let json = |e: &v1::PaymentSucceeded| feepay_runtime::envelope::encode_body(e, BodyFormat::Json);
    let mut fixed_hp = invalid(&hp_bad, "HP.TTPVHCC");
    fixed_hp.payer = Some(feepay_tests::fixtures::payer("x"));
    let outside =
        request_replay(&as_bn, hp_dl, Some((&json(&fixed_hp), "application/json")), "thử", "bn-op", false).await;
    assert_eq!(outside.unwrap(), ReplayAsked::Unknown, "out of scope looks like unknown");
    // The made-up payment, as an edit of Bắc Ninh's dead letter: the database takes the
    // request (it is of a real dead letter in scope), the issuer refuses it.
    let made_up_id = format!("PG-{u}-madeup");
    let mut made_up = payment(
        &made_up_id,
        "BN.TTPVHCC",
        v1::Channel::Counter,
        vec![line("LP-GPLX", v1::FeeKind::LePhi, 1, 135_000)],
        wall_clock(),
    );
    made_up.payer = Some(feepay_tests::fixtures::payer("x"));
    let mut cheaper = invalid(&bn_bad, "BN.TTPVHCC");
    cheaper.payer = Some(feepay_tests::fixtures::payer("x"));
    cheaper.lines[0].amount = "1000".into();
    cheaper.total_paid = "1000".into();
    let mut disguised_ids = Vec::new();
    for (edit, again) in [(&made_up, false), (&cheaper, true)] {
        match request_replay(&as_bn, bn_dl, Some((&json(edit), "application/json")), "thử", "kẻ giả danh", again).await
        {
            Ok(ReplayAsked::Requested(id)) => disguised_ids.push(id),
            other => panic!("in scope, the database takes the request: {other:?}"),
        }
    }
    for (id, differs) in disguised_ids.iter().zip(["subject payment:", "total_paid \"135000\" became \"1000\""]) {
        let sql = format!("SELECT status, reason_code, reason FROM parked_events WHERE id = {id}");
        let (status, reason_code, reason) = eventually(WAIT, "the issuer to look at the replay", || async {
            let row = db.db.query_one(feepay_runtime::sql::raw(&sql)).await.unwrap()?;
            let status: String = row.try_get("", "status").unwrap();
            (status != "retry_requested").then(|| {
                (
                    status,
                    row.try_get::<String>("", "reason_code").unwrap(),
                    row.try_get::<String>("", "reason").unwrap(),
                )
            })
        })
        .await;
        assert_eq!((status.as_str(), reason_code.as_str()), ("parked", "replay_refused"), "{reason}");
        assert!(reason.contains(differs), "{reason}");
    }
    let issued = count(
        &db.db,
        &format!("SELECT count(*)::BIGINT AS n FROM receipts WHERE payment_id IN ('{made_up_id}', '{bn_bad}')"),
    )
    .await;
    assert_eq!(issued, 0, "no receipt for a made-up or cheaper payment slipped in as a replay");
    let audited = count(
        &db.db,
        &format!(
            "SELECT count(*)::BIGINT AS n FROM audit_log WHERE action = 'dead_letters.replay' AND target = '{bn_dl}' AND actor = 'bn-op' AND agency_code = 'BN.TTPVHCC' AND db_login = '{}'",
            bn_user.name
        ),
    )
    .await;
    assert_eq!(audited, 2, "each request audited with the login's operator and the dead letter's agency");
    let disguised = disguised_ids[0];

    // A parked event moves only through feepay_request_retry: the login cannot mark it
    // resolved (which would make a payment vanish and clear its alert) or name another
    // requester; the database names the operator and writes the audit row.
    for sql in [
        format!("UPDATE parked_events SET status = 'resolved' WHERE id = {disguised}"),
        format!("UPDATE parked_events SET retry_requested_by = 'root' WHERE id = {disguised}"),
    ] {
        assert_eq!(refused(&as_bn, &sql).await.as_deref(), Some("42501"), "{sql}");
    }
    let as_bn_ref = &as_bn;
    let ask = |id: i64| async move {
        feepay_runtime::parking::request_retry(as_bn_ref, id, "đã khắc phục", "kẻ giả danh").await.unwrap()
    };
    assert_eq!(ask(disguised).await, feepay_runtime::parking::RetryAsked::Requested);
    let by = db
        .db
        .query_one(feepay_runtime::sql::raw(format!(
            "SELECT retry_requested_by FROM parked_events WHERE id = {disguised}"
        )))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "retry_requested_by")
        .unwrap();
    assert_eq!(by, "bn-op", "the requester is the login's operator, not the name the client gave");
    let audited = count(
        &db.db,
        &format!(
            "SELECT count(*)::BIGINT AS n FROM audit_log WHERE action = 'parked.retry' AND target = '{disguised}' AND actor = 'bn-op' AND db_login = '{}'",
            bn_user.name
        ),
    )
    .await;
    assert_eq!(audited, 1, "the retry and its audit row commit together");
    assert_eq!(ask(i64::MAX).await, feepay_runtime::parking::RetryAsked::Unknown);

    // receiptctl on that login: another operator's token is refused, its own works.
    let url = bn_user.url(db);
    let r = receiptctl_as(topics, &url, Some(&root_token), &["receipts", "list"]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("is bound to operator bn-op"), "{r:?}");
    let r = receiptctl_as(
        topics,
        &url,
        Some(&bn_token),
        &["receipts", "replace", bn1, "--reason", "Sai số định danh người nộp", "--payer-id", "027190001235", "--yes"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(request_outcome(db, bn1).await.0, "done");

    // A request filed before its operator was revoked is refused by the issuer, which checks
    // the requester where the key is: the revocation commits before the request does.
    let txn = as_bn.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "INSERT INTO correction_requests (receipt, kind, reason, actor) VALUES ('{bn2}', 'replace', 'Sai số định danh', 'bn-op')"
    ))
    .await
    .unwrap();
    db.db.execute_unprepared("UPDATE operators SET revoked_at = now() WHERE name = 'bn-op'").await.unwrap();
    txn.commit().await.unwrap();
    let (status, outcome) = request_outcome(db, bn2).await;
    assert_eq!(status, "refused", "{outcome}");
    assert!(outcome.contains("was revoked"), "{outcome}");
    let issued = count(
        &db.db,
        &format!("SELECT count(*)::BIGINT AS n FROM receipts WHERE lookup_code = '{bn2}' AND status = 'issued'"),
    )
    .await;
    assert_eq!(issued, 1, "the receipt stays issued");
    drop(as_bn);
    issuer.stop().await;
    bn_user.drop().await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn day_filters_are_days_in_vietnam() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let gmt7 = feepay_domain::numbering::gmt7();
    // 00:30 on 20 November in Vietnam is still 19 November in UTC.
    let at = gmt7.with_ymd_and_hms(2026, 11, 20, 0, 30, 0).unwrap().with_timezone(&Utc);
    let issuer =
        spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), Arc::new(FixedClock::new(at)))
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_job_erases_personal_data_past_its_period_and_nothing_else() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let u = unique();
    let p = producer();
    let ids = [format!("PG-{u}-old"), format!("PG-{u}-new")];
    for id in &ids {
        let mut pay = gplx_payment(id, wall_clock());
        pay.payer.as_mut().unwrap().email = format!("{}@example.vn", id.to_lowercase());
        produce(&p, &topics.payments_succeeded, id, &pay, BodyFormat::Protobuf).await;
    }
    let codes = lookup_codes(db, &[&ids[0], &ids[1]], WAIT).await;
    let (old_code, new_code) = (codes[0].clone(), codes[1].clone());
    let exec = |sql: String| async move { db.db.execute_unprepared(&sql).await.unwrap() };
    // Old and new rows of every kind: the old ones past their period.
    exec(format!("UPDATE receipts SET issued_at = now() - interval '40 days' WHERE lookup_code = '{old_code}'")).await;
    for (id, age) in [(format!("N-{u}-old"), "40 days"), (format!("N-{u}-new"), "1 day")] {
        exec(format!(
            "INSERT INTO deliveries (notification_id, kind, payment_id, agency_code, recipient, status, attempts, message_id, event_pb, created_at, sent_at) \
             VALUES ('{id}', 'receipt_issued', 'p', 'BN.TTPVHCC', 'a.nguyen@example.vn', 'sent', 1, 'm', '\\x0a01', now() - interval '{age}', now() - interval '{age}')"
        ))
        .await;
    }
    for tag in ["old", "new"] {
        let id = format!("PG-{u}-dl{tag}");
        let mut bad = gplx_payment(&id, wall_clock());
        bad.payer.as_mut().unwrap().personal_id = "12345".into();
        produce(&p, &topics.payments_succeeded, &id, &bad, BodyFormat::Json).await;
    }
    eventually(WAIT, "both dead letters on record", || async {
        (count(
            &db.db,
            &format!("SELECT count(*)::BIGINT AS n FROM dead_letters WHERE subject LIKE 'payment:PG-{u}-dl%'"),
        )
        .await
            == 2)
            .then_some(())
    })
    .await;
    exec(format!(
        "UPDATE dead_letters SET dead_lettered_at = now() - interval '100 days' WHERE subject = 'payment:PG-{u}-dlold'"
    ))
    .await;
    let document_before: String = db
        .db
        .query_one(feepay_runtime::sql::raw(format!("SELECT document FROM receipts WHERE lookup_code = '{old_code}'")))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "document")
        .unwrap();

    let job = LoginUser::create(db, "feepay_retention").await;
    let url = job.url(db);
    let due = receiptctl_as(topics, &url, None, &["retention", "due"]).await;
    assert_eq!(due.code, 0, "{due:?}");
    for line in ["email of a delivery", "email on a receipt", "dead letter's record"] {
        let row = due.stdout.lines().find(|l| l.starts_with(line)).unwrap_or_else(|| panic!("{line}: {due:?}"));
        assert!(row.trim_end().ends_with(" 1"), "one {line} due: {due:?}");
    }
    // An operator's login reads but cannot erase: the database decides.
    let operator = LoginUser::create(db, "feepay_operator").await;
    let refused = receiptctl_as(topics, &operator.url(db), None, &["retention", "erase", "--yes"]).await;
    assert_ne!(refused.code, 0, "{refused:?}");
    let erased = receiptctl_as(topics, &url, None, &["retention", "erase", "--yes"]).await;
    assert_eq!(erased.code, 0, "{erased:?}");
    for line in ["deliveries: 1 erased", "receipts: 1 erased", "dead_letters: 1 erased"] {
        assert!(erased.stdout.contains(line), "{line}: {erased:?}");
    }

    // The old rows hold no personal data any more; the new ones are untouched.
    let one = |sql: String| async move {
        let row = db.db.query_one(feepay_runtime::sql::raw(sql)).await.unwrap().unwrap();
        row.try_get::<Option<String>>("", "v").unwrap()
    };
    let recipient = |tag: &str| format!("SELECT recipient AS v FROM deliveries WHERE notification_id = 'N-{u}-{tag}'");
    assert_eq!(one(recipient("old")).await, None);
    assert_eq!(one(recipient("new")).await.as_deref(), Some("a.nguyen@example.vn"));
    let email_of = |code: &str| {
        let code = code.to_string();
        async move {
            let row = db
                .db
                .query_one(feepay_runtime::sql::raw(format!(
                    "SELECT receipt_pb, document FROM receipts WHERE lookup_code = '{code}'"
                )))
                .await
                .unwrap()
                .unwrap();
            let pb: Vec<u8> = row.try_get("", "receipt_pb").unwrap();
            let r = <feepay_proto::v1::Receipt as prost::Message>::decode(pb.as_slice()).unwrap();
            (r.payer.unwrap().email, row.try_get::<String>("", "document").unwrap())
        }
    };
    let (old_email, old_document) = email_of(&old_code).await;
    assert_eq!(old_email, "", "the old receipt's stored email is cleared");
    assert_eq!(email_of(&new_code).await.0, format!("{}@example.vn", ids[1].to_lowercase()));
    assert_eq!(old_document, document_before, "the signed document is the legal content: untouched");
    let payload = |tag: &str| {
        format!("SELECT encode(payload, 'hex') AS v FROM dead_letters WHERE subject = 'payment:PG-{u}-dl{tag}'")
    };
    assert_eq!(one(payload("old")).await.as_deref(), Some(""));
    assert_ne!(one(payload("new")).await.as_deref(), Some(""));
    let audited = count(
        &db.db,
        &format!(
            "SELECT count(*)::BIGINT AS n FROM audit_log WHERE action = 'retention.erase' AND db_login = '{}' AND (details->'erased'->>'receipts')::INT = 1",
            job.name
        ),
    )
    .await;
    assert_eq!(audited, 1, "the run is in the audit log with what it erased");
    // Nothing is due any more: a second run erases nothing.
    let again = receiptctl_as(topics, &url, None, &["retention", "erase", "--yes"]).await;
    assert!(again.stdout.contains("deliveries: 0 erased") && again.stdout.contains("receipts: 0 erased"), "{again:?}");
    issuer.stop().await;
    job.drop().await;
    operator.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_admin_cannot_bring_back_an_operator_a_wider_admin_revoked() {
    let db = TestDb::new().await;
    let topics = topics();
    let token_of = |r: &CliRun| r.stdout.lines().last().unwrap().trim().to_string();
    let root = receiptctl(&db, &topics, None, &["operators", "add", "root", "--role", "admin", "--scope", "*"]).await;
    let root_token = token_of(&root);
    let admin_user = LoginUser::create(&db, "feepay_operator").await;
    let bn_admin = receiptctl(
        &db,
        &topics,
        Some(&root_token),
        &["operators", "add", "bn-admin", "--role", "admin", "--scope", "BN", "--db-login", &admin_user.name],
    )
    .await;
    assert_eq!(bn_admin.code, 0, "{bn_admin:?}");
    for name in ["bn-a", "bn-b"] {
        let r = receiptctl(
            &db,
            &topics,
            Some(&root_token),
            &["operators", "add", name, "--role", "operator", "--scope", "BN"],
        )
        .await;
        assert_eq!(r.code, 0, "{r:?}");
    }
    let revoked =
        receiptctl(&db, &topics, Some(&root_token), &["operators", "revoke", "bn-a", "--reason", "nghỉ việc"]).await;
    assert_eq!(revoked.code, 0, "{revoked:?}");
    let as_admin = admin_user.connect(&db).await;
    let back = as_admin
        .execute_unprepared("UPDATE operators SET revoked_at = NULL WHERE name = 'bn-a'")
        .await
        .map(|r| r.rows_affected());
    assert!(matches!(back, Ok(0) | Err(_)), "the revoked operator came back: {back:?}");
    let still =
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM operators WHERE name = 'bn-a' AND revoked_at IS NOT NULL")
            .await;
    assert_eq!(still, 1);
    // Revoking an active operator of its scope is what it may do.
    let revoke = as_admin
        .execute_unprepared("UPDATE operators SET revoked_at = now() WHERE name = 'bn-b'")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(revoke, 1);
    // With operators in place, the schema owner still migrates without a token (the
    // deployment's migration job has none).
    let migrated = receiptctl(&db, &topics, None, &["migrate"]).await;
    assert_eq!(migrated.code, 0, "{migrated:?}");
    drop(as_admin);
    admin_user.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_of_its_agency_revokes_a_certificate_and_the_database_names_who() {
    let db = TestDb::new().await;
    let topics = topics();
    for (fp, agency) in [("fp-bn", "BN.TTPVHCC"), ("fp-hp", "HP.TTPVHCC")] {
        db.db
            .execute_unprepared(&format!(
                "INSERT INTO signing_certificates (fingerprint, agency_code, serial, subject, issuer, not_before, \
                 not_after, key_store, certificate, registered_by) VALUES ('{fp}', '{agency}', '01', 'CN=x', 'CN=ca', \
                 now() - interval '1 year', now() + interval '1 year', 'pkcs12', '\\x00', 'test')"
            ))
            .await
            .unwrap();
    }
    let token_of = |r: &CliRun| r.stdout.lines().last().unwrap().trim().to_string();
    let root = receiptctl(&db, &topics, None, &["operators", "add", "root", "--role", "admin", "--scope", "*"]).await;
    let root_token = token_of(&root);
    let (op_user, admin_user) =
        (LoginUser::create(&db, "feepay_operator").await, LoginUser::create(&db, "feepay_operator").await);
    for (name, role, login) in [("bn-op", "operator", &op_user.name), ("bn-admin", "admin", &admin_user.name)] {
        let r = receiptctl(
            &db,
            &topics,
            Some(&root_token),
            &["operators", "add", name, "--role", role, "--scope", "BN", "--db-login", login],
        )
        .await;
        assert_eq!(r.code, 0, "{r:?}");
    }
    let revoke = |fp: &str, at: &str| {
        format!("SELECT * FROM feepay_revoke_certificate('{fp}', {at}, 'key_compromise', 'lộ khóa', 'someone-else')")
    };
    // An operator (not admin) may not, through the function or around it.
    let as_op = op_user.connect(&db).await;
    assert_eq!(refused(&as_op, &revoke("fp-bn", "now()")).await.as_deref(), Some("42501"));
    let direct = "INSERT INTO certificate_revocations (fingerprint, revoked_at, reason, recorded_by) \
                  VALUES ('fp-bn', now(), 'key_compromise', 'bn-op')";
    assert_eq!(refused(&as_op, direct).await.as_deref(), Some("42501"));
    // Bắc Ninh's admin: not Hải Phòng's certificate, not in the future, and its own name.
    let as_admin = admin_user.connect(&db).await;
    let outcome = |sql: String| {
        let as_admin = &as_admin;
        async move {
            let row = as_admin.query_one(feepay_runtime::sql::raw(&sql)).await.unwrap().unwrap();
            row.try_get::<String>("", "outcome").unwrap()
        }
    };
    assert_eq!(outcome(revoke("fp-hp", "now()")).await, "unknown");
    assert_eq!(refused(&as_admin, &revoke("fp-bn", "now() + interval '1 hour'")).await.as_deref(), Some("22023"));
    assert_eq!(refused(&as_admin, "DELETE FROM certificate_revocations").await.as_deref(), Some("42501"));
    assert_eq!(outcome(revoke("fp-bn", "now()")).await, "revoked");
    assert_eq!(outcome(revoke("fp-bn", "now()")).await, "already_revoked");
    assert_eq!(
        count(
            &db.db,
            &format!(
                "SELECT count(*)::BIGINT AS n FROM audit_log WHERE action = 'certificates.revoke' AND target = 'fp-bn' \
                 AND actor = 'bn-admin' AND agency_code = 'BN.TTPVHCC' AND db_login = '{}'",
                admin_user.name
            )
        )
        .await,
        1,
        "the audit row names the operator of the login, not the name the caller gave"
    );
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM certificate_revocations WHERE recorded_by = 'bn-admin'").await,
        1
    );
    drop((as_op, as_admin));
    op_user.drop().await;
    admin_user.drop().await;
}
