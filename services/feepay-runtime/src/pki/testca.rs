//! A test certificate authority for local use and tests: the project makes its own CA and
//! one certificate per agency, shaped like those of Vietnamese CAs (the agency's name, and
//! its tax code as `UID=MST:<tax code>` in the subject), with the key in a PKCS#12 file or
//! generated inside a PKCS#11 token. Receipts signed with these verify against the test
//! CA only; production uses certificates from a licensed CA.

use chrono::{DateTime, Utc};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509NameBuilder, X509};
use std::path::Path;

/// Who a certificate is for.
#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    pub tax_code: String,
    /// Province (ST), optional.
    pub province: Option<String>,
}

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn name(subject: &Subject) -> Result<X509Name, String> {
    let mut b = X509NameBuilder::new().map_err(e)?;
    b.append_entry_by_text("C", "VN").map_err(e)?;
    if let Some(p) = &subject.province {
        b.append_entry_by_text("ST", p).map_err(e)?;
    }
    b.append_entry_by_text("O", &subject.name).map_err(e)?;
    b.append_entry_by_text("CN", &subject.name).map_err(e)?;
    b.append_entry_by_text("UID", &format!("MST:{}", subject.tax_code)).map_err(e)?;
    Ok(b.build())
}

fn serial() -> Result<Asn1Integer, String> {
    let mut bn = BigNum::new().map_err(e)?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false).map_err(e)?;
    bn.to_asn1_integer().map_err(e)
}

fn asn1_time(t: DateTime<Utc>) -> Result<Asn1Time, String> {
    Asn1Time::from_unix(t.timestamp()).map_err(e)
}

/// A fresh RSA-2048 key.
pub fn rsa_key() -> Result<PKey<Private>, String> {
    PKey::from_rsa(Rsa::generate(2048).map_err(e)?).map_err(e)
}

/// A fresh ECDSA P-256 key.
pub fn ec_key() -> Result<PKey<Private>, String> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).map_err(e)?;
    PKey::from_ec_key(openssl::ec::EcKey::generate(&group).map_err(e)?).map_err(e)
}

/// The test CA: its certificate and key.
pub struct TestCa {
    pub cert: X509,
    key: PKey<Private>,
}

impl TestCa {
    /// A new self-signed CA valid from `from` to `until`.
    pub fn create(common_name: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> Result<TestCa, String> {
        let key = rsa_key()?;
        let mut n = X509NameBuilder::new().map_err(e)?;
        n.append_entry_by_text("C", "VN").map_err(e)?;
        n.append_entry_by_text("O", "feepay (test CA, not for production)").map_err(e)?;
        n.append_entry_by_text("CN", common_name).map_err(e)?;
        let n = n.build();
        let mut b = X509::builder().map_err(e)?;
        b.set_version(2).map_err(e)?;
        let sn = serial()?;
        b.set_serial_number(&sn).map_err(e)?;
        b.set_subject_name(&n).map_err(e)?;
        b.set_issuer_name(&n).map_err(e)?;
        b.set_pubkey(&key).map_err(e)?;
        let nb = asn1_time(from)?;
        b.set_not_before(&nb).map_err(e)?;
        let na = asn1_time(until)?;
        b.set_not_after(&na).map_err(e)?;
        b.append_extension(BasicConstraints::new().critical().ca().build().map_err(e)?).map_err(e)?;
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().map_err(e)?).map_err(e)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None)).map_err(e)?;
        b.append_extension(ski).map_err(e)?;
        b.sign(&key, MessageDigest::sha256()).map_err(e)?;
        Ok(TestCa { cert: b.build(), key })
    }

    /// Reads `ca.pem` and `ca.key` from a directory.
    pub fn load(dir: &Path) -> Result<TestCa, String> {
        let cert = std::fs::read(dir.join("ca.pem")).map_err(|x| format!("{}: {x}", dir.join("ca.pem").display()))?;
        let key = std::fs::read(dir.join("ca.key")).map_err(|x| format!("{}: {x}", dir.join("ca.key").display()))?;
        Ok(TestCa { cert: X509::from_pem(&cert).map_err(e)?, key: PKey::private_key_from_pem(&key).map_err(e)? })
    }

    /// Writes `ca.pem` (the trust anchor to publish) and `ca.key` (mode 0600).
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(e)?;
        std::fs::write(dir.join("ca.pem"), self.cert.to_pem().map_err(e)?).map_err(e)?;
        write_private(&dir.join("ca.key"), &self.key.private_key_to_pem_pkcs8().map_err(e)?)
    }

    /// Issues a document-signing certificate for `public`.
    pub fn issue(
        &self,
        public: &PKeyRef<Public>,
        subject: &Subject,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<X509, String> {
        self.issue_with_usage(public, subject, from, until, true)
    }

    /// Issues a certificate whose key usage allows signing documents (`signing`) or only
    /// key encipherment (a certificate that must be refused for receipts).
    pub fn issue_with_usage(
        &self,
        public: &PKeyRef<Public>,
        subject: &Subject,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        signing: bool,
    ) -> Result<X509, String> {
        let mut b = X509::builder().map_err(e)?;
        b.set_version(2).map_err(e)?;
        let sn = serial()?;
        b.set_serial_number(&sn).map_err(e)?;
        let subject_name = name(subject)?;
        b.set_subject_name(&subject_name).map_err(e)?;
        b.set_issuer_name(self.cert.subject_name()).map_err(e)?;
        b.set_pubkey(public).map_err(e)?;
        let nb = asn1_time(from)?;
        b.set_not_before(&nb).map_err(e)?;
        let na = asn1_time(until)?;
        b.set_not_after(&na).map_err(e)?;
        b.append_extension(BasicConstraints::new().critical().build().map_err(e)?).map_err(e)?;
        let usage = if signing {
            KeyUsage::new().critical().digital_signature().non_repudiation().build()
        } else {
            KeyUsage::new().critical().key_encipherment().build()
        };
        b.append_extension(usage.map_err(e)?).map_err(e)?;
        b.append_extension(ExtendedKeyUsage::new().email_protection().build().map_err(e)?).map_err(e)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&self.cert), None)).map_err(e)?;
        b.append_extension(ski).map_err(e)?;
        let aki =
            AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(&self.cert), None)).map_err(e)?;
        b.append_extension(aki).map_err(e)?;
        b.sign(&self.key, MessageDigest::sha256()).map_err(e)?;
        Ok(b.build())
    }

    /// A key and its certificate, as a PKCS#12 file's bytes (the CA certificate included).
    pub fn pkcs12(&self, key: &PKeyRef<Private>, cert: &X509, label: &str, password: &str) -> Result<Vec<u8>, String> {
        let mut chain = openssl::stack::Stack::new().map_err(e)?;
        chain.push(self.cert.clone()).map_err(e)?;
        openssl::pkcs12::Pkcs12::builder()
            .name(label)
            .pkey(key)
            .cert(cert)
            .ca(chain)
            .build2(password)
            .and_then(|p| p.to_der())
            .map_err(e)
    }
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).and_then(|mut f| f.write_all(bytes)).map_err(|x| format!("{}: {x}", path.display()))
}

