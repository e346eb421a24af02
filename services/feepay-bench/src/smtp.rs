//! The benchmark's SMTP server: Postfix's `smtp-sink`, which accepts and discards every
//! message, so the email leg measures the notifier and not the sink. (It replaced an
//! aiosmtpd sink in Python that was, by all signs, a bottleneck of its own.) It stands in
//! for the centre's mail relay, which runs on its own machine: at a lower CPU priority it
//! does not take the services' share of the cores.
//!
//! `smtp-sink -c` prints running counters (`sess=… quit=… mesg=…`); the bench reads the
//! message count to check one accepted message per email sent. Its own ceiling is
//! measured in the same run with Postfix's `smtp-source` against a fresh sink.
//!
//! Installed from Debian's `postfix` package, unpacked under `.tools/postfix` without
//! configuring a mail system (`deploy/local/stack.sh bench-tools`).

use anyhow::{bail, Context};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOOLS: &str = ".tools/postfix";

fn tool(name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let bin = Path::new(TOOLS).join("usr/sbin").join(name);
    if !bin.exists() {
        bail!("{} is missing: run `deploy/local/stack.sh bench-tools` (make bench does)", bin.display());
    }
    Ok((bin, Path::new(TOOLS).join("usr/lib/postfix")))
}

/// A running `smtp-sink` and the messages it accepted so far.
pub struct Sink {
    child: Child,
    accepted: Arc<AtomicU64>,
}

impl Sink {
    /// Starts a sink on 127.0.0.1:`port` and waits until it accepts connections.
    pub fn start(port: u16) -> anyhow::Result<Sink> {
        let (bin, libs) = tool("smtp-sink")?;
        let mut child = Command::new("nice")
            .args(["-n", "10"])
            .arg(&bin)
            // -c counters on stdout; -u: the user to run as once the socket is open (needed
            // when started by root); 1024: the listen backlog.
            .args(["-c", "-u", "nobody", &format!("127.0.0.1:{port}"), "1024"])
            .env("LD_LIBRARY_PATH", &libs)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let accepted = Arc::new(AtomicU64::new(0));
        let mut out = child.stdout.take().expect("piped");
        let counter = accepted.clone();
        std::thread::spawn(move || {
            // Counter lines end in `\r`; the last `mesg=` is the count so far.
            let mut buf = [0u8; 4096];
            let mut line = Vec::new();
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    if b == b'\r' || b == b'\n' {
                        if let Some(m) = mesg_count(&line) {
                            counter.store(m, Ordering::Relaxed);
                        }
                        line.clear();
                    } else {
                        line.push(b);
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("smtp-sink does not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Sink { child, accepted })
    }

    /// Messages accepted so far (updated as each one ends).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mesg=N` of a counter line such as `sess=12 quit=12 mesg=12`.
fn mesg_count(line: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(line).ok()?;
    s.split_whitespace().find_map(|w| w.strip_prefix("mesg=")).and_then(|n| n.parse().ok())
}

/// Messages per second a fresh sink accepts from `smtp-source` with `sessions` parallel
/// sessions of one message each, about the size of a receipt email (`bytes`).
pub fn ceiling(port: u16, messages: u64, sessions: u32, bytes: u32) -> anyhow::Result<f64> {
    let sink = Sink::start(port)?;
    let (bin, libs) = tool("smtp-source")?;
    let started = Instant::now();
    let status = Command::new(&bin)
        .args(["-s", &sessions.to_string(), "-m", &messages.to_string(), "-l", &bytes.to_string()])
        .args(["-f", "bienlai@feepay.local", "-t", "nguoinop@example.vn", &format!("127.0.0.1:{port}")])
        .env("LD_LIBRARY_PATH", &libs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("smtp-source failed: {status}");
    }
    let secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.accepted() < messages && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if sink.accepted() < messages {
        bail!("smtp-sink counted {} of {messages} messages", sink.accepted());
    }
    Ok(messages as f64 / secs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counter_lines() {
        assert_eq!(super::mesg_count(b"sess=12 quit=11 mesg=10"), Some(10));
        assert_eq!(super::mesg_count(b"garbage"), None);
    }
}
