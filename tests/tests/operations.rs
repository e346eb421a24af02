//! Operations: every metric named by the dashboard, the alerts and the README is exported
//! by a running service; a real Prometheus fires the dead-letter and email-failure alerts
//! against the metrics of a run that provokes them; manifests agree with the settings.

use feepay_proto::v1;
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::{gplx_payment, line, payment, refund};
use feepay_tests::*;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let re = regex_lite::Regex::new(r"\bfeepay_[a-z0-9_]+").expect("regex");
    re.find_iter(text).map(|m| m.as_str().to_string()).filter(|n| !n.ends_with('_')).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exist_and_alerts_fire_against_a_real_run() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let assessor = spawn_assessor(db, topics, &format!("assessor-{}", unique())).await;
    // The SMTP server is down for the whole run, and the schedule is short: emails fail.
    let dead_smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut ns = notifier_settings(db, topics, &format!("notifier-{}", unique()), dead_smtp);
    ns.retry_schedule = vec![Duration::from_millis(500), Duration::from_millis(500)];
    let notifier = spawn_notifier(ns).await;
    let lookup = spawn_lookup(lookup_settings(db)).await;
    let prometheus = Prometheus::start(&[
        ("feepay-issuer", issuer.http_addr),
        ("feepay-assessor", assessor.http_addr),
        ("feepay-notifier", notifier.http_addr),
        ("feepay-lookup", lookup.running.http_addr),
    ])
    .await;
    for s in [&issuer, &assessor, &notifier, &lookup.running] {
        s.wait_ready(WAIT).await;
    }
    // Alerts use increase(): Prometheus must have seen the counters at zero before the run
    // provokes them, or a late first scrape would see no increase at all.
    eventually(WAIT, "Prometheus to scrape every service before the run", || async {
        let up = prometheus.query("up == 1").await.unwrap_or(0);
        let zero = prometheus.query(r#"feepay_notifier_emails_total{outcome="failed"} == 0"#).await.unwrap_or(0);
        let dl = prometheus.query("feepay_issuer_events_dead_lettered_total == 0").await.unwrap_or(0);
        (up == 4 && zero > 0 && dl > 0).then_some(())
    })
    .await;
    let p = producer();
    let u = unique();
    let now = wall_clock();
    for i in 0..5 {
        let id = format!("PG-{u}-{i}");
        produce(&p, &topics.payments_succeeded, &id, &gplx_payment(&id, now), BodyFormat::Protobuf).await;
    }
    let mut waived = payment(
        &format!("PG-{u}-w"),
        "BN.KINHBAC",
        v1::Channel::Counter,
        vec![line("BN-LP-HOTICH-CAICHINH", v1::FeeKind::LePhi, 1, 0)],
        now,
    );
    waived.payer.as_mut().unwrap().categories = vec![v1::BeneficiaryCategory::PoorHousehold as i32];
    produce(&p, &topics.payments_succeeded, &waived.payment_id, &waived, BodyFormat::Protobuf).await;
    let mut mismatch = gplx_payment(&format!("PG-{u}-m"), now);
    mismatch.lines[0].amount = "1000".into();
    mismatch.total_paid = "1000".into();
    produce(&p, &topics.payments_succeeded, &mismatch.payment_id, &mismatch, BodyFormat::Protobuf).await;
    produce(
        &p,
        &topics.payments_refunded,
        &format!("PG-{u}-0"),
        &refund(&format!("RF-{u}"), &format!("PG-{u}-0"), vec![], now),
        BodyFormat::Protobuf,
    )
    .await;
    for i in 0..2 {
        produce_raw(
            &p,
            &topics.payments_succeeded,
            &format!("junk-{i}"),
            b"not an event",
            &[("content-type", "application/protobuf")],
        )
        .await;
    }
    let req = v1::FeeAssessmentRequested {
        assessment_id: format!("AS-{u}"),
        agency_code: "HP.HAIDUONG".into(),
        procedure_code: "1.009994".into(),
        channel: v1::Channel::FullyOnline as i32,
        paid_online: true,
        lines: vec![v1::RequestedLine { fee_code: "LP-DKDN".into(), quantity: 1 }],
        // Within Circular 64/2025's window, whatever the date of the run.
        at: Some(feepay_runtime::convert::ts(
            chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 7, 1, 3, 0, 0).unwrap(),
        )),
        ..Default::default()
    };
    produce(&p, &topics.assessment_requested, &req.assessment_id, &req, BodyFormat::Json).await;

    // Citizens look receipts up (one unknown code among them).
    for code in ["ZZZZ-ZZZZ-ZZZZ-ZZZZ"] {
        let _ = reqwest::get(format!("{}/api/v1/receipts/{code}", lookup.base)).await;
        let _ = reqwest::get(format!("{}/tra-cuu/{code}", lookup.base)).await;
    }
    let _ = reqwest::get(format!("{}/api/v1/keys", lookup.base)).await;

    // The real run: failed emails and dead letters make the alerts fire.
    let firing = eventually(WAIT, "the dead-letter and email-failure alerts to fire", || async {
        let f = prometheus.firing().await;
        (f.iter().any(|a| a == "FeepayDeadLetters") && f.iter().any(|a| a == "FeepayEmailFailureRate")).then_some(f)
    })
    .await;
    assert!(!firing.iter().any(|a| a == "FeepayNumberingGap" || a == "FeepayServiceDown"), "{firing:?}");

    // Every metric the dashboard, the alerts and the README name is exported.
    let mut exported = BTreeSet::new();
    let scraped = eventually(WAIT, "lag and amount series to appear", || async {
        let mut all = String::new();
        for s in [&issuer, &assessor, &notifier, &lookup.running] {
            all.push_str(&s.metrics().await);
        }
        (all.contains("feepay_issuer_consumer_lag_messages{") && all.contains("feepay_notifier_consumer_lag_messages{"))
            .then_some(all)
    })
    .await;
    exported.extend(sample_names(&scraped));
    let root = repo_root();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/dashboards/feepay.json")).unwrap();
    let dashboard_json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is valid JSON");
    assert!(dashboard_json["panels"].as_array().is_some_and(|p| p.len() >= 8));
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let readme_metrics = &readme[readme.find("## Metrics").expect("README has a Metrics section")..];
    let readme_metrics = &readme_metrics[..readme_metrics[3..].find("\n## ").map_or(readme_metrics.len(), |i| i + 3)];
    // (source, text, how many metric names it must at least name, so the check is never vacuous)
    for (source, text, least) in
        [("dashboard", dashboard.as_str(), 15), ("alerts", alerts.as_str(), 5), ("README", readme_metrics, 25)]
    {
        let names = referenced_metrics(text);
        assert!(names.len() >= least, "{source} names only {} metrics: {names:?}", names.len());
        for name in names {
            let found = exported.contains(&name) || exported.contains(&format!("{name}_bucket"));
            assert!(found, "{source} refers to {name}, which no running service exports");
        }
    }
    // Every dashboard query is valid PromQL, and the panels fill with data from this run.
    let mut filled = 0;
    let mut exprs = 0;
    for panel in dashboard_json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            exprs += 1;
            let series =
                prometheus.query(expr).await.unwrap_or_else(|e| panic!("panel {:?}: {expr}: {e}", panel["title"]));
            if series > 0 {
                filled += 1;
            }
        }
    }
    assert!(filled * 10 >= exprs * 7, "only {filled} of {exprs} dashboard queries return data from a real run");
    for s in [lookup.running, notifier, assessor, issuer] {
        s.stop().await;
    }
}

