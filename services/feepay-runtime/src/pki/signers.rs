//! The agencies' signers: a private key and its certificate chain, in a PKCS#11 token or
//! HSM (production) or in a PKCS#12 file (small deployments, the local demo).
//!
//! A signers directory (`FEEPAY_SIGNERS_DIR`, mounted from a secret store) holds, per
//! agency code, any number of:
//! - `<AGENCY>[+<label>].p12` with its password in `<AGENCY>[+<label>].p12.password`;
//! - `<AGENCY>[+<label>].pkcs11.toml`:
//!   ```toml
//!   module = "/usr/lib/softhsm/libsofthsm2.so"  # default FEEPAY_PKCS11_MODULE
//!   token = "BN.TTPVHCC"                        # token label
//!   key = "feepay-2026"                         # label of the private key (and its certificate)
//!   pin_file = "BN.TTPVHCC.pin"                  # relative to this directory, or absolute
//!   certificate = "BN.TTPVHCC+2026.crt"          # optional: else the token's certificate object
//!   ```
//! Several per agency is how certificates rotate: the issuer signs with the newest one
//! that passes the checks, and every receipt carries the certificate that signed it.
//! A file that does not load is reported for its agency (whose payments then wait,
//! parked with the reason); it never stops the others.

pub use super::token::{TokenConfig, TokenSigner};
use super::CertInfo;
use cryptoki::context::{CInitializeArgs, Pkcs11};
use feepay_domain::receipt::xmldsig::{SignError, SignatureAlgorithm, Signer};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Default PKCS#11 module (SoftHSM2, Debian's path).
pub const DEFAULT_PKCS11_MODULE: &str = crate::settings::catalog::PKCS11_MODULE.value();

/// Converts an ECDSA DER signature into the XML Signature form `r || s` (32 bytes each).
fn ecdsa_raw(der: &[u8]) -> Result<Vec<u8>, SignError> {
    let sig = openssl::ecdsa::EcdsaSig::from_der(der).map_err(|e| SignError::new(e.to_string()))?;
    let mut out = vec![0u8; 64];
    let (r, s) = (sig.r().to_vec(), sig.s().to_vec());
    if r.len() > 32 || s.len() > 32 {
        return Err(SignError::new("ECDSA signature longer than P-256's"));
    }
    out[32 - r.len()..32].copy_from_slice(&r);
    out[64 - s.len()..].copy_from_slice(&s);
    Ok(out)
}

/// The DER prefix of a SHA-256 `DigestInfo` (RFC 8017, section 9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

/// A key in memory, from a PKCS#12 file.
pub struct SoftSigner {
    key: PKey<Private>,
    /// The RSA key itself: RSASSA-PKCS1-v1_5 straight on the key skips OpenSSL 3's
    /// per-call EVP set-up (provider fetch), about 15 % of a signature's cost.
    rsa: Option<openssl::rsa::Rsa<Private>>,
    certs: Vec<Vec<u8>>,
    info: CertInfo,
}

impl SoftSigner {
    pub fn new(key: PKey<Private>, certs: Vec<Vec<u8>>) -> Result<Self, String> {
        let info = CertInfo::parse(certs.first().ok_or("no certificate")?)?;
        let public =
            openssl::x509::X509::from_der(&certs[0]).and_then(|c| c.public_key()).map_err(|e| e.to_string())?;
        if !public.public_eq(&key) {
            return Err("the private key is not the certificate's".into());
        }
        let rsa = key.rsa().ok();
        Ok(SoftSigner { key, rsa, certs, info })
    }

    /// Reads a PKCS#12 file's key, certificate and chain.
    pub fn from_pkcs12(bytes: &[u8], password: &str) -> Result<Self, String> {
        let parsed = openssl::pkcs12::Pkcs12::from_der(bytes)
            .and_then(|p| p.parse2(password))
            .map_err(|e| format!("PKCS#12 does not open (wrong password?): {e}"))?;
        let key = parsed.pkey.ok_or("PKCS#12 holds no private key")?;
        let cert = parsed.cert.ok_or("PKCS#12 holds no certificate")?;
        let mut certs = vec![cert.to_der().map_err(|e| e.to_string())?];
        // Intermediates travel with each receipt; a root does not (verifiers hold it as a
        // trust anchor), which keeps every document about 1.2 KB smaller.
        if let Some(ca) = parsed.ca {
            for c in ca.iter().filter(|c| !is_self_signed(c)) {
                certs.push(c.to_der().map_err(|e| e.to_string())?);
            }
        }
        Self::new(key, certs)
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }
}

