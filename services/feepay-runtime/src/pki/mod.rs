//! Certificates and keys of the collecting agencies.
//!
//! A receipt is signed with the collector's certificate, issued by a licensed CA or the
//! Government Cipher Committee's CA (Law on E-Transactions 20/2023/QH15, Decree
//! 23/2025/NĐ-CP); locally by a test CA this project makes (`receiptctl keys`). Before a
//! certificate signs anything it is checked ([`check_signing_certificate`]): within its
//! validity at the signing time, allowed to sign (key usage), chained to a configured trust
//! anchor, and naming the collector's tax code (the `MST:` attribute Vietnamese CAs put in
//! the subject). A certificate that fails is never used; the payment waits, parked with the
//! reason.
//!
//! - [`signers`]: private keys in a PKCS#11 token or HSM, or in a PKCS#12 file, per agency.
//! - [`verify`]: verifying a receipt's XML signature and its certificate chain.
//! - [`testca`]: the local test CA and agency certificates, PKCS#12 files and token keys.
//! - [`provision`]: writing signers for agencies into a signers directory.
//! - [`registry`]: the register of signing certificates in the database.

pub mod provision;
pub mod registry;
pub mod signers;
pub mod testca;
pub mod token;
pub mod verify;

use chrono::{DateTime, TimeZone, Utc};
use feepay_domain::receipt::xmldsig::SignatureAlgorithm;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509StoreContext, X509};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use x509_parser::prelude::*;

/// What a certificate says, for checks, logs, pages and the registration with the tax
/// authority.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertInfo {
    /// RFC 4514 subject.
    pub subject: String,
    /// RFC 4514 issuer.
    pub issuer: String,
    /// Serial number, uppercase hex.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint: String,
    /// The tax code in the subject's `MST:` attribute, if any.
    pub tax_code: Option<String>,
    /// The key usage allows signing documents (digitalSignature or nonRepudiation); true
    /// when the certificate has no key-usage extension.
    pub can_sign: bool,
    /// The certificate's key is RSA (else EC).
    pub rsa: bool,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let time = |t: ASN1Time| Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or_default();
        let mut tax_code = None;
        for rdn in cert.subject().iter() {
            for atv in rdn.iter() {
                if let Ok(value) = atv.as_str() {
                    if let Some(rest) = value.trim().strip_prefix("MST:") {
                        tax_code = Some(rest.trim().to_string());
                    }
                }
            }
        }
        let can_sign = match cert.key_usage() {
            Ok(Some(ku)) => ku.value.digital_signature() || ku.value.non_repudiation(),
            Ok(None) => true,
            Err(_) => false,
        };
        let rsa = cert.public_key().algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
        Ok(CertInfo {
            subject: x509_name(cert.subject()),
            issuer: x509_name(cert.issuer()),
            serial: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            fingerprint: hex::encode(Sha256::digest(der)),
            tax_code,
            can_sign,
            rsa,
        })
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        if self.rsa {
            SignatureAlgorithm::RsaSha256
        } else {
            SignatureAlgorithm::EcdsaSha256
        }
    }
}

/// RFC 4514 form of a name, with the `UID` attribute named (x509-parser prints its OID).
fn x509_name(name: &X509Name<'_>) -> String {
    name.to_string().replace("0.9.2342.19200300.100.1.1=", "UID=")
}

/// Tax codes compare without the branch dash: `0100100079-001` == `0100100079001`.
pub fn same_tax_code(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.chars().filter(|c| c.is_ascii_digit()).collect::<String>();
    !a.trim().is_empty() && norm(a) == norm(b)
}

/// The trust anchors: the CA certificates receipts' signing certificates must chain to.
#[derive(Clone)]
pub struct TrustAnchors {
    path: PathBuf,
    roots: Vec<X509>,
}

impl std::fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustAnchors({}, {} certificates)", self.path.display(), self.roots.len())
    }
}

