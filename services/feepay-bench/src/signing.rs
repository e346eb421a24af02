//! The machine's signing ceiling, measured in the same run as the pipeline: RSA-2048
//! signatures per second with the software keys the services use (PKCS#12), and with a key
//! inside a SoftHSM2 token (PKCS#11), on every core.

use feepay_domain::receipt::xmldsig::Signer;
use feepay_domain::reference::Agency;
use feepay_runtime::pki::provision::{self, TokenTarget};
use feepay_runtime::pki::signers::{SignerSet, TokenConfig, TokenSigner};
use feepay_runtime::pki::testca::TestCa;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long each ceiling is measured.
const MEASURE: Duration = Duration::from_secs(3);

/// Signatures per second of `signer` over a `SignedInfo`-sized input on `threads` threads.
pub fn rate(signer: Arc<dyn Signer>, threads: usize) -> f64 {
    let data = vec![b'x'; 900];
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (signer, done, stop, data) = (signer.clone(), done.clone(), stop.clone(), data.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if signer.sign(&data).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(MEASURE);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The software-key ceiling: an agency's PKCS#12 signer from the run's signers directory.
pub fn software(signers: &Path, threads: usize) -> anyhow::Result<f64> {
    let set = SignerSet::load_dir(signers, 1).map_err(anyhow::Error::msg)?;
    let s = set.all().next().ok_or_else(|| anyhow::anyhow!("no signer in {}", signers.display()))?;
    Ok(rate(s.signer.clone(), threads))
}

/// The SoftHSM2 ceiling: a token initialised in `work` (`SOFTHSM2_CONF` must point there
/// before the module loads), a key generated in it, `threads` sessions.
pub fn softhsm(work: &Path, ca: &TestCa, agency: &Agency, threads: usize) -> anyhow::Result<f64> {
    let pin = "benchpin1234";
    let out = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "feepay-bench", "--so-pin", pin, "--pin", pin])
        .output()?;
    anyhow::ensure!(out.status.success(), "softhsm2-util: {}", String::from_utf8_lossy(&out.stderr));
    let module = Path::new(feepay_runtime::pki::signers::DEFAULT_PKCS11_MODULE);
    let target = TokenTarget { module, token: "feepay-bench", pin };
    let now = crate::wall_clock();
    let dir = work.join("token-signer");
    let (path, _) =
        provision::write_token_signer(&dir, ca, agency, None, &target, now, now + chrono::Duration::days(1))
            .map_err(anyhow::Error::msg)?;
    let config: TokenConfig = toml::from_str(&std::fs::read_to_string(&path)?)?;
    let signer = TokenSigner::open(&config, &dir, threads).map_err(anyhow::Error::msg)?;
    Ok(rate(Arc::new(signer), threads))
}

/// Writes a SoftHSM2 configuration with its token store under `work`.
pub fn softhsm_conf(work: &Path) -> std::io::Result<std::path::PathBuf> {
    let tokens = work.join("softhsm-tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = work.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )?;
    Ok(conf)
}
