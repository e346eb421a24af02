//! The receipt (biên lai điện tử): what it says, its signed XML document, and how a
//! document is checked.
//!
//! - [`document`]: the XML layout of Decision 1271/QĐ-CT for the receipt (version 2.0.0),
//!   written in canonical form, with every project-specific datum in `TTKhac/TTin`.
//! - [`xmldsig`]: the enveloped W3C XML Signature in `DSCKS/DVThu` (RSA-SHA256 or
//!   ECDSA-SHA256 under the collector's X.509 certificate, signing time in
//!   `SignatureProperties`), and the checks of a received document's references.
//! - [`c14n`]: Canonical XML, for verifying documents as the standard digests them.
//! - [`legacy`]: receipts issued under layout 1.0 (Ed25519, before certificates) stay
//!   verifiable with their registered public keys.
//!
//! Nothing here does I/O: signing is a [`xmldsig::Signer`] passed in (a token, a file),
//! and the public-key arithmetic of verification is the caller's.

pub mod c14n;
pub mod document;
pub mod legacy;
pub mod xmldsig;

pub use legacy::{public_key_from_hex, AgencyKey, KeyError};

use crate::money::Vnd;
use crate::numbering::{gmt7, ReceiptNumber};
use crate::waiver::LineAssessment;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
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

/// The payer as printed: name, identification (any of personal ID, tax code, passport, or
/// none), address. No email on the document.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PayerInfo {
    pub full_name: String,
    pub personal_id: String,
    pub tax_code: String,
    #[serde(default)]
    pub passport: String,
    pub address: String,
}

impl fmt::Debug for PayerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayerInfo")
            .field("personal_id", &crate::ids::mask(&self.personal_id))
            .field("tax_code", &crate::ids::mask(&self.tax_code))
            .field("passport", &crate::ids::mask(&self.passport))
            .finish_non_exhaustive()
    }
}

/// How the payer paid, as the receipt says it (hình thức thanh toán).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Cash at the one-stop counter.
    Cash,
    /// Bank transfer.
    BankTransfer,
    /// Bank card (at a terminal or online).
    Card,
    /// E-wallet (MoMo, ViettelMoney, ...).
    EWallet,
    /// The national online payment platform of the National Public Service Portal.
    NationalPlatform,
}

impl PaymentMethod {
    /// As printed on the receipt.
    pub fn vi(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "Tiền mặt",
            PaymentMethod::BankTransfer => "Chuyển khoản",
            PaymentMethod::Card => "Thẻ ngân hàng",
            PaymentMethod::EWallet => "Ví điện tử",
            PaymentMethod::NationalPlatform => "Nền tảng thanh toán trực tuyến của Cổng Dịch vụ công quốc gia",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "cash",
            PaymentMethod::BankTransfer => "bank_transfer",
            PaymentMethod::Card => "card",
            PaymentMethod::EWallet => "e_wallet",
            PaymentMethod::NationalPlatform => "national_platform",
        }
    }
}

/// The receipt this one replaces: what the replacement names (number, symbol, date).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replaces {
    pub receipt_id: String,
    pub template: String,
    pub symbol: String,
    pub number: String,
    /// Date of issue of the replaced receipt (GMT+7).
    pub issued_on: Option<NaiveDate>,
}

/// Everything printed on a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptContent {
    pub receipt_id: String,
    pub payment_id: String,
    /// The receipt's name as Decree 123 (as amended) words it for its form, e.g.
    /// "Biên lai thu phí, lệ phí không có mệnh giá".
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
    pub payment_method: PaymentMethod,
    pub provider: String,
    pub provider_reference: String,
    pub issued_at: DateTime<Utc>,
    pub lookup_code: String,
    pub previous_hash: String,
    pub replaces: Option<Replaces>,
    /// The desk issuing under a delegation (ủy nhiệm) from the collector: named on the
    /// receipt, and its certificate signs.
    pub delegate: Option<AgencyInfo>,
}

/// A receipt sealed: its signed document, its hash, and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedReceipt {
    pub document: String,
    /// Base64 of the signature value (for the event and the record).
    pub signature_b64: String,
    pub document_hash: String,
    /// What identifies the signer: the certificate's SHA-256 fingerprint (hex).
    pub key_id: String,
}

/// `YYYY-MM-DDThh:mm:ss` in GMT+7.
pub fn datetime_gmt7(at: DateTime<Utc>) -> String {
    at.with_timezone(&gmt7()).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `YYYY-MM-DD` in GMT+7.
pub fn date_gmt7(at: DateTime<Utc>) -> String {
    at.with_timezone(&gmt7()).format("%Y-%m-%d").to_string()
}

/// Timestamp with seconds, RFC 3339, for logs and JSON.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// SHA-256 of a document, hex.
pub fn document_hash(document: &str) -> String {
    hex::encode(Sha256::digest(document.as_bytes()))
}

/// Escapes text as Canonical XML writes character data: `&`, `<`, `>`; control
/// characters XML 1.0 cannot carry are dropped, and tabs and line breaks (which no field
/// of a receipt holds) become spaces, so what is written is already canonical.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// What a checked document says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedDocument {
    /// Layout version (`PBan`).
    pub version: String,
    /// The signer: certificate fingerprint (XML signature) or key id (layout 1.0).
    pub key_id: String,
    pub receipt_id: String,
    pub agency_code: String,
    pub agency_tax_code: String,
    /// The tax code the signing certificate must name: the delegate's when the receipt was
    /// issued under a delegation, else the collector's.
    pub signer_tax_code: String,
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
    Malformed(String),
    #[error("signing key {0} is unknown")]
    UnknownKey(String),
    #[error("signature does not match the content: the document was altered or signed by another key")]
    BadSignature,
    #[error("the signature does not cover the receipt: {0}")]
    Uncovered(String),
    #[error("digest of {0} does not match: the signed part was altered")]
    Digest(String),
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    #[error("certificate: {0}")]
    Certificate(String),
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