impl TrustAnchors {
    /// Reads a PEM bundle (`FEEPAY_TRUST_ANCHORS`).
    pub fn load(path: &Path) -> Result<TrustAnchors, String> {
        let pem = std::fs::read(path).map_err(|e| format!("trust anchors {}: {e}", path.display()))?;
        let roots = X509::stack_from_pem(&pem).map_err(|e| format!("trust anchors {}: {e}", path.display()))?;
        if roots.is_empty() {
            return Err(format!("trust anchors {}: no certificate in the file", path.display()));
        }
        Ok(TrustAnchors { path: path.to_path_buf(), roots })
    }

    /// No anchor: every chain fails (a tool that signs nothing).
    pub fn empty() -> TrustAnchors {
        TrustAnchors { path: PathBuf::from("<none>"), roots: Vec::new() }
    }

    pub fn from_pem(pem: &[u8]) -> Result<TrustAnchors, String> {
        let roots = X509::stack_from_pem(pem).map_err(|e| e.to_string())?;
        Ok(TrustAnchors { path: PathBuf::from("<memory>"), roots })
    }

    pub fn roots(&self) -> &[X509] {
        &self.roots
    }

    fn store(&self, at: DateTime<Utc>) -> Result<X509Store, String> {
        let mut b = X509StoreBuilder::new().map_err(|e| e.to_string())?;
        for r in &self.roots {
            b.add_cert(r.clone()).map_err(|e| e.to_string())?;
        }
        let mut param = X509VerifyParam::new().map_err(|e| e.to_string())?;
        param.set_time(at.timestamp());
        b.set_param(&param).map_err(|e| e.to_string())?;
        Ok(b.build())
    }

    /// Checks that `chain[0]` chains to an anchor through `chain[1..]`, everything valid
    /// at `at`. The error says why in the verifier's words.
    pub fn verify_chain(&self, chain: &[Vec<u8>], at: DateTime<Utc>) -> Result<(), String> {
        let leaf = X509::from_der(chain.first().ok_or("no certificate")?).map_err(|e| e.to_string())?;
        let mut intermediates = Stack::new().map_err(|e| e.to_string())?;
        for der in chain.iter().skip(1) {
            intermediates.push(X509::from_der(der).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        let store = self.store(at)?;
        let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
        let (ok, error) = ctx
            .init(&store, &leaf, &intermediates, |c| Ok((c.verify_cert()?, c.error())))
            .map_err(|e| e.to_string())?;
        if ok {
            Ok(())
        } else {
            Err(error.error_string().to_string())
        }
    }
}

/// Why a certificate may not sign for a collector at a time, in one sentence for operators
/// (`None`: it may).
pub fn check_signing_certificate(
    info: &CertInfo,
    chain: &[Vec<u8>],
    trust: &TrustAnchors,
    at: DateTime<Utc>,
    collector_tax_code: &str,
) -> Option<String> {
    check_use(info, at, collector_tax_code).or_else(|| {
        trust
            .verify_chain(chain, at)
            .err()
            .map(|e| format!("certificate {} does not chain to a trusted CA: {e}", info.serial))
    })
}

/// The checks of a certificate that need no trust store: validity at `at`, key usage, the
/// collector's tax code.
pub fn check_use(info: &CertInfo, at: DateTime<Utc>, collector_tax_code: &str) -> Option<String> {
    let when = |t: DateTime<Utc>| feepay_domain::receipt::datetime_gmt7(t);
    if at < info.not_before {
        return Some(format!("certificate {} is valid only from {} (GMT+7)", info.serial, when(info.not_before)));
    }
    if at > info.not_after {
        return Some(format!("certificate {} expired on {} (GMT+7)", info.serial, when(info.not_after)));
    }
    if !info.can_sign {
        return Some(format!("certificate {}: its key usage does not allow signing documents", info.serial));
    }
    match &info.tax_code {
        None => {
            return Some(format!(
                "certificate {} names no tax code (MST:) in its subject {}",
                info.serial, info.subject
            ))
        }
        Some(t) if !same_tax_code(t, collector_tax_code) => {
            return Some(format!(
                "certificate {} is for tax code {t}, not for the collector's {collector_tax_code}",
                info.serial
            ))
        }
        Some(_) => {}
    }
    None
}

/// PEM text of a DER object (`label` such as `CERTIFICATE`), 64 characters a line.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