#[test]
fn manifests_and_compose_agree_with_the_settings() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let documented = |key: &str| {
        readme.contains(&format!("`{key}`"))
            || readme.contains(&format!("`{}", key.trim_end_matches(|c: char| c != '_')))
    };
    // Kubernetes
    let mut deployments = 0;
    let mut kinds = BTreeSet::new();
    let mut secrets = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    let mut secret_files = Vec::new();
    for entry in std::fs::read_dir(root.join("deploy/k8s")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            kinds.insert(kind.clone());
            if kind == "ConfigMap" && v["metadata"]["name"] == "feepay-config" {
                for (k, _) in v["data"].as_mapping().unwrap() {
                    let k = k.as_str().unwrap();
                    assert!(documented(k), "configmap key {k} is not documented in the README");
                }
            }
            if kind == "Secret" {
                let name = v["metadata"]["name"].as_str().unwrap().to_string();
                let keys: BTreeSet<String> = v["stringData"]
                    .as_mapping()
                    .unwrap()
                    .iter()
                    .map(|(k, _)| k.as_str().unwrap().to_string())
                    .collect();
                secrets.insert(name, keys);
            }
            if kind == "Deployment" {
                deployments += 1;
                let c = &v["spec"]["template"]["spec"]["containers"][0];
                let port = c["ports"][0]["containerPort"].as_u64().unwrap();
                let name = v["metadata"]["name"].as_str().unwrap();
                let expected = match name {
                    "feepay-issuer" => 9101,
                    "feepay-assessor" => 9102,
                    "feepay-notifier" => 9103,
                    "feepay-lookup" => 9104,
                    other => panic!("unexpected deployment {other}"),
                };
                assert_eq!(port, expected, "{name}: container port matches its FEEPAY_*_HTTP_ADDR");
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
                assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
                assert_eq!(
                    v["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"].as_str().unwrap(),
                    expected.to_string()
                );
                // Least privilege: settings from the shared ConfigMap, secrets only as files from
                // the service's own Secret, the signers in the issuer alone.
                let refs: Vec<&str> = c["envFrom"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .filter_map(|e| e["configMapRef"]["name"].as_str().or(e["secretRef"]["name"].as_str()))
                    .collect();
                assert_eq!(refs, ["feepay-config"], "{name}: no secret in the environment");
                let image = c["image"].as_str().unwrap();
                let pinned = image.contains("@sha256:")
                    || image.rsplit_once(':').is_some_and(|(_, tag)| {
                        tag.split('.').count() == 3 && tag.split('.').all(|n| n.parse::<u32>().is_ok())
                    });
                assert!(pinned, "{name}: image {image} is pinned by digest or a release version");
                let volumes = v["spec"]["template"]["spec"]["volumes"].as_sequence().unwrap();
                let secret_volumes: Vec<&str> =
                    volumes.iter().filter_map(|vol| vol["secret"]["secretName"].as_str()).collect();
                let own = format!("{name}-secrets");
                assert!(secret_volumes.contains(&own.as_str()), "{name} mounts its own secret {own}");
                assert_eq!(
                    secret_volumes.contains(&"feepay-signers"),
                    name == "feepay-issuer",
                    "{name}: only the issuer holds the signers"
                );
                for other in ["feepay-issuer", "feepay-assessor", "feepay-notifier", "feepay-lookup", "feepay-migrator"]
                {
                    if other != name {
                        let theirs = format!("{other}-secrets");
                        assert!(!secret_volumes.contains(&theirs.as_str()), "{name} mounts {theirs}");
                    }
                }
                for e in c["env"].as_sequence().unwrap() {
                    let key = e["name"].as_str().unwrap();
                    assert!(
                        e["valueFrom"]["secretKeyRef"].is_null(),
                        "{name}: {key} comes from a secret as a variable"
                    );
                    if let Some(file) = key.strip_suffix("_FILE") {
                        assert!(documented(key), "{key} is not documented in the README");
                        assert!(documented(file), "{file} is not documented in the README");
                        let path = e["value"].as_str().unwrap();
                        let file_name = path
                            .strip_prefix("/etc/feepay/secrets/")
                            .expect("secret files live in /etc/feepay/secrets");
                        secret_files.push((own.clone(), file_name.to_string()));
                    }
                }
                let grace = v["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
                assert!(grace > 20, "{name}: grace period above the shutdown deadline");
            }
        }
    }
    assert_eq!(deployments, 4);
    assert!(!secret_files.is_empty());
    for (secret, file) in &secret_files {
        let keys = secrets.get(secret).unwrap_or_else(|| panic!("no Secret {secret} in deploy/k8s"));
        assert!(keys.contains(file), "{secret} has no key {file}");
    }
    // The public service holds a read-only database login and nothing else.
    assert_eq!(secrets["feepay-lookup-secrets"], BTreeSet::from(["database-url".to_string()]));
    assert!(!secrets["feepay-lookup-secrets"].is_empty() && secrets.contains_key("feepay-migrator-secrets"));
    for k in ["Deployment", "PodDisruptionBudget", "ConfigMap", "Secret", "Service", "NetworkPolicy"] {
        assert!(kinds.contains(k), "no {k} in deploy/k8s");
    }
    // docker-compose
    let text = std::fs::read_to_string(root.join("deploy/compose/docker-compose.yml")).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for svc in ["kafka", "postgres", "smtp", "prometheus", "grafana", "issuer", "assessor", "notifier", "lookup"] {
        assert!(v["services"][svc].is_mapping(), "compose has no {svc}");
    }
    for (k, _) in v["x-feepay-env"].as_mapping().unwrap() {
        assert!(documented(k.as_str().unwrap()), "compose variable {k:?} is not documented");
    }
}
