//! Receipts issued under layout 1.0 (before certificates): Ed25519 over the exact bytes of
//! the `<DLBLai>` element, the key named by id in a home-made `<Signature>` element. Such a
//! receipt is no legal digital signature and nothing signs this way any more, but receipts
//! issued then stay valid and readable: they are verified here with the public keys their
//! signers registered (`signing_keys`).

use super::{datetime_gmt7, document_hash, xml_escape, ReceiptContent, SealedReceipt, VerifiedDocument, VerifyError};
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use std::fmt;

/// An agency signing key. `Debug` never shows the secret.
pub struct AgencyKey {
    pub key_id: String,
    signing: SigningKey,
}

impl fmt::Debug for AgencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgencyKey({}, public {})", self.key_id, self.public_hex())
    }
}

/// Why a key cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("secret key must be 64 hexadecimal characters (32 bytes)")]
    Secret,
    #[error("public key must be 64 hexadecimal characters of a valid Ed25519 point")]
    Public,
}

impl AgencyKey {
    /// From a 32-byte seed in hex.
    pub fn from_secret_hex(key_id: &str, secret_hex: &str) -> Result<Self, KeyError> {
        let bytes: [u8; 32] =
            hex::decode(secret_hex.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(KeyError::Secret)?;
        Ok(AgencyKey { key_id: key_id.to_string(), signing: SigningKey::from_bytes(&bytes) })
    }

    /// A fresh key from a cryptographic random source.
    pub fn generate(key_id: &str, rng: &mut (impl RngCore + rand::CryptoRng)) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        AgencyKey { key_id: key_id.to_string(), signing: SigningKey::from_bytes(&seed) }
    }

    /// The seed in hex, to write a key file. Handle with care.
    pub fn secret_hex(&self) -> String {
        hex::encode(self.signing.to_bytes())
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }
}

