//! A private Apache Kafka cluster for one test (the fault suite): N KRaft nodes, each broker
//! and controller, on one machine, from the jars and users `make up` installed, with the
//! configuration template of the local stack (`deploy/local/kafka/server.properties.in`).
//! Each node's client listener can be advertised at another port (a fault-injecting proxy);
//! replication and the quorum talk directly. Nodes can be killed, stopped and started
//! again; dropping the cluster kills every node and removes its data.

use crate::process::Proc;
use crate::{free_port, kafka_users_dir, repo_root, unique};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One node's ports and files.
pub struct KafkaNode {
    pub id: u32,
    pub client_port: u16,
    pub advertised_port: u16,
    pub controller_port: u16,
    pub replication_port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

pub struct PrivateKafka {
    pub nodes: Vec<KafkaNode>,
    pub dir: PathBuf,
    heap: String,
}

fn libs() -> PathBuf {
    let pom = std::fs::read_to_string(repo_root().join("deploy/local/kafka/pom.xml")).expect("pom.xml");
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("kafka.version in pom.xml")
        .to_string();
    let libs = repo_root().join(format!(".tools/kafka-{version}/libs"));
    assert!(libs.is_dir(), "{} missing: make up installs Kafka", libs.display());
    libs
}

fn java(heap: &str) -> Command {
    let mut c = Command::new("java");
    c.arg(format!("-Xms{heap}"))
        .arg(format!("-Xmx{heap}"))
        .arg("-XX:+UseG1GC")
        .arg("-cp")
        .arg(format!("{}/*", libs().display()))
        .arg(format!("-Dlog4j2.configurationFile={}", repo_root().join("deploy/local/kafka/log4j2.yaml").display()));
    c
}

/// The users of the local stack: (name, password).
fn users() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(kafka_users_dir()).expect("the broker users (make up)") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "password") {
            let name = path.file_stem().expect("stem").to_string_lossy().into_owned();
            v.push((name, std::fs::read_to_string(&path).expect("password").trim().to_string()));
        }
    }
    v
}

impl PrivateKafka {
    /// Formats and starts `n` nodes (replication factor and min.insync.replicas follow:
    /// 3 nodes → 3 and 2), node `i`'s client listener advertised at `advertise(i)` (its
    /// own port when `None`), with `heap` per JVM. Returns once every broker is registered.
    pub fn start(n: usize, heap: &str, advertise: impl Fn(usize) -> Option<u16>) -> PrivateKafka {
        let dir = std::env::temp_dir().join(format!("feepay-kafka-{}", unique()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut nodes: Vec<KafkaNode> = (0..n)
            .map(|i| {
                let client_port = free_port();
                KafkaNode {
                    id: i as u32 + 1,
                    client_port,
                    advertised_port: advertise(i).unwrap_or(client_port),
                    controller_port: free_port(),
                    replication_port: free_port(),
                    dir: dir.join(format!("node{}", i + 1)),
                    proc: None,
                }
            })
            .collect();
        let voters: Vec<String> = nodes.iter().map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port)).collect();
        let template =
            std::fs::read_to_string(repo_root().join("deploy/local/kafka/server.properties.in")).expect("template");
        let users = users();
        let admin = users.iter().find(|(u, _)| u == "admin").map(|(_, p)| p.clone()).expect("admin user");
        let (replication, min_isr) = if n >= 3 { ("3", "2") } else { ("1", "1") };
        let cluster_id = {
            let out = java("256m").arg("kafka.tools.StorageTool").arg("random-uuid").output().expect("java runs");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        for node in &mut nodes {
            std::fs::create_dir_all(&node.dir).expect("node dir");
            let props = template
                .replace("@NODE_ID@", &node.id.to_string())
                .replace("@VOTERS@", &voters.join(","))
                .replace("@CLIENT_PORT@", &node.client_port.to_string())
                .replace("@ADVERTISED_PORT@", &node.advertised_port.to_string())
                .replace("@REPLICATION_PORT@", &node.replication_port.to_string())
                .replace("@CONTROLLER_PORT@", &node.controller_port.to_string())
                .replace("@EXTRA_LISTENERS@", "")
                .replace("@EXTRA_ADVERTISED@", "")
                .replace("@ADMIN_PASSWORD@", &admin)
                .replace("@DATA_DIR@", &node.dir.join("data").display().to_string())
                .replace("@REPLICATION@", replication)
                .replace("@MIN_ISR@", min_isr)
                .replace("@CONSUMER_SESSION_MS@", "10000");
            std::fs::write(node.dir.join("server.properties"), props).expect("properties");
            let mut format = java("256m");
            format
                .arg("kafka.tools.StorageTool")
                .arg("format")
                .arg("-t")
                .arg(&cluster_id)
                .arg("-c")
                .arg(node.dir.join("server.properties"));
            for (u, p) in &users {
                format.arg("--add-scram").arg(format!("SCRAM-SHA-512=[name={u},password={p}]"));
            }
            let out = format.output().expect("storage tool runs");
            assert!(out.status.success(), "formatting node {}: {}", node.id, String::from_utf8_lossy(&out.stderr));
        }
        let mut cluster = PrivateKafka { nodes, dir, heap: heap.to_string() };
        for i in 0..n {
            cluster.start_node(i);
        }
        cluster.wait_brokers(n, Duration::from_secs(180));
        cluster
    }

    /// Starts node `i` (again), its output appended to `<dir>/node<i>.log`.
    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{}.log", node.id)))
            .expect("node log");
        let child = java(&self.heap)
            .arg("kafka.Kafka")
            .arg(node.dir.join("server.properties"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("kafka starts");
        node.proc = Some(Proc { child, name: format!("kafka-{}", node.id) });
    }

    /// SIGKILL node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill9();
        }
    }

