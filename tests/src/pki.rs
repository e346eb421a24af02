//! Certificates for the tests: one test CA per test process, signers per test, and the
//! independent verifier (`xmlsec1`, installed by `make up`).

use crate::{repo_root, unique};
use chrono::{TimeZone, Utc};
use feepay_runtime::pki::provision::{self, KeyType};
use feepay_runtime::pki::testca::TestCa;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The test CA of this process.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca: TestCa,
}

impl TestPki {
    /// `ca.pem`: the trust anchor.
    pub fn anchors(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// The same for every test of a process; valid from 2020 for ten years past now, so a
/// test clock set anywhere in between finds it valid.
pub fn test_pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("feepay-testca-{}", unique()));
        let from = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
        let ca = TestCa::create("feepay tests CA", from, crate::wall_clock() + chrono::Duration::days(3650))
            .expect("test CA");
        ca.save(&dir).expect("test CA saved");
        TestPki { dir, ca }
    })
}

/// The sample reference data.
pub fn sample_reference() -> feepay_domain::reference::ReferenceData {
    let files =
        feepay_runtime::refdata::ReferenceFiles::read_dir(&repo_root().join("deploy/reference")).expect("sample files");
    files.parse().expect("valid").0
}

/// A test's signers directory, removed when dropped (also when the test panics).
#[derive(Debug)]
pub struct Signers(PathBuf);