/// Parses a published public key.
pub fn public_key_from_hex(h: &str) -> Result<VerifyingKey, KeyError> {
    let bytes: [u8; 32] = hex::decode(h.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(KeyError::Public)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Public)
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

fn el(out: &mut String, tag: &str, text: &str) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    out.push_str(&xml_escape(text));
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// Version of the layout.
pub const VERSION: &str = "1.0";

/// Writes a receipt in layout 1.0, signed with an Ed25519 key (tests of old receipts).
pub fn seal_v1(content: &ReceiptContent, key: &AgencyKey) -> SealedReceipt {
    content.seal_v1(key)
}

impl ReceiptContent {
    /// The data part of layout 1.0.
    fn data_xml_v1(&self) -> String {
        let mut x = String::with_capacity(2048);
        x.push_str("<DLBLai Id=\"data\">");
        x.push_str("<TTChung>");
        el(&mut x, "PBan", VERSION);
        el(&mut x, "THDon", &self.title);
        el(&mut x, "KHMSHDon", &self.template);
        el(&mut x, "KHHDon", &self.symbol);
        el(&mut x, "SHDon", &self.number.to_string());
        el(&mut x, "NLap", &datetime_gmt7(self.issued_at));
        el(&mut x, "DVTTe", "VND");
        el(&mut x, "MBLai", &self.receipt_id);
        el(&mut x, "MGDich", &self.payment_id);
        el(&mut x, "MTCuu", &self.lookup_code);
        el(&mut x, "HashTruoc", &self.previous_hash);
        if let Some(r) = &self.replaces {
            x.push_str("<BLThayThe>");
            el(&mut x, "MBLai", &r.receipt_id);
            el(&mut x, "KHMSHDon", &r.template);
            el(&mut x, "KHHDon", &r.symbol);
            el(&mut x, "SHDon", &r.number);
            x.push_str("</BLThayThe>");
        }
        x.push_str("</TTChung><NDBLai><DVThu>");
        el(&mut x, "Ma", &self.agency.code);
        el(&mut x, "Ten", &self.agency.name);
        el(&mut x, "MST", &self.agency.tax_code);
        el(&mut x, "DChi", &self.agency.address);
        x.push_str("</DVThu><NNop>");
        el(&mut x, "Ten", &self.payer.full_name);
        el(&mut x, "SDDCN", &self.payer.personal_id);
        el(&mut x, "MST", &self.payer.tax_code);
        el(&mut x, "DChi", &self.payer.address);
        x.push_str("</NNop><HSo>");
        el(&mut x, "MHSo", &self.dossier_code);
        el(&mut x, "MTTHC", &self.procedure_code);
        x.push_str("</HSo><DSKhoan>");
        for (i, l) in self.lines.iter().enumerate() {
            x.push_str("<Khoan>");
            el(&mut x, "STT", &(i + 1).to_string());
            el(&mut x, "MPhi", &l.fee_code);
            el(&mut x, "TPhi", &l.fee_name);
            el(&mut x, "LPhi", l.kind.vi());
            el(&mut x, "SLuong", &l.quantity.to_string());
            el(&mut x, "MThu", &l.base.to_string());
            if let Some(w) = &l.applied {
                x.push_str("<MGiam>");
                el(&mut x, "STien", &w.reduction.to_string());
                el(&mut x, "CCu", &w.document_number);
                el(&mut x, "CQBH", &w.issuing_body);
                el(&mut x, "MTa", &w.description);
                el(&mut x, "MQTac", &w.rule_id);
                x.push_str("</MGiam>");
            }
            el(&mut x, "STien", &l.due.to_string());
            x.push_str("</Khoan>");
        }
        x.push_str("</DSKhoan><TToan>");
        el(&mut x, "TgTien", &self.total.to_string());
        el(&mut x, "TgTienBChu", &crate::words::amount_in_words(self.total));
        el(&mut x, "HTTToan", "Thanh toán điện tử");
        el(&mut x, "TGTToan", &self.provider);
        el(&mut x, "MTChieu", &self.provider_reference);
        x.push_str("</TToan></NDBLai></DLBLai>");
        x
    }

    fn seal_v1(&self, key: &AgencyKey) -> SealedReceipt {
        let data = self.data_xml_v1();
        let signature = key.signing.sign(data.as_bytes());
        let signature_b64 = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
        let mut doc = String::with_capacity(data.len() + 400);
        doc.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BLai>");
        doc.push_str(&data);
        doc.push_str("<DSCKS><DVThu><Signature Algorithm=\"Ed25519\" KeyId=\"");
        doc.push_str(&xml_escape(&key.key_id));
        doc.push_str("\" SigningTime=\"");
        doc.push_str(&datetime_gmt7(self.issued_at));
        doc.push_str("\" SignedPart=\"#data\">");
        doc.push_str(&signature_b64);
        doc.push_str("</Signature></DVThu></DSCKS></BLai>\n");
        let document_hash = document_hash(&doc);
        SealedReceipt { document: doc, signature_b64, document_hash, key_id: key.key_id.clone() }
    }
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    between(s, &format!("<{name}>"), &format!("</{name}>"))
}

/// Verifies a layout-1.0 document's signature with the key named in it.
pub fn verify_document(
    document: &str,
    key_for: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<VerifiedDocument, VerifyError> {
    let start = document.find("<DLBLai").ok_or(VerifyError::Malformed("no <DLBLai> data part".into()))?;
    let end_tag = "</DLBLai>";
    let end = document.find(end_tag).ok_or(VerifyError::Malformed("no </DLBLai>".into()))? + end_tag.len();
    if end <= start {
        return Err(VerifyError::Malformed("data part out of order".into()));
    }
    let data = &document[start..end];
    let sig_el =
        between(document, "<Signature ", "</Signature>").ok_or(VerifyError::Malformed("no <Signature>".into()))?;
    let key_id = xml_unescape(between(sig_el, "KeyId=\"", "\"").ok_or(VerifyError::Malformed("no KeyId".into()))?);
    let sig_b64 = sig_el.rsplit('>').next().ok_or(VerifyError::Malformed("no signature value".into()))?;
    let sig_bytes: [u8; 64] = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(VerifyError::Malformed("signature is not 64 bytes of base64".into()))?;
    let key = key_for(&key_id).ok_or_else(|| VerifyError::UnknownKey(key_id.clone()))?;
    key.verify(data.as_bytes(), &Signature::from_bytes(&sig_bytes)).map_err(|_| VerifyError::BadSignature)?;
    let head = tag(data, "TTChung").ok_or(VerifyError::Malformed("no <TTChung>".into()))?;
    let head_own = match head.find("<BLThayThe>") {
        Some(i) => &head[..i],
        None => head,
    };
    let field = |s: &str, n: &str| tag(s, n).map(xml_unescape).unwrap_or_default();
    let agency = tag(data, "DVThu").unwrap_or_default();
    Ok(VerifiedDocument {
        version: VERSION.to_string(),
        agency_tax_code: field(agency, "MST"),
        signer_tax_code: field(agency, "MST"),
        key_id,
        receipt_id: field(head_own, "MBLai"),
        agency_code: field(agency, "Ma"),
        template: field(head_own, "KHMSHDon"),
        symbol: field(head_own, "KHHDon"),
        number: field(head_own, "SHDon"),
        previous_hash: field(head_own, "HashTruoc"),
        document_hash: document_hash(document),
        total: field(tag(data, "TToan").unwrap_or_default(), "TgTien"),
        lookup_code: field(head_own, "MTCuu"),
    })
}