    /// SIGTERM node `i` (a controlled shutdown: its partitions' leadership moves first).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.term();
        }
    }

    /// Bootstrap servers as clients see them (the advertised ports).
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.advertised_port)).collect::<Vec<_>>().join(",")
    }

    /// Bootstrap servers of the real listeners (past any proxy).
    pub fn direct(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
    }

    /// Admin settings on the direct listeners.
    pub fn admin(&self) -> feepay_runtime::settings::KafkaSettings {
        let mut k = crate::kafka(&format!("cluster-admin-{}", unique()));
        k.brokers = self.direct();
        k
    }

    /// Waits until `n` brokers are registered and answer metadata.
    pub fn wait_brokers(&self, n: usize, timeout: Duration) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let deadline = Instant::now() + timeout;
        let client: BaseConsumer = feepay_runtime::kafka::client_config(&self.admin()).create().expect("client");
        loop {
            if let Ok(md) = client.fetch_metadata(None, Duration::from_secs(5)) {
                if md.brokers().len() == n {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{n} brokers not up within {timeout:?}; logs in {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until every partition of `topics` has `replicas` in-sync replicas.
    pub fn wait_in_sync(&self, topics: &[String], replicas: usize, timeout: Duration) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let deadline = Instant::now() + timeout;
        let client: BaseConsumer = feepay_runtime::kafka::client_config(&self.admin()).create().expect("client");
        loop {
            let ok = client.fetch_metadata(None, Duration::from_secs(5)).is_ok_and(|md| {
                md.topics().iter().filter(|t| topics.iter().any(|w| w == t.name())).all(|t| {
                    !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.isr().len() >= replicas && p.leader() >= 0)
                })
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "partitions not back to {replicas} in-sync replicas within {timeout:?}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The index of the node that leads the KRaft quorum (the active controller), from
    /// Kafka's own quorum command.
    pub fn controller_leader(&self) -> usize {
        let config = self.dir.join("admin.properties");
        let admin = users().into_iter().find(|(u, _)| u == "admin").expect("admin").1;
        std::fs::write(
            &config,
            format!(
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"{admin}\";\n"
            ),
        )
        .expect("admin.properties");
        let out = java("256m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                repo_root().join("deploy/local/kafka/log4j2-tools.yaml").display()
            ))
            .arg("org.apache.kafka.tools.MetadataQuorumCommand")
            .arg("--bootstrap-server")
            .arg(self.direct())
            .arg("--command-config")
            .arg(&config)
            .arg("describe")
            .arg("--status")
            .output()
            .expect("quorum command runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let leader: u32 = text
            .lines()
            .find_map(|l| l.strip_prefix("LeaderId:").map(|v| v.trim().parse().expect("leader id")))
            .unwrap_or_else(|| panic!("no LeaderId in {text} {}", String::from_utf8_lossy(&out.stderr)));
        self.nodes.iter().position(|n| n.id == leader).expect("leader is a node")
    }

    /// Resident memory of each running node, MiB.
    pub fn rss_mib(&self) -> Vec<(u32, u64)> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let pid = n.proc.as_ref()?.child.id();
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let kib: u64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()?;
                Some((n.id, kib / 1024))
            })
            .collect()
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
