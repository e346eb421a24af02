//! Real processes of the tests: the services as built binaries, and a PostgreSQL cluster
//! of a test's own (so restarting or delaying it disturbs no other test).

use crate::{bin, free_port, repo_root, unique};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL cluster of the test's own, so restarting it disturbs no other test.
pub struct PrivatePg {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn as_postgres(cmd: &Path) -> Command {
    // initdb and postgres refuse to run as root; CI runs as root.
    let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

impl PrivatePg {
    /// Creates and starts a cluster.
    pub fn start() -> PrivatePg {
        let pg = Self::create();
        pg.ctl("start");
        pg
    }

    /// Creates a cluster (initdb) on a free port without starting it: a database that is
    /// not there yet.
    pub fn create() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL installed (make up)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        // A test process killed by its timeout leaves its cluster running: stop those whose
        // owner is gone (never another running test's: tests run side by side).
        for stale in std::fs::read_dir(std::env::temp_dir()).expect("tmp").filter_map(|e| e.ok()) {
            let owner =
                std::fs::read_to_string(stale.path().join("owner.pid")).ok().and_then(|p| p.trim().parse::<u32>().ok());
            let owner_alive = owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if stale.file_name().to_string_lossy().starts_with("feepay-pg-") && !owner_alive {
                let _ = as_postgres(&bin.join("pg_ctl"))
                    .args(["-D", &stale.path().join("data").display().to_string(), "-m", "immediate", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = std::fs::remove_dir_all(stale.path());
            }
        }
        let dir = std::env::temp_dir().join(format!("feepay-pg-{}", unique()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("owner.pid"), std::process::id().to_string()).expect("owner file");
        let _ = Command::new("chown").args(["postgres:postgres", dir.to_str().expect("utf-8")]).status();
        let data = dir.join("data");
        let ok = as_postgres(&bin.join("initdb"))
            .args(["-D", data.to_str().expect("utf-8"), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .stdout(Stdio::null())
            .status()
            .expect("initdb runs")
            .success();
        assert!(ok, "initdb");
        PrivatePg { dir, port: free_port(), bin }
    }

    /// URL of the `feepay` database of this cluster.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/feepay", self.port)
    }

    /// `pg_ctl start|stop|restart` (stop and restart immediate).
    pub fn ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=60",
            self.port,
            self.dir.display()
        );
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.args(["-D", self.dir.join("data").to_str().expect("utf-8"), "-w", "-o", &opts]);
        c.args(["-l", self.dir.join("log").to_str().expect("utf-8")]);
        if action == "restart" || action == "stop" {
            c.args(["-m", "immediate"]);
        }
        let ok = c.arg(action).stdout(Stdio::null()).status().expect("pg_ctl runs").success();
        assert!(ok, "pg_ctl {action}");
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        // Also when the test failed, perhaps before the cluster ever started: no assertion.
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", &self.dir.join("data").display().to_string(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// SIGKILL, and wait for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
    /// SIGTERM, and wait up to 30 s for the exit.
    pub fn term(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not stop within 30 s of SIGTERM", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Environment and log directory for service processes, and the topics they use.
pub struct Env {
    pub vars: Vec<(String, String)>,
    pub logs: PathBuf,
    pub topics: feepay_runtime::settings::Topics,
}

impl Env {
    fn var(&self, extra: &[(&str, String)], name: &str) -> Option<String> {
        extra
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| self.vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    /// Starts a workspace binary with the environment, its output in `<logs>/<name>.log`.
    /// A service that talks to the broker runs as its role's broker user, granted the ACLs
    /// of its role on the topics (on the broker `FEEPAY_KAFKA_BROKERS` names) first.
    pub fn spawn(&self, service: &str, name: &str, extra: &[(&str, String)]) -> Proc {
        let role = service.strip_prefix("feepay-").and_then(feepay_runtime::kafka::access::Role::parse);
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).expect("log file");
        let mut c = Command::new(bin(service));
        c.current_dir(repo_root()).stdout(log.try_clone().expect("log")).stderr(log);
        if let Some(role) = role {
            for (k, v) in crate::service_kafka_env(role) {
                c.env(k, v);
            }
            let mut admin = crate::kafka("test-admin");
            if let Some(b) = self.var(extra, "FEEPAY_KAFKA_BROKERS") {
                admin.brokers = b;
            }
            let group = self.var(extra, "FEEPAY_KAFKA_GROUP_ID").unwrap_or_else(|| service.to_string());
            let grants = feepay_runtime::kafka::access::grants(role, role.default_user(), &self.topics, &group);
            crate::remember_group(&self.topics, &group);
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(feepay_broker_admin::grant(&admin, &grants))
            })
            .join()
            .expect("granting thread")
            .unwrap_or_else(|e| panic!("granting {role} its ACLs: {e}"));
        }
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        c.env("FEEPAY_KAFKA_CLIENT_ID", name);
        Proc { child: c.spawn().expect("service starts"), name: name.into() }
    }
}

impl Proc {
    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
