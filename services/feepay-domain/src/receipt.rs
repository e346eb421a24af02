//! The signed receipt document (biên lai điện tử).
//!
//! XML in UTF-8 after the conventions of Decision 1271/QĐ-CT: a data part `<DLBLai>` and a
//! signature part `<DSCKS>`, dates and times in GMT+7, whole-đồng amounts. The signature is
//! Ed25519 over the exact UTF-8 bytes of the `<DLBLai>…</DLBLai>` element, which this module
//! always serialises the same way (fixed element order, no insignificant whitespace,
//! escaped text), so the signed bytes are canonical. The document hash is SHA-256 of the
//! whole document; each receipt's data part carries the hash of the previous receipt of its
//! series and year, which chains the series.

use crate::money::Vnd;
use crate::numbering::{gmt7, ReceiptNumber};
use crate::waiver::LineAssessment;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// The collecting agency as printed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgencyInfo {
    pub code: String,
    pub name: String,
    pub tax_code: String,
    pub address: String,
}

/// The payer as printed: name, identification, address. No email on the document.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PayerInfo {
    pub full_name: String,
    pub personal_id: String,
    pub tax_code: String,
    pub address: String,
}

impl fmt::Debug for PayerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayerInfo")
            .field("personal_id", &crate::ids::mask(&self.personal_id))
            .field("tax_code", &crate::ids::mask(&self.tax_code))
            .finish_non_exhaustive()
    }
}

/// A reference to the receipt this one replaces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replaces {
    pub receipt_id: String,
    pub template: String,
    pub symbol: String,
    pub number: String,
}

/// Everything printed on a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptContent {
    pub receipt_id: String,
    pub payment_id: String,
    pub title: String,
    pub agency: AgencyInfo,
    pub template: String,
    pub symbol: String,
    pub number: ReceiptNumber,
    pub payer: PayerInfo,
    pub dossier_code: String,
    pub procedure_code: String,
    pub lines: Vec<LineAssessment>,
    pub total: Vnd,
    pub provider: String,
    pub provider_reference: String,
    pub issued_at: DateTime<Utc>,
    pub lookup_code: String,
    pub previous_hash: String,
    pub replaces: Option<Replaces>,
}

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

/// A receipt sealed: its document, signature and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedReceipt {
    pub document: String,
    pub signature_b64: String,
    pub document_hash: String,
    pub key_id: String,
}