/// A random password for a PKCS#12 file or a token PIN.
pub fn random_secret() -> String {
    let mut b = [0u8; 18];
    openssl::rand::rand_bytes(&mut b).expect("system randomness");
    hex::encode(b)
}

/// Generates an RSA-2048 key pair inside a PKCS#11 token (the private key never leaves
/// it), has the CA certify it, and stores the certificate on the token under the same
/// label. Returns the certificate.
#[allow(clippy::too_many_arguments)]
pub fn provision_token_key(
    module: &Path,
    token: &str,
    user_pin: &str,
    key_label: &str,
    ca: &TestCa,
    subject: &Subject,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<X509, String> {
    let pkcs11 = super::signers::module_handle(module)?;
    let slot = pkcs11
        .get_slots_with_token()
        .map_err(e)?
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).map(|t| t.label().trim() == token).unwrap_or(false))
        .ok_or_else(|| format!("no token labelled {token:?}"))?;
    let session = pkcs11.open_rw_session(slot).map_err(e)?;
    match session.login(UserType::User, Some(&AuthPin::new(user_pin.to_string()))) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(x) => return Err(format!("token {token:?}: login refused: {x}")),
    }
    let id = key_label.as_bytes().to_vec();
    let public_template = [
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::ModulusBits(2048.into()),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        Attribute::Label(key_label.as_bytes().to_vec()),
        Attribute::Id(id.clone()),
    ];
    let private_template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(key_label.as_bytes().to_vec()),
        Attribute::Id(id.clone()),
    ];
    let (public, _private) =
        session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public_template, &private_template).map_err(e)?;
    let attrs = session.get_attributes(public, &[AttributeType::Modulus, AttributeType::PublicExponent]).map_err(e)?;
    let (mut n, mut exp) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(m) => n = Some(m),
            Attribute::PublicExponent(x) => exp = Some(x),
            _ => {}
        }
    }
    let (n, exp) = (n.ok_or("no modulus")?, exp.ok_or("no exponent")?);
    let rsa = Rsa::from_public_components(BigNum::from_slice(&n).map_err(e)?, BigNum::from_slice(&exp).map_err(e)?)
        .map_err(e)?;
    let public_key = PKey::from_rsa(rsa).map_err(e)?;
    let cert = ca.issue(&public_key, subject, from, until)?;
    let der = cert.to_der().map_err(e)?;
    session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(key_label.as_bytes().to_vec()),
            Attribute::Id(id),
            Attribute::Subject(cert.subject_name().to_der().map_err(e)?),
            Attribute::Value(der),
        ])
        .map_err(e)?;
    Ok(cert)
}
