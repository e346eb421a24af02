//! Headless Chromium, for what a citizen's browser shows.

use crate::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Debian's Chromium, installed by `make up` (deploy/local/stack.sh).
pub fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("chromium is not installed: run `make up` (it installs Debian's chromium package)");
}

/// Runs headless Chromium with a throw-away profile and `args`, within 90 s.
async fn run_chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .output(),
    )
    .await
    .expect("chromium finishes")
    .expect("chromium runs")
}

/// Renders `url` in headless Chromium and returns the DOM after scripts ran.
pub async fn chromium_dom(url: &str) -> String {
    let dir = std::env::temp_dir().join(format!("feepay-chromium-{}", unique()));
    let out = run_chromium(&dir, &["--virtual-time-budget=3000", "--dump-dom", url]).await;
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Renders `url` in headless Chromium to a PNG screenshot and returns its bytes.
pub async fn chromium_screenshot(url: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("feepay-chromium-{}", unique()));
    std::fs::create_dir_all(&dir).expect("dir");
    let png = dir.join("page.png");
    run_chromium(
        &dir.join("profile"),
        &["--hide-scrollbars", "--window-size=1000,1400", &format!("--screenshot={}", png.display()), url],
    )
    .await;
    let bytes = std::fs::read(&png).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}