/// Escapes text for XML and drops characters XML 1.0 cannot carry.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// `YYYY-MM-DDThh:mm:ss` in GMT+7.
pub fn datetime_gmt7(at: DateTime<Utc>) -> String {
    at.with_timezone(&gmt7()).format("%Y-%m-%dT%H:%M:%S").to_string()
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

/// Current version of the document layout.
pub const DOCUMENT_VERSION: &str = "1.0";

impl ReceiptContent {
    /// The data part, canonical bytes: what is signed.
    pub fn data_xml(&self) -> String {
        let mut x = String::with_capacity(2048);
        x.push_str("<DLBLai Id=\"data\">");
        x.push_str("<TTChung>");
        el(&mut x, "PBan", DOCUMENT_VERSION);
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

    /// Signs the data part and assembles the document.
    pub fn seal(&self, key: &AgencyKey) -> SealedReceipt {
        let data = self.data_xml();
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
        let document_hash = hex::encode(Sha256::digest(doc.as_bytes()));
        SealedReceipt { document: doc, signature_b64, document_hash, key_id: key.key_id.clone() }
    }
}

/// SHA-256 of a document, hex.
pub fn document_hash(document: &str) -> String {
    hex::encode(Sha256::digest(document.as_bytes()))
}

/// What a verified document says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedDocument {
    pub key_id: String,
    pub receipt_id: String,
    pub agency_code: String,
    pub template: String,
    pub symbol: String,
    pub number: String,
    pub previous_hash: String,
    pub document_hash: String,
    pub total: String,
    pub lookup_code: String,
}

/// Why a document does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a receipt document: {0}")]
    Malformed(&'static str),
    #[error("signing key {0} is unknown")]
    UnknownKey(String),
    #[error("signature does not match the content: the document was altered or signed by another key")]
    BadSignature,
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    between(s, &format!("<{name}>"), &format!("</{name}>"))
}

/// Verifies a document's signature with the key named in it.
pub fn verify_document(
    document: &str,
    key_for: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<VerifiedDocument, VerifyError> {
    let start = document.find("<DLBLai").ok_or(VerifyError::Malformed("no <DLBLai> data part"))?;
    let end_tag = "</DLBLai>";
    let end = document.find(end_tag).ok_or(VerifyError::Malformed("no </DLBLai>"))? + end_tag.len();
    if end <= start {
        return Err(VerifyError::Malformed("data part out of order"));
    }
    let data = &document[start..end];
    let sig_el = between(document, "<Signature ", "</Signature>").ok_or(VerifyError::Malformed("no <Signature>"))?;
    let key_id = xml_unescape(between(sig_el, "KeyId=\"", "\"").ok_or(VerifyError::Malformed("no KeyId"))?);
    let sig_b64 = sig_el.rsplit('>').next().ok_or(VerifyError::Malformed("no signature value"))?;
    let sig_bytes: [u8; 64] = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(VerifyError::Malformed("signature is not 64 bytes of base64"))?;
    let key = key_for(&key_id).ok_or_else(|| VerifyError::UnknownKey(key_id.clone()))?;
    key.verify(data.as_bytes(), &Signature::from_bytes(&sig_bytes)).map_err(|_| VerifyError::BadSignature)?;
    let head = tag(data, "TTChung").ok_or(VerifyError::Malformed("no <TTChung>"))?;
    let head_own = match head.find("<BLThayThe>") {
        Some(i) => &head[..i],
        None => head,
    };
    let field = |s: &str, n: &str| tag(s, n).map(xml_unescape).unwrap_or_default();
    let agency = tag(data, "DVThu").unwrap_or_default();
    Ok(VerifiedDocument {
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

/// Crockford's base-32 alphabet: no I, L, O or U, so codes read aloud without confusion.
const LOOKUP_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// An unguessable lookup code `XXXX-XXXX-XXXX-XXXX` (80 bits from a CSPRNG).
pub fn generate_lookup_code(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    let mut out = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(LOOKUP_ALPHABET[(*b & 31) as usize] as char);
    }
    out
}

/// Reads a lookup code as a person typed it: case, spaces and hyphens do not matter, and
/// I/L read as 1 and O as 0 (Crockford). `None` when it cannot be a lookup code.
pub fn normalize_lookup_code(input: &str) -> Option<String> {
    let mut chars = Vec::with_capacity(16);
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' | '\t' => continue,
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        };
        if !c.is_ascii() || !LOOKUP_ALPHABET.contains(&(c as u8)) || chars.len() == 16 {
            return None;
        }
        chars.push(c);
    }
    if chars.len() != 16 {
        return None;
    }
    let mut out = String::with_capacity(19);
    for (i, c) in chars.into_iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    Some(out)
}

/// Timestamp with seconds, RFC 3339, for logs and JSON.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_codes_are_read_as_people_type_them() {
        let code = generate_lookup_code(&mut rand::rngs::OsRng);
        assert_eq!(normalize_lookup_code(&code).as_deref(), Some(code.as_str()));
        assert_eq!(normalize_lookup_code(&code.to_lowercase().replace('-', " ")).as_deref(), Some(code.as_str()));
        assert_eq!(normalize_lookup_code("abcd-efgh-jkmn-pqrs").as_deref(), Some("ABCD-EFGH-JKMN-PQRS"));
        assert_eq!(normalize_lookup_code("oooo-iiii-llll-0000").as_deref(), Some("0000-1111-1111-0000"));
        for bad in
            ["", "ABCD", "ABCD-EFGH-JKMN-PQRSX", "ABCD-EFGH-JKMN-PQRU", "ABCD-EFGH-JKMN-PQR€", "ABCD_EFGH_JKMN_PQRS"]
        {
            assert_eq!(normalize_lookup_code(bad), None, "{bad:?}");
        }
    }
}
