//! The broker enforces least privilege: each process has its own SCRAM user with ACLs on
//! its own topics and consumer groups only (`feepay_runtime::kafka::access`). Every other
//! test runs the services that way; this one tries what they must not do, over real
//! connections to Apache Kafka, and the TLS listener.

use feepay_proto::v1;
use feepay_runtime::envelope::BodyFormat;
use feepay_runtime::kafka::access::Role;
use feepay_runtime::settings::{KafkaSettings, Secret};
use feepay_tests::fixtures::gplx_payment;
use feepay_tests::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Sends one record as `k`; the broker's answer.
async fn send(k: &KafkaSettings, topic: &str) -> Result<(), RDKafkaErrorCode> {
    let p: FutureProducer =
        feepay_runtime::kafka::client_config(k).set("message.timeout.ms", "10000").create().expect("producer");
    let body = feepay_runtime::envelope::encode_body(&gplx_payment("PG-acl", wall_clock()), BodyFormat::Protobuf);
    let headers = feepay_runtime::envelope::headers_for::<v1::PaymentSucceeded>(
        "acl",
        "/tests",
        wall_clock(),
        BodyFormat::Protobuf,
    );
    match p.send(FutureRecord::to(topic).key("PG-acl").payload(&body).headers(headers), Duration::from_secs(15)).await {
        Ok(_) => Ok(()),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((e, _)) => panic!("unexpected error producing to {topic}: {e}"),
    }
}

/// Subscribes as `k` in `group` and returns the first error the broker gives, or `None` if
/// a record arrives.
async fn read(k: &KafkaSettings, topic: &str, group: &str) -> Option<RDKafkaErrorCode> {
    let c: StreamConsumer = feepay_runtime::kafka::client_config(k)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let r = match tokio::time::timeout(Duration::from_secs(30), c.recv()).await.expect("an answer within 30 s") {
        Ok(_) => None,
        Err(e) => Some(e.rdkafka_error_code().unwrap_or_else(|| panic!("{e}"))),
    };
    drop(c);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_works_with_its_acls_and_is_refused_everywhere_else() {
    let topics = topics();
    let u = unique();
    // The grants each role gets, for this test's topics and groups.
    for role in Role::ALL {
        grant(role, &topics, &format!("{}-{u}", role.name())).await;
    }
    let as_role = |role: Role| service_kafka(role, &format!("{}-{u}", role.name()));

    // Only the centre publishes payments; a service that could would mint receipts.
    assert_eq!(send(&as_role(Role::Centre), &topics.payments_succeeded).await, Ok(()));
    for role in [Role::Issuer, Role::Notifier, Role::Assessor] {
        assert_eq!(
            send(&as_role(role), &topics.payments_succeeded).await,
            Err(RDKafkaErrorCode::TopicAuthorizationFailed),
            "{role} publishes payments"
        );
    }
    // Only the issuer publishes receipts and writes its own dead letters.
    assert_eq!(send(&as_role(Role::Issuer), &topics.receipts_issued).await, Ok(()));
    assert_eq!(send(&as_role(Role::Issuer), &format!("{}.dlq", topics.payments_succeeded)).await, Ok(()));
    for role in [Role::Centre, Role::Notifier, Role::Assessor] {
        assert_eq!(
            send(&as_role(role), &topics.receipts_issued).await,
            Err(RDKafkaErrorCode::TopicAuthorizationFailed),
            "{role} publishes receipts"
        );
    }
    assert_eq!(
        send(&as_role(Role::Notifier), &format!("{}.dlq", topics.payments_succeeded)).await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed),
        "the notifier writes the issuer's dead letters"
    );

    // Reading: each consumer its own topics in its own group.
    let issuer = as_role(Role::Issuer);
    assert_eq!(
        read(&issuer, &topics.payments_succeeded, &format!("issuer-{u}")).await,
        None,
        "the issuer reads payments"
    );
    assert_eq!(
        read(&issuer, &topics.notifications_sent, &format!("issuer-{u}-2")).await,
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "the issuer reads notifications"
    );
    assert_eq!(
        read(&issuer, &topics.payments_succeeded, &format!("notifier-{u}")).await,
        Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "the issuer joins the notifier's group"
    );
    assert_eq!(
        read(&as_role(Role::Notifier), &topics.payments_succeeded, &format!("notifier-{u}")).await,
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "the notifier reads payments (with their payers)"
    );
    // Dead letters are for their writer alone: no consumer reads another's, and operators
    // read them from PostgreSQL, so no one else has a grant on them.
    assert_eq!(
        read(&as_role(Role::Centre), &format!("{}.dlq", topics.payments_succeeded), &format!("centre-{u}")).await,
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "a centre reads the dead letters (payers of every agency)"
    );

    // No service creates topics: an administrator does.
    let created = feepay_broker_admin::create_topics(
        &issuer,
        &[format!("{}.extra", topics.payments_succeeded)],
        &feepay_broker_admin::TopicSpec::single(1),
    )
    .await;
    assert!(
        matches!(&created, Err(feepay_broker_admin::AdminError::Topic { code, .. }) if *code == RDKafkaErrorCode::TopicAuthorizationFailed),
        "{created:?}"
    );
    // A wrong password is no user at all.
    let mut wrong = as_role(Role::Centre);
    wrong.sasl_password = Secret::new("not-the-password");
    let p: FutureProducer =
        feepay_runtime::kafka::client_config(&wrong).set("message.timeout.ms", "5000").create().expect("producer");
    let r =
        p.send(FutureRecord::<str, str>::to(&topics.payments_succeeded).payload("x"), Duration::from_secs(10)).await;
    assert!(r.is_err(), "a wrong password publishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_carries_the_same_users() {
    let topics = topics();
    grant(Role::Centre, &topics, &format!("centre-{}", unique())).await;
    let mut k = service_kafka(Role::Centre, "centre-tls");
    k.brokers = "127.0.0.1:9095".into();
    k.security_protocol = "sasl_ssl".into();
    k.ssl_ca_location = Some(repo_root().join(".local/kafka/tls/ca.pem").display().to_string());
    assert_eq!(send(&k, &topics.payments_succeeded).await, Ok(()), "a payment over TLS");
    let read: Vec<v1::PaymentSucceeded> =
        read_topic(&topics.payments_succeeded, 1, Duration::from_secs(30), decode_event).await;
    assert_eq!(read[0].payment_id, "PG-acl");
    // A client that does not trust the local CA is refused before any SASL exchange.
    k.ssl_ca_location = Some("/etc/ssl/certs/ca-certificates.crt".into());
    let p: FutureProducer =
        feepay_runtime::kafka::client_config(&k).set("message.timeout.ms", "5000").create().expect("producer");
    let r =
        p.send(FutureRecord::<str, str>::to(&topics.payments_succeeded).payload("x"), Duration::from_secs(10)).await;
    assert!(r.is_err(), "TLS without the broker's CA");
}