impl std::ops::Deref for Signers {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Signers {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Signers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A signers directory with an RSA-2048 certificate (PKCS#12) for every agency with a
/// series, valid from 2020 to two years from now.
pub fn test_keys() -> Signers {
    let dir = std::env::temp_dir().join(format!("feepay-signers-{}", unique()));
    let reference = sample_reference();
    for agency in provision::agencies_without_signer(&reference, &dir) {
        issue_pkcs12(&dir, &agency.code, None, KeyType::Rsa, years_ago(6), years_ahead(2));
    }
    Signers(dir)
}

pub fn years_ago(n: i64) -> chrono::DateTime<Utc> {
    crate::wall_clock() - chrono::Duration::days(365 * n)
}

pub fn years_ahead(n: i64) -> chrono::DateTime<Utc> {
    crate::wall_clock() + chrono::Duration::days(365 * n)
}

/// Issues one certificate for an agency of the sample data into `dir`.
pub fn issue_pkcs12(
    dir: &Path,
    agency: &str,
    label: Option<&str>,
    key_type: KeyType,
    from: chrono::DateTime<Utc>,
    until: chrono::DateTime<Utc>,
) -> PathBuf {
    let reference = sample_reference();
    let a = reference.agencies.get(agency).unwrap_or_else(|| panic!("agency {agency} in the sample data"));
    provision::write_pkcs12(dir, &test_pki().ca, a, label, key_type, from, until).expect("certificate issued").0
}

/// The trust anchors of the test CA.
pub fn trust() -> feepay_runtime::pki::TrustAnchors {
    feepay_runtime::pki::TrustAnchors::load(&test_pki().anchors()).expect("test CA anchors")
}

/// `xmlsec1 --verify` of a document against the test CA: `Ok` when the independent tool
/// accepts it, else its output.
pub fn xmlsec_verify(document: &str) -> Result<(), String> {
    xmlsec_verify_with(document, &test_pki().anchors())
}

/// Runs an external checker over many documents, a few hundred files per call: `Ok` when
/// it accepts all, else its output.
fn check_all(documents: &[String], program: &str, args: &[&str]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("feepay-docs-{}", unique()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut result = Ok(());
    for (n, chunk) in documents.chunks(400).enumerate() {
        let files: Vec<PathBuf> = chunk
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let p = dir.join(format!("{n}-{i}.xml"));
                std::fs::write(&p, d).expect("document written");
                p
            })
            .collect();
        let out = std::process::Command::new(program).args(args).args(&files).output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                result = Err(format!("{program} does not run (make up installs it): {e}"));
                break;
            }
        };
        if !out.status.success() {
            result = Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `xmlsec1 --verify` of every document against the test CA.
pub fn xmlsec_verify_all(documents: &[String]) -> Result<(), String> {
    let anchors = test_pki().anchors();
    check_all(
        documents,
        "xmlsec1",
        &["--verify", "--id-attr:Id", "DLBLai", "--trusted-pem", anchors.to_str().expect("utf-8")],
    )
}

/// The shipped schema of the receipt layout.
pub fn receipt_schema() -> PathBuf {
    repo_root().join("deploy/xsd/bien-lai-2.0.0.xsd")
}

/// `xmllint --schema` of every document against the shipped XSD.
pub fn xsd_validate_all(documents: &[String]) -> Result<(), String> {
    xsd_validate_with(documents, &receipt_schema())
}

/// The shipped schema of the summaries 01/TH-BLĐT.
pub fn summary_schema() -> PathBuf {
    repo_root().join("deploy/xsd/bang-tong-hop-bien-lai-1.0.0.xsd")
}

/// `xmllint --schema` of documents against a schema.
pub fn xsd_validate_with(documents: &[String], schema: &Path) -> Result<(), String> {
    check_all(documents, "xmllint", &["--noout", "--schema", schema.to_str().expect("utf-8")])
}

pub fn xmlsec_verify_with(document: &str, anchors: &Path) -> Result<(), String> {
    xmlsec_verify_signed(document, "DLBLai", anchors)
}

/// `xmlsec1 --verify` of a document whose signed data part is the element `data_element`
/// (`DLTBao` for a notice, `DLBCTHSDBLai` for a usage report), against the test CA.
pub fn xmlsec_verify_document(document: &str, data_element: &str) -> Result<(), String> {
    xmlsec_verify_signed(document, data_element, &test_pki().anchors())
}

fn xmlsec_verify_signed(document: &str, data_element: &str, anchors: &Path) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("feepay-doc-{}.xml", unique()));
    std::fs::write(&path, document).expect("document written");
    let out = std::process::Command::new("xmlsec1")
        .args(["--verify", "--id-attr:Id", data_element, "--trusted-pem"])
        .arg(anchors)
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.map_err(|e| format!("xmlsec1 does not run (make up installs it): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// The signers of a directory as the issuer uses them, checked against the test CA.
pub fn signing(signers: &Path) -> feepay_issuer::signing::Signing {
    feepay_issuer::signing::Signing::watching(signers, trust(), 2).expect("signers load")
}

/// The environment a service process needs to sign with `signers` (and verify with the
/// test CA).
pub fn signer_env(signers: &Path) -> Vec<(String, String)> {
    vec![
        ("FEEPAY_SIGNERS_DIR".into(), signers.display().to_string()),
        ("FEEPAY_TRUST_ANCHORS".into(), test_pki().anchors().display().to_string()),
    ]
}

/// Receipt content of the Bắc Ninh centre, for documents signed outside the pipeline.
pub fn sample_content() -> feepay_domain::receipt::ReceiptContent {
    use feepay_domain::receipt::{AgencyInfo, PayerInfo, PaymentMethod, ReceiptContent};
    let reference = sample_reference();
    let a = &reference.agencies["BN.TTPVHCC"];
    let fee = &reference.fees["LP-GPLX"];
    ReceiptContent {
        receipt_id: uuid::Uuid::new_v4().to_string(),
        payment_id: format!("PG-{}", unique()),
        title: "Biên lai thu phí, lệ phí".into(),
        agency: AgencyInfo {
            code: a.code.clone(),
            name: a.name.clone(),
            tax_code: a.tax_code.clone(),
            address: a.address.clone(),
        },
        template: "1".into(),
        symbol: "26T".into(),
        number: feepay_domain::numbering::ReceiptNumber::new(1).expect("1"),
        payer: PayerInfo {
            full_name: "Nguyễn Văn An".into(),
            personal_id: "027190001234".into(),
            tax_code: String::new(),
            passport: String::new(),
            address: "Bắc Ninh".into(),
        },
        dossier_code: "H09.22-261128-0001".into(),
        procedure_code: "1.002809".into(),
        lines: vec![feepay_domain::waiver::LineAssessment {
            fee_code: fee.code.clone(),
            fee_name: fee.name.clone(),
            kind: fee.kind,
            quantity: 1,
            base: fee.base_amount,
            due: fee.base_amount,
            applied: None,
            candidates: vec![],
        }],
        total: fee.base_amount,
        payment_method: PaymentMethod::NationalPlatform,
        provider: "VNPAY".into(),
        provider_reference: "FT1".into(),
        issued_at: crate::wall_clock(),
        lookup_code: feepay_domain::receipt::generate_lookup_code(&mut rand::thread_rng()),
        previous_hash: feepay_domain::numbering::GENESIS_HASH.into(),
        replaces: None,
        delegate: None,
    }
}

/// A SoftHSM2 token store of a test's own (`SOFTHSM2_CONF` points the module at it).
pub struct SoftHsm {
    pub conf: PathBuf,
}

impl SoftHsm {
    pub fn new(work: &Path) -> SoftHsm {
        let tokens = work.join("tokens");
        std::fs::create_dir_all(&tokens).expect("token dir");
        let conf = work.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
        )
        .expect("softhsm2.conf");
        SoftHsm { conf }
    }

    /// A command with `SOFTHSM2_CONF` set.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    /// Initialises a token in a free slot; returns its user PIN.
    pub fn init_token(&self, label: &str) -> String {
        let pin = feepay_runtime::pki::testca::random_secret()[..12].to_string();
        let so_pin = feepay_runtime::pki::testca::random_secret()[..12].to_string();
        let out = self
            .command("softhsm2-util")
            .args(["--init-token", "--free", "--label", label, "--so-pin", &so_pin, "--pin", &pin])
            .output()
            .expect("softhsm2-util runs (make up installs softhsm2)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pin
    }

    /// A token labelled `label` holding Bắc Ninh's key, generated inside it by
    /// `receiptctl keys token` with a certificate from the test CA; returns the user PIN
    /// and the signers directory naming it.
    pub fn with_agency_key(&self, work: &Path, label: &str) -> (String, PathBuf) {
        let pin = self.init_token(label);
        let signers = work.join("signers");
        let pin_file = work.join("user.pin");
        std::fs::write(&pin_file, &pin).expect("PIN file");
        let made = self
            .command(crate::bin("receiptctl"))
            .current_dir(repo_root())
            .args(["keys", "token", "--agency", "BN.TTPVHCC", "--token", label])
            .arg("--pin-file")
            .arg(&pin_file)
            .arg("--signers")
            .arg(&signers)
            .arg("--ca")
            .arg(&test_pki().dir)
            .output()
            .expect("receiptctl runs");
        assert!(
            made.status.success(),
            "{}{}",
            String::from_utf8_lossy(&made.stdout),
            String::from_utf8_lossy(&made.stderr)
        );
        (pin, signers)
    }

    /// `pkcs11-tool --list-objects` of a token, logged in.
    pub fn objects(&self, label: &str, pin: &str) -> String {
        let out = self
            .command("pkcs11-tool")
            .args(["--module", feepay_runtime::pki::signers::DEFAULT_PKCS11_MODULE, "--token-label", label])
            .args(["--login", "--pin", pin, "--list-objects"])
            .output()
            .expect("pkcs11-tool runs (make up installs opensc)");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}