impl Signer for SoftSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.info.algorithm()
    }
    fn certificates(&self) -> &[Vec<u8>] {
        &self.certs
    }
    fn subject(&self) -> &str {
        &self.info.subject
    }
    fn fingerprint(&self) -> &str {
        &self.info.fingerprint
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        if let Some(rsa) = &self.rsa {
            let mut digest_info = Vec::with_capacity(51);
            digest_info.extend_from_slice(&SHA256_DIGEST_INFO);
            digest_info.extend_from_slice(&openssl::sha::sha256(data));
            let mut out = vec![0u8; rsa.size() as usize];
            let n = rsa
                .private_encrypt(&digest_info, &mut out, openssl::rsa::Padding::PKCS1)
                .map_err(|e| SignError::new(e.to_string()))?;
            out.truncate(n);
            return Ok(out);
        }
        let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &self.key)
            .map_err(|e| SignError::new(e.to_string()))?;
        s.update(data).map_err(|e| SignError::new(e.to_string()))?;
        let sig = s.sign_to_vec().map_err(|e| SignError::new(e.to_string()))?;
        match self.info.algorithm() {
            SignatureAlgorithm::RsaSha256 => Ok(sig),
            SignatureAlgorithm::EcdsaSha256 => ecdsa_raw(&sig),
        }
    }
}

/// A certificate that issued itself (a root CA).
fn is_self_signed(c: &openssl::x509::X509Ref) -> bool {
    c.issued(c) == openssl::x509::X509VerifyResult::OK && c.public_key().and_then(|k| c.verify(&k)).unwrap_or(false)
}

/// A PKCS#11 module loaded (and initialized once) in this process.
pub fn module_handle(path: &Path) -> Result<Pkcs11, String> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    let m = Pkcs11::new(path).map_err(|e| format!("PKCS#11 module {}: {e}", path.display()))?;
    m.initialize(CInitializeArgs::OsThreads).map_err(|e| format!("PKCS#11 module {}: {e}", path.display()))?;
    modules.insert(path.to_path_buf(), m.clone());
    Ok(m)
}

/// A signer of an agency, with where it came from.
pub struct AgencySigner {
    pub agency: String,
    /// The file it was loaded from.
    pub source: String,
    /// `pkcs11` or `pkcs12`.
    pub kind: &'static str,
    pub info: CertInfo,
    pub signer: Arc<dyn Signer>,
}

impl AgencySigner {
    pub fn chain(&self) -> &[Vec<u8>] {
        self.signer.certificates()
    }
}

impl std::fmt::Debug for AgencySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgencySigner({} {} {} serial {})", self.agency, self.kind, self.source, self.info.serial)
    }
}

/// Every agency's signers, and the files that did not load.
#[derive(Default)]
pub struct SignerSet {
    by_agency: BTreeMap<String, Vec<Arc<AgencySigner>>>,
    problems: BTreeMap<String, Vec<String>>,
}

impl std::fmt::Debug for SignerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerSet").field("signers", &self.by_agency.values().flatten().collect::<Vec<_>>()).finish()
    }
}

impl SignerSet {
    /// Loads a signers directory (see the module comment). Never fails as a whole: a
    /// file that does not load is a problem of its agency. `sessions`: token sessions
    /// per PKCS#11 signer.
    pub fn load_dir(dir: &Path, sessions: usize) -> Result<SignerSet, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("signers directory {}: {e}", dir.display()))?;
        let mut set = SignerSet::default();
        let mut names: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names {
            let (stem, kind) = if let Some(s) = name.strip_suffix(".p12") {
                (s, "pkcs12")
            } else if let Some(s) = name.strip_suffix(".pkcs11.toml") {
                (s, "pkcs11")
            } else {
                continue;
            };
            let agency = stem.split('+').next().unwrap_or(stem).to_string();
            let path = dir.join(&name);
            let loaded: Result<Arc<dyn Signer>, String> = match kind {
                "pkcs12" => {
                    let password_path = dir.join(format!("{name}.password"));
                    std::fs::read_to_string(&password_path)
                        .map_err(|e| format!("{}: {e}", password_path.display()))
                        .and_then(|password| {
                            let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                            SoftSigner::from_pkcs12(&bytes, password.trim_end_matches(['\n', '\r']))
                        })
                        .map(|s| Arc::new(s) as Arc<dyn Signer>)
                }
                _ => std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| toml::from_str::<TokenConfig>(&text).map_err(|e| e.message().to_string()))
                    .and_then(|config| TokenSigner::open(&config, dir, sessions))
                    .map(|s| Arc::new(s) as Arc<dyn Signer>),
            };
            match loaded.and_then(|signer| {
                let info = CertInfo::parse(&signer.certificates()[0])?;
                Ok(AgencySigner { agency: agency.clone(), source: name.clone(), kind, info, signer })
            }) {
                Ok(s) => set.by_agency.entry(agency).or_default().push(Arc::new(s)),
                Err(e) => {
                    tracing::error!(file = %name, %agency, error = %e, "a signer does not load");
                    set.problems.entry(agency).or_default().push(format!("{name}: {e}"));
                }
            }
        }
        Ok(set)
    }

    /// A set holding the given signers (tests).
    pub fn of(signers: Vec<AgencySigner>) -> SignerSet {
        let mut set = SignerSet::default();
        for s in signers {
            set.by_agency.entry(s.agency.clone()).or_default().push(Arc::new(s));
        }
        set
    }

    pub fn for_agency(&self, agency: &str) -> &[Arc<AgencySigner>] {
        self.by_agency.get(agency).map(Vec::as_slice).unwrap_or_default()
    }

    /// Why an agency's files did not load.
    pub fn problems(&self, agency: &str) -> &[String] {
        self.problems.get(agency).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<AgencySigner>> {
        self.by_agency.values().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.by_agency.is_empty()
    }
}
