//! Putting signers in place for local use and tests: the test CA, then per agency a
//! PKCS#12 file or a key generated inside a PKCS#11 token, written into a signers directory
//! in the layout [`super::signers::SignerSet::load_dir`] reads.
//!
//! Production signers come from a licensed CA; operators copy the `.p12` (or write the
//! `.pkcs11.toml` naming the token) into the signers directory themselves.

use super::testca::{self, Subject, TestCa};
use chrono::{DateTime, Duration, Utc};
use feepay_domain::reference::{Agency, ReferenceData};
use openssl::x509::X509;
use std::path::{Path, PathBuf};

/// The key type of a new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// RSA-2048, what Vietnamese CAs issue most.
    #[default]
    Rsa,
    /// ECDSA P-256.
    Ec,
}

/// The test CA of `dir` (`ca.pem`, `ca.key`), made when absent. Returns it and whether it
/// was made now.
pub fn ensure_ca(dir: &Path, now: DateTime<Utc>) -> Result<(TestCa, bool), String> {
    if dir.join("ca.pem").exists() {
        return Ok((TestCa::load(dir)?, false));
    }
    let ca = TestCa::create("feepay local test CA", now - Duration::days(1), now + Duration::days(3650))?;
    ca.save(dir)?;
    Ok((ca, true))
}

/// The subject of an agency's certificate: its name and tax code.
pub fn subject_of(agency: &Agency) -> Subject {
    Subject { name: agency.name.clone(), tax_code: agency.tax_code.clone(), province: None }
}

/// The file stem of a signer: `<AGENCY>` or `<AGENCY>+<label>`.
pub fn stem(agency: &str, label: Option<&str>) -> String {
    match label {
        Some(l) if !l.is_empty() => format!("{agency}+{l}"),
        _ => agency.to_string(),
    }
}

/// The agencies that collect (have a receipt series) and have no signer file yet.
pub fn agencies_without_signer<'a>(reference: &'a ReferenceData, signers_dir: &Path) -> Vec<&'a Agency> {
    let mut codes: Vec<&str> = reference.series.iter().map(|s| s.agency.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    let names: Vec<String> = std::fs::read_dir(signers_dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let has = |code: &str| {
        names.iter().any(|n| {
            let stem = n.strip_suffix(".p12").or_else(|| n.strip_suffix(".pkcs11.toml"));
            stem.and_then(|s| s.split('+').next()).is_some_and(|a| a == code)
        })
    };
    codes.into_iter().filter(|c| !has(c)).filter_map(|c| reference.agencies.get(c)).collect()
}

/// Issues a certificate for a fresh software key and writes `<stem>.p12` with a random
/// password in `<stem>.p12.password` (both mode 0600). Refuses to overwrite.
pub fn write_pkcs12(
    signers_dir: &Path,
    ca: &TestCa,
    agency: &Agency,
    label: Option<&str>,
    key_type: KeyType,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(PathBuf, X509), String> {
    std::fs::create_dir_all(signers_dir).map_err(|e| format!("{}: {e}", signers_dir.display()))?;
    let stem = stem(&agency.code, label);
    let path = signers_dir.join(format!("{stem}.p12"));
    if path.exists() {
        return Err(format!("{} exists; give the new certificate a label (--label)", path.display()));
    }
    let key = match key_type {
        KeyType::Rsa => testca::rsa_key()?,
        KeyType::Ec => testca::ec_key()?,
    };
    let public = public_of(&key)?;
    let cert = ca.issue(&public, &subject_of(agency), from, until)?;
    let password = testca::random_secret();
    let bytes = ca.pkcs12(&key, &cert, &stem, &password)?;
    testca::write_private(&signers_dir.join(format!("{stem}.p12.password")), password.as_bytes())?;
    testca::write_private(&path, &bytes)?;
    Ok((path, cert))
}

fn public_of(
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
) -> Result<openssl::pkey::PKey<openssl::pkey::Public>, String> {
    let der = key.public_key_to_der().map_err(|e| e.to_string())?;
    openssl::pkey::PKey::public_key_from_der(&der).map_err(|e| e.to_string())
}

/// Where a token key is.
#[derive(Debug, Clone)]
pub struct TokenTarget<'a> {
    pub module: &'a Path,
    pub token: &'a str,
    /// The user PIN, written next to the configuration as `<stem>.pin` (mode 0600).
    pub pin: &'a str,
}

/// Generates a key inside a PKCS#11 token, has the test CA certify it (the certificate is
/// stored on the token), and writes `<stem>.pkcs11.toml` and `<stem>.pin`.
pub fn write_token_signer(
    signers_dir: &Path,
    ca: &TestCa,
    agency: &Agency,
    label: Option<&str>,
    target: &TokenTarget<'_>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(PathBuf, X509), String> {
    std::fs::create_dir_all(signers_dir).map_err(|e| format!("{}: {e}", signers_dir.display()))?;
    let stem = stem(&agency.code, label);
    let path = signers_dir.join(format!("{stem}.pkcs11.toml"));
    if path.exists() {
        return Err(format!("{} exists; give the new key a label (--label)", path.display()));
    }
    let key_label = format!("feepay-{stem}");
    let cert = testca::provision_token_key(
        target.module,
        target.token,
        target.pin,
        &key_label,
        ca,
        &subject_of(agency),
        from,
        until,
    )?;
    let pin_file = format!("{stem}.pin");
    testca::write_private(&signers_dir.join(&pin_file), target.pin.as_bytes())?;
    let config = format!(
        "module = {}\ntoken = {}\nkey = {}\npin_file = {}\n",
        toml_string(&target.module.display().to_string()),
        toml_string(target.token),
        toml_string(&key_label),
        toml_string(&pin_file),
    );
    std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, cert))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agency_with_a_file_or_a_token_has_a_signer() {
        let dir = std::env::temp_dir().join(format!("feepay-provision-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["BN.TTPVHCC.pkcs11.toml", "BN.KINHBAC+2026.p12", "BN.p12.password", "HD.TTPVHCC.pin"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let agencies = [("BN", None), ("BN.TTPVHCC", Some("BN")), ("BN.KINHBAC", Some("BN")), ("HD.TTPVHCC", None)];
        let mut r = ReferenceData::default();
        for (code, parent) in agencies {
            r.agencies.insert(
                code.into(),
                Agency {
                    code: code.into(),
                    name: code.into(),
                    tax_code: "0100100079".into(),
                    address: String::new(),
                    parent: parent.map(Into::into),
                    email_from: None,
                    reply_to: None,
                    until: None,
                    former_names: vec![],
                    collects_for: vec![],
                    tax_office: None,
                },
            );
            r.series.push(feepay_domain::reference::Series {
                agency: code.into(),
                template: "1".into(),
                letters: String::new(),
                kinds: vec![],
                forms: Default::default(),
                delegated: vec![],
            });
        }
        let missing: Vec<&str> = agencies_without_signer(&r, &dir).iter().map(|a| a.code.as_str()).collect();
        assert_eq!(missing, ["BN", "HD.TTPVHCC"], "a password or a PIN alone is no signer");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
