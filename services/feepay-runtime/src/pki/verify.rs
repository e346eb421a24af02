//! Verifying a receipt document: the XML signature (references, digests, signature value),
//! the signer's certificate (chain to a trust anchor at the signing time, key usage, the
//! collector's tax code), then what the document says. Receipts of layout 1.0 are verified
//! with their signer's registered Ed25519 key.

use super::{check_signing_certificate, CertInfo, TrustAnchors};
use chrono::{DateTime, NaiveDateTime, Utc};
use ed25519_dalek::VerifyingKey;
use feepay_domain::numbering::gmt7;
use feepay_domain::receipt::xmldsig::{self, SignatureAlgorithm};
use feepay_domain::receipt::{document, document_hash, legacy, VerifiedDocument, VerifyError};
use openssl::hash::MessageDigest;

/// A verified receipt document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub document: VerifiedDocument,
    /// The certificate that signed (absent for layout 1.0, which had none).
    pub signer: Option<CertInfo>,
    /// When it was signed (GMT+7), as covered by the signature.
    pub signing_time: Option<String>,
}

/// `r || s` into DER, for OpenSSL.
fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, VerifyError> {
    if raw.len() != 64 {
        return Err(VerifyError::BadSignature);
    }
    let r = openssl::bn::BigNum::from_slice(&raw[..32]).map_err(|_| VerifyError::BadSignature)?;
    let s = openssl::bn::BigNum::from_slice(&raw[32..]).map_err(|_| VerifyError::BadSignature)?;
    openssl::ecdsa::EcdsaSig::from_private_components(r, s)
        .and_then(|sig| sig.to_der())
        .map_err(|_| VerifyError::BadSignature)
}

/// The signing time written in a signature (GMT+7, `YYYY-MM-DDThh:mm:ss`).
pub fn parse_signing_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S")
        .ok()
        .and_then(|t| t.and_local_timezone(gmt7()).single())
        .map(|t| t.with_timezone(&Utc))
}

/// Verifies a receipt document with the trust anchors (and, for layout 1.0, the
/// registered key named in it).
pub fn verify_receipt(
    document: &str,
    trust: &TrustAnchors,
    legacy_key: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<Verification, VerifyError> {
    let doc = roxmltree::Document::parse(document)
        .map_err(|e| VerifyError::Malformed(format!("not well-formed XML: {e}")))?;
    xmldsig::check_shape(&doc)?;
    let version = doc
        .root_element()
        .children()
        .find(|c| c.has_tag_name("DLBLai"))
        .and_then(|d| d.children().find(|c| c.has_tag_name("TTChung")))
        .and_then(|t| t.children().find(|c| c.has_tag_name("PBan")))
        .and_then(|p| p.text())
        .unwrap_or("");
    if version == legacy::VERSION {
        let document = legacy::verify_document(document, legacy_key)?;
        return Ok(Verification { document, signer: None, signing_time: None });
    }
    let checked = xmldsig::check(&doc)?;
    let leaf = openssl::x509::X509::from_der(&checked.certificates[0])
        .map_err(|e| VerifyError::Certificate(format!("the signer's certificate does not parse: {e}")))?;
    let key = leaf.public_key().map_err(|e| VerifyError::Certificate(e.to_string()))?;
    let signature = match checked.algorithm {
        SignatureAlgorithm::RsaSha256 => checked.signature_value.clone(),
        SignatureAlgorithm::EcdsaSha256 => ecdsa_der(&checked.signature_value)?,
    };
    let mut verifier = openssl::sign::Verifier::new(MessageDigest::sha256(), &key)
        .map_err(|e| VerifyError::Certificate(e.to_string()))?;
    let valid = verifier.update(&checked.signed_info).and_then(|_| verifier.verify(&signature)).unwrap_or(false);
    if !valid {
        return Err(VerifyError::BadSignature);
    }
    let info = CertInfo::parse(&checked.certificates[0]).map_err(VerifyError::Certificate)?;
    let at = parse_signing_time(&checked.signing_time)
        .ok_or_else(|| VerifyError::Malformed(format!("signing time {:?} is not a time", checked.signing_time)))?;
    let fields = document::read_fields(checked.data, info.fingerprint.clone(), document_hash(document));
    if let Some(problem) = check_signing_certificate(&info, &checked.certificates, trust, at, &fields.signer_tax_code) {
        return Err(VerifyError::Certificate(problem));
    }
    Ok(Verification { document: fields, signer: Some(info), signing_time: Some(checked.signing_time) })
}
