//! Real outside systems a test watches: an SMTP sink of its own and a Prometheus server.

use crate::*;
use std::path::PathBuf;
use std::time::Duration;

/// Sum of the samples of metric `name` whose labels include every `label="value"` given.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A maildev SMTP sink of the test's own (for outages), started from `.tools/`.
pub struct Maildev {
    pub smtp_port: u16,
    pub web_port: u16,
    child: Option<std::process::Child>,
}

/// A port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Maildev {
    /// The shared sink of the local stack (127.0.0.1:1025, web 1080).
    pub fn shared() -> Maildev {
        Maildev { smtp_port: 1025, web_port: 1080, child: None }
    }

    /// A private sink on free ports.
    pub async fn private() -> Maildev {
        let mut m = Maildev { smtp_port: free_port(), web_port: free_port(), child: None };
        m.start().await;
        m
    }

    pub async fn start(&mut self) {
        let bin = repo_root().join(".tools/node_modules/.bin/maildev");
        let log = std::env::temp_dir().join(format!("maildev-{}.log", self.web_port));
        let child = std::process::Command::new(bin)
            .args(["--smtp", &self.smtp_port.to_string(), "--web", &self.web_port.to_string()])
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("maildev's log"))
            .spawn()
            .expect("maildev installed by make up");
        let child = std::sync::Arc::new(std::sync::Mutex::new(child));
        let port = self.web_port;
        // Node starts slowly on a busy machine: wait for the condition as long as it takes
        // within the suite's patience, but say at once when the server died instead.
        let watched = child.clone();
        eventually(Duration::from_secs(90), "maildev to listen", move || {
            let (watched, log) = (watched.clone(), log.clone());
            async move {
                if let Ok(Some(status)) = watched.lock().unwrap().try_wait() {
                    let err = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("maildev exited ({status}) before listening on {port}: {err}");
                }
                reqwest::get(format!("http://127.0.0.1:{port}/api/email"))
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        let child = std::sync::Arc::try_unwrap(child).expect("the only handle").into_inner().unwrap();
        self.child = Some(child);
    }

    /// Stops the server (SIGKILL): an SMTP outage.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every email received, as maildev's JSON.
    pub async fn emails(&self) -> Vec<serde_json::Value> {
        match reqwest::get(format!("http://127.0.0.1:{}/api/email", self.web_port)).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Emails addressed to `address`.
    pub async fn emails_to(&self, address: &str) -> Vec<serde_json::Value> {
        self.emails()
            .await
            .into_iter()
            .filter(|e| e["to"].as_array().is_some_and(|to| to.iter().any(|t| t["address"].as_str() == Some(address))))
            .collect()
    }

    /// Raw source of an email.
    pub async fn source(&self, id: &str) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/api/email/{id}/source", self.web_port))
            .await
            .expect("source")
            .text()
            .await
            .expect("text")
    }
}

impl Drop for Maildev {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real Prometheus server (Debian package `prometheus`) scraping test services every
/// second and evaluating `deploy/prometheus/alerts.yml`.
pub struct Prometheus {
    pub port: u16,
    child: std::process::Child,
    _dir: PathBuf,
}

impl Prometheus {
    /// `targets`: (job, address) pairs.
    pub async fn start(targets: &[(&str, std::net::SocketAddr)]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("feepay-prom-{}", unique()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::copy(repo_root().join("deploy/prometheus/alerts.yml"), dir.join("alerts.yml")).expect("alerts");
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            cfg.push_str(&format!("  - job_name: {job}\n    static_configs: [{{targets: [\"{addr}\"]}}]\n"));
        }
        std::fs::write(dir.join("prometheus.yml"), cfg).expect("config");
        let port = free_port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus installed (deploy/check.sh installs the Debian package)");
        eventually(Duration::from_secs(30), "prometheus to listen", || async move {
            reqwest::get(format!("http://127.0.0.1:{port}/-/ready"))
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        Prometheus { port, child, _dir: dir }
    }

    /// Evaluates a PromQL expression now: Err with Prometheus' message if it is invalid,
    /// else the number of series in the result.
    pub async fn query(&self, expr: &str) -> Result<usize, String> {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(v["error"].as_str().unwrap_or("unknown error").to_string());
        }
        Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
    }

    /// Names of the alerts currently firing.
    pub async fn firing(&self) -> Vec<String> {
        let v: serde_json::Value = match reqwest::get(format!("http://127.0.0.1:{}/api/v1/alerts", self.port)).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return Vec::new(),
        };
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["state"] == "firing")
                    .filter_map(|x| x["labels"]["alertname"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Metric sample names in a Prometheus text exposition.
pub fn sample_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}
