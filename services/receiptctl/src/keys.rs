//! `receiptctl keys`: the local test CA, certificates per agency (PKCS#12 file or a key
//! generated in a PKCS#11 token), the list of signers with their checks and expiry, and
//! what to register with the tax authority.

use crate::table;
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use clap::Subcommand;
use feepay_domain::receipt::datetime_gmt7;
use feepay_domain::reference::ReferenceData;
use feepay_runtime::pki::provision::{self, KeyType, TokenTarget};
use feepay_runtime::pki::signers::SignerSet;
use feepay_runtime::pki::{check_signing_certificate, TrustAnchors};
use feepay_runtime::refdata::ReferenceFiles;
use feepay_runtime::settings::catalog;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Certificates expiring within this many days are flagged (and alerted on by the issuer's
/// metric `feepay_issuer_certificate_expiry_seconds`).
pub const EXPIRY_WARNING_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Algorithm {
    /// RSA-2048.
    #[default]
    Rsa,
    /// ECDSA P-256.
    Ec,
}

impl From<Algorithm> for KeyType {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Rsa => KeyType::Rsa,
            Algorithm::Ec => KeyType::Ec,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Dirs {
    /// The signers directory the issuer reads.
    #[arg(long, env = catalog::SIGNERS_DIR.name, default_value = catalog::SIGNERS_DIR.value())]
    pub signers: PathBuf,
    /// The test CA's directory (`ca.pem`, `ca.key`); made when absent.
    #[arg(long, env = catalog::TEST_CA_DIR.name, default_value = catalog::TEST_CA_DIR.value())]
    pub ca: PathBuf,
    /// Reference data directory (agency names and tax codes).
    #[arg(long, default_value = "deploy/reference")]
    pub reference: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Make the local test CA (`ca.pem` is the trust anchor to configure and publish).
    /// Not for production: there, certificates come from a licensed CA.
    InitCa {
        #[arg(long, env = catalog::TEST_CA_DIR.name, default_value = catalog::TEST_CA_DIR.value())]
        ca: PathBuf,
    },
    /// Issue a test certificate with a software key (PKCS#12 file) for each collecting
    /// agency without a signer, or for one agency (a further certificate needs --label).
    Generate {
        #[command(flatten)]
        dirs: Dirs,
        /// Only this agency.
        #[arg(long)]
        agency: Option<String>,
        /// Label of a further certificate of the agency (file `<AGENCY>+<label>.p12`).
        #[arg(long)]
        label: Option<String>,
        #[arg(long, value_enum, default_value_t = Algorithm::Rsa)]
        algorithm: Algorithm,
        /// Validity in days from now.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Generate an RSA-2048 key inside a PKCS#11 token for one agency, certify it with the
    /// test CA, and write the signer configuration (`<AGENCY>[+label].pkcs11.toml`).
    Token {
        #[command(flatten)]
        dirs: Dirs,
        #[arg(long)]
        agency: String,
        #[arg(long)]
        label: Option<String>,
        /// PKCS#11 module.
        #[arg(long, env = catalog::PKCS11_MODULE.name, default_value = catalog::PKCS11_MODULE.value())]
        module: PathBuf,
        /// Token label.
        #[arg(long)]
        token: String,
        /// File holding the token's user PIN.
        #[arg(long)]
        pin_file: PathBuf,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Every signer with its certificate, the checks at this moment, and days to expiry.
    /// Exit code 3 when a collecting agency has no usable signer or one expires within 30 days.
    List {
        #[arg(long, env = catalog::SIGNERS_DIR.name, default_value = catalog::SIGNERS_DIR.value())]
        signers: PathBuf,
        #[arg(long, env = catalog::TRUST_ANCHORS.name, default_value = catalog::TRUST_ANCHORS.value())]
        trust_anchors: PathBuf,
        #[arg(long, default_value = "deploy/reference")]
        reference: PathBuf,
    },
    /// What to declare on the registration form 01/ĐKTĐ-CTĐT (section on digital
    /// signature certificates) for each signer: issuer, serial, validity.
    Registration {
        #[arg(long, env = catalog::SIGNERS_DIR.name, default_value = catalog::SIGNERS_DIR.value())]
        signers: PathBuf,
        #[arg(long)]
        agency: Option<String>,
    },
}

fn reference(dir: &Path) -> anyhow::Result<ReferenceData> {
    let files = ReferenceFiles::read_dir(dir)?;
    let (r, _) = files.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(r)
}

fn ca(dir: &Path, out: &mut impl Write) -> anyhow::Result<feepay_runtime::pki::testca::TestCa> {
    let (ca, made) = provision::ensure_ca(dir, crate::session::now()).map_err(anyhow::Error::msg)?;
    if made {
        writeln!(
            out,
            "made the test CA in {} (trust anchor {}; for local use only)",
            dir.display(),
            dir.join("ca.pem").display()
        )?;
    }
    Ok(ca)
}

fn validity(days: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = crate::session::now();
    (now - Duration::minutes(5), now + Duration::days(days))
}

pub fn run(out: &mut impl Write, cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCmd::InitCa { ca: dir } => {
            let (_, made) = provision::ensure_ca(&dir, crate::session::now()).map_err(anyhow::Error::msg)?;
            let what = if made { "made" } else { "already there" };
            writeln!(out, "test CA {what}: trust anchor {}", dir.join("ca.pem").display())?;
        }
        KeysCmd::Generate { dirs, agency, label, algorithm, days } => {
            let r = reference(&dirs.reference)?;
            let ca = ca(&dirs.ca, out)?;
            let agencies = match &agency {
                Some(code) => {
                    vec![r.agencies.get(code).with_context(|| format!("agency {code} is not in the reference data"))?]
                }
                None => provision::agencies_without_signer(&r, &dirs.signers),
            };
            let (from, until) = validity(days);
            for a in &agencies {
                let (path, cert) =
                    provision::write_pkcs12(&dirs.signers, &ca, a, label.as_deref(), algorithm.into(), from, until)
                        .map_err(anyhow::Error::msg)?;
                let info = feepay_runtime::pki::CertInfo::parse(&cert.to_der()?).map_err(anyhow::Error::msg)?;
                writeln!(
                    out,
                    "{}  serial {}  valid until {}",
                    path.display(),
                    info.serial,
                    datetime_gmt7(info.not_after)
                )?;
            }
            writeln!(out, "{} certificate(s) issued into {}", agencies.len(), dirs.signers.display())?;
        }
        KeysCmd::Token { dirs, agency, label, module, token, pin_file, days } => {
            let r = reference(&dirs.reference)?;
            let a = r.agencies.get(&agency).with_context(|| format!("agency {agency} is not in the reference data"))?;
            let ca = ca(&dirs.ca, out)?;
            let pin = std::fs::read_to_string(&pin_file).with_context(|| format!("reading {}", pin_file.display()))?;
            let target = TokenTarget { module: &module, token: &token, pin: pin.trim_end_matches(['\n', '\r']) };
            let (from, until) = validity(days);
            let (path, cert) =
                provision::write_token_signer(&dirs.signers, &ca, a, label.as_deref(), &target, from, until)
                    .map_err(anyhow::Error::msg)?;
            let info = feepay_runtime::pki::CertInfo::parse(&cert.to_der()?).map_err(anyhow::Error::msg)?;
            writeln!(
                out,
                "{}  key generated in token {token:?}  serial {}  valid until {}",
                path.display(),
                info.serial,
                datetime_gmt7(info.not_after)
            )?;
        }
        KeysCmd::List { signers, trust_anchors, reference: dir } => {
            return list(out, &signers, &trust_anchors, &reference(&dir)?);
        }
        KeysCmd::Registration { signers, agency } => {
            let set = SignerSet::load_dir(&signers, 1).map_err(anyhow::Error::msg)?;
            let rows: Vec<Vec<String>> = set
                .all()
                .filter(|s| agency.as_deref().is_none_or(|a| a == s.agency))
                .map(|s| {
                    vec![
                        s.agency.clone(),
                        s.info.issuer.clone(),
                        s.info.serial.clone(),
                        datetime_gmt7(s.info.not_before),
                        datetime_gmt7(s.info.not_after),
                        s.info.subject.clone(),
                    ]
                })
                .collect();
            writeln!(
                out,
                "Chứng thư số sử dụng (mẫu 01/ĐKTĐ-CTĐT, Phụ lục III Thông tư 91/2026/TT-BTC): hình thức đăng ký \"Thêm mới\" cho chứng thư mới, \"Gia hạn\" khi gia hạn, \"Ngừng sử dụng\" khi thôi dùng."
            )?;
            table::print(
                out,
                &["AGENCY", "TỔ CHỨC CẤP (ISSUER)", "SỐ SÊ-RI", "TỪ NGÀY", "ĐẾN NGÀY", "SUBJECT"],
                &rows,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The signers table with what each check says now.
fn list(out: &mut impl Write, signers: &Path, trust_anchors: &Path, r: &ReferenceData) -> anyhow::Result<ExitCode> {
    let trust = TrustAnchors::load(trust_anchors).map_err(anyhow::Error::msg)?;
    let set = SignerSet::load_dir(signers, 1).map_err(anyhow::Error::msg)?;
    let now = crate::session::now();
    let mut rows = Vec::new();
    let mut defects = 0;
    for s in set.all() {
        let days = (s.info.not_after - now).num_days();
        let status = match r.agencies.get(&s.agency) {
            None => {
                defects += 1;
                "UNUSED: the agency is not in the reference data (remove the file)".to_string()
            }
            Some(a) => match check_signing_certificate(&s.info, s.chain(), &trust, now, &a.tax_code) {
                Some(problem) => {
                    defects += 1;
                    format!("NOT USABLE: {problem}")
                }
                None if days < EXPIRY_WARNING_DAYS => {
                    defects += 1;
                    format!("EXPIRES in {days} day(s): add a new certificate now")
                }
                None => "ok".to_string(),
            },
        };
        rows.push(vec![
            s.agency.clone(),
            s.source.clone(),
            s.kind.to_string(),
            s.info.tax_code.clone().unwrap_or_default(),
            s.info.serial.clone(),
            datetime_gmt7(s.info.not_after),
            status,
        ]);
    }
    let mut collectors: Vec<&str> = r.series.iter().map(|s| s.agency.as_str()).collect();
    collectors.sort_unstable();
    collectors.dedup();
    for code in collectors {
        for p in set.problems(code) {
            defects += 1;
            rows.push(vec![
                code.into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                format!("DOES NOT LOAD: {p}"),
            ]);
        }
        if set.for_agency(code).is_empty() && set.problems(code).is_empty() {
            rows.push(vec![
                code.into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                "no signer of its own (an ancestor's certificate with the same tax code may sign)".into(),
            ]);
        }
    }
    table::print(out, &["AGENCY", "FILE", "STORE", "MST", "SERIAL", "VALID UNTIL (GMT+7)", "STATUS"], &rows)?;
    Ok(if defects > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
