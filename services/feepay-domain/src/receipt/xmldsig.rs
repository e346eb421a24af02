//! The receipt's signature: an enveloped W3C XML Signature (XMLDSig 1.0) by the collector,
//! in the document's signature list `DSCKS/DVThu`, as Decision 1271/QĐ-CT places a
//! signer's signature.
//!
//! - `SignedInfo` is canonicalized with Canonical XML 1.0; the signature method is
//!   RSA-SHA256 (what Vietnamese CAs issue) or ECDSA-SHA256 for an EC certificate.
//! - Two references, SHA-256: the data part `DLBLai` by its `Id` (enveloped-signature
//!   and C14N transforms), and the `SignatureProperty` holding `SigningTime`, so the time
//!   of signing is covered by the signature.
//! - `KeyInfo/X509Data` carries the signer's subject and certificate (and any
//!   intermediates): a verifier needs only the trust anchor.
//!
//! Anyone can check a receipt with standard software:
//! `xmlsec1 --verify --trusted-pem ca.pem --id-attr:Id DLBLai receipt.xml`.
//!
//! What is written here is already in canonical form, so the digests are over the bytes
//! written; [`check`] recomputes them with [`super::c14n`] from a parsed document, which is
//! what a verifier of a document received from elsewhere must do.

use super::c14n::{self, Method};
use super::VerifyError;
use base64::Engine;
use roxmltree::{Document, Node};
use sha2::{Digest, Sha256, Sha512};

pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";

/// Limits on what a document may hold before any signature work: generous beside what a
/// receipt is (about a hundred elements, eight deep, two references of two transforms), and
/// small enough that checking the worst document that passes them costs milliseconds.
/// Whoever sends a document to be verified cannot make the work grow with its size.
pub mod limits {
    /// Elements in the whole document (a receipt of 500 fee lines has about 6 000).
    pub const ELEMENTS: usize = 10_000;
    /// Nesting depth of elements.
    pub const DEPTH: usize = 32;
    /// `Reference` elements in `SignedInfo` (a receipt has 2).
    pub const REFERENCES: usize = 4;
    /// `Transform` elements in one reference (a receipt's data part has 2).
    pub const TRANSFORMS: usize = 4;
    /// Certificates in `X509Data` (the signer's and its intermediates).
    pub const CERTIFICATES: usize = 8;
}

/// Refuses a document larger or deeper than any receipt could be ([`limits`]). Runs in one
/// pass, before any canonicalization or digest.
pub fn check_shape(doc: &Document<'_>) -> Result<(), VerifyError> {
    // Depth per node id; ids grow in document order, so a parent's is always known.
    let mut depth: Vec<u8> = Vec::new();
    let mut elements = 0usize;
    for n in doc.descendants().filter(|n| n.is_element()) {
        elements += 1;
        if elements > limits::ELEMENTS {
            return Err(VerifyError::Malformed(format!("more than {} elements: not a receipt", limits::ELEMENTS)));
        }
        let parent = n.parent_element().map_or(0, |p| depth.get(p.id().get_usize()).copied().unwrap_or(0));
        let d = parent.saturating_add(1);
        if usize::from(d) > limits::DEPTH {
            return Err(VerifyError::Malformed(format!(
                "elements nested deeper than {}: not a receipt",
                limits::DEPTH
            )));
        }
        let i = n.id().get_usize();
        if depth.len() <= i {
            depth.resize(i + 1, 0);
        }
        depth[i] = d;
    }
    Ok(())
}

/// The signature algorithm, by the signer's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SignatureAlgorithm {
    RsaSha256,
    EcdsaSha256,
}

impl SignatureAlgorithm {
    pub fn uri(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            SignatureAlgorithm::EcdsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        }
    }

    pub fn from_uri(uri: &str) -> Result<Self, VerifyError> {
        match uri {
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => Ok(SignatureAlgorithm::RsaSha256),
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => Ok(SignatureAlgorithm::EcdsaSha256),
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1" => {
                Err(VerifyError::Algorithm("RSA-SHA1, which is no longer accepted (SHA-1 is legacy)".into()))
            }
            other => Err(VerifyError::Algorithm(other.chars().take(100).collect())),
        }
    }
}

/// Why a signer could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing failed: {detail}")]
pub struct SignError {
    pub detail: String,
    /// The signer may work again without anyone changing anything (a token restarting,
    /// an HSM failing over): the event is tried again later by itself.
    pub transient: bool,
}

impl SignError {
    /// A refusal that needs a fix (a key that may not sign, a wrong PIN).
    pub fn new(detail: impl Into<String>) -> Self {
        SignError { detail: detail.into(), transient: false }
    }

    /// The signer cannot be reached now.
    pub fn transient(detail: impl Into<String>) -> Self {
        SignError { detail: detail.into(), transient: true }
    }
}

/// A private key able to sign for an agency, with its certificate. Implemented by the
/// services over a PKCS#11 token or a PKCS#12 file; the domain only calls it.
pub trait Signer: Send + Sync {
    fn algorithm(&self) -> SignatureAlgorithm;
    /// DER certificates: the signer's own first, then any intermediates.
    fn certificates(&self) -> &[Vec<u8>];
    /// The signer's subject, RFC 4514 (for `X509SubjectName`).
    fn subject(&self) -> &str;
    /// SHA-256 fingerprint (hex) of the signer's certificate: how receipts name it.
    fn fingerprint(&self) -> &str;
    /// Signs `data`. RSA: PKCS#1 v1.5 over SHA-256; ECDSA: `r || s`, each 32 bytes (the
    /// XML Signature encoding, not DER).
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SignError>;
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256_b64(bytes: &[u8]) -> String {
    b64(&Sha256::digest(bytes))
}

/// Text escaped as Canonical XML writes it in an attribute.
fn attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;")
}

/// The signature of a data part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The `Signature` element, to place in `DSCKS/DVThu`.
    pub element: String,
    pub signature_value: Vec<u8>,
}

/// Signs `data` (the canonical bytes of the element whose `Id` is `data_id`) at
/// `signing_time` (`YYYY-MM-DDThh:mm:ss`, GMT+7).
pub fn sign_enveloped(
    data_id: &str,
    data: &[u8],
    signing_time: &str,
    signature_id: &str,
    signer: &dyn Signer,
) -> Result<Signed, SignError> {
    let prop_id = format!("{signature_id}-SigningTime");
    // The property as Canonical XML renders it: its apex carries the namespace in scope.
    let property_inner = format!(
        " Id=\"{}\" Target=\"#{}\"><SigningTime>{}</SigningTime></SignatureProperty>",
        attr(&prop_id),
        attr(signature_id),
        super::xml_escape(signing_time)
    );
    let property_c14n = format!("<SignatureProperty xmlns=\"{DSIG_NS}\"{property_inner}");
    let signed_info_inner = format!(
        "<CanonicalizationMethod Algorithm=\"{c14n}\"></CanonicalizationMethod>\
         <SignatureMethod Algorithm=\"{alg}\"></SignatureMethod>\
         <Reference URI=\"#{data_id}\"><Transforms><Transform Algorithm=\"{ENVELOPED}\"></Transform>\
         <Transform Algorithm=\"{c14n}\"></Transform></Transforms>\
         <DigestMethod Algorithm=\"{SHA256}\"></DigestMethod><DigestValue>{data_digest}</DigestValue></Reference>\
         <Reference URI=\"#{prop}\"><DigestMethod Algorithm=\"{SHA256}\"></DigestMethod>\
         <DigestValue>{prop_digest}</DigestValue></Reference></SignedInfo>",
        c14n = Method::INCLUSIVE_URI,
        alg = signer.algorithm().uri(),
        data_id = attr(data_id),
        data_digest = sha256_b64(data),
        prop = attr(&prop_id),
        prop_digest = sha256_b64(property_c14n.as_bytes()),
    );
    let signed_info_c14n = format!("<SignedInfo xmlns=\"{DSIG_NS}\">{signed_info_inner}");
    let signature_value = signer.sign(signed_info_c14n.as_bytes())?;
    let mut element =
        String::with_capacity(2048 + signer.certificates().iter().map(|c| c.len() * 4 / 3).sum::<usize>());
    element.push_str(&format!("<Signature xmlns=\"{DSIG_NS}\" Id=\"{}\"><SignedInfo>", attr(signature_id)));
    element.push_str(&signed_info_inner);
    element.push_str("<SignatureValue>");
    element.push_str(&b64(&signature_value));
    element.push_str("</SignatureValue><KeyInfo><X509Data><X509SubjectName>");
    element.push_str(&super::xml_escape(signer.subject()));
    element.push_str("</X509SubjectName>");
    for cert in signer.certificates() {
        element.push_str("<X509Certificate>");
        element.push_str(&b64(cert));
        element.push_str("</X509Certificate>");
    }
    element.push_str("</X509Data></KeyInfo><Object><SignatureProperties><SignatureProperty");
    element.push_str(&property_inner);
    element.push_str("</SignatureProperties></Object></Signature>");
    Ok(Signed { element, signature_value })
}

/// A signature whose references all check: what remains for the caller is the public-key
/// arithmetic over `signed_info` and the certificate chain.
#[derive(Debug)]
pub struct CheckedSignature<'a, 'input> {
    pub algorithm: SignatureAlgorithm,
    /// Canonical bytes of `SignedInfo`: what the signature value signs.
    pub signed_info: Vec<u8>,
    pub signature_value: Vec<u8>,
    /// DER certificates from `KeyInfo`, in document order (the signer's first).
    pub certificates: Vec<Vec<u8>>,
    /// `SigningTime` as written (GMT+7), covered by the signature.
    pub signing_time: String,
    /// The signed data part: read the receipt's fields from this node only.
    pub data: Node<'a, 'input>,
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

fn ds_child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Result<Node<'a, 'i>, VerifyError> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name && c.tag_name().namespace() == Some(DSIG_NS))
        .ok_or_else(|| VerifyError::Malformed(format!("the signature has no {name}")))
}

fn id_of<'a>(n: Node<'a, '_>) -> Option<&'a str> {
    n.attribute("Id").or_else(|| n.attribute("ID")).or_else(|| n.attribute("id"))
}

fn base64_text(n: Node<'_, '_>, what: &str) -> Result<Vec<u8>, VerifyError> {
    let text: String = n.text().unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| VerifyError::Malformed(format!("{what} is not base64")))
}

/// Checks the receipt's collector signature: the document's shape, unique ids, and every
/// reference's digest; the data part must be covered, and the signing time.
pub fn check<'a, 'i>(doc: &'a Document<'i>) -> Result<CheckedSignature<'a, 'i>, VerifyError> {
    check_shape(doc)?;
    let root = doc.root_element();
    if root.tag_name().name() != "BLai" {
        return Err(VerifyError::Malformed("the root element is not BLai".into()));
    }
    // Wrapping attacks rely on a second element with the signed id: refuse any repeat.
    let mut ids = std::collections::BTreeSet::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        if let Some(id) = id_of(n) {
            if !ids.insert(id) {
                return Err(VerifyError::Malformed(format!("the id {id:?} is used twice")));
            }
        }
    }
    let data_parts: Vec<Node> = root.children().filter(|c| c.is_element() && c.tag_name().name() == "DLBLai").collect();
    let [data] = data_parts.as_slice() else {
        return Err(VerifyError::Malformed("the document must have exactly one data part DLBLai".into()));
    };
    let signature = child(root, "DSCKS")
        .and_then(|l| child(l, "DVThu"))
        .and_then(|c| child(c, "Signature"))
        .filter(|s| s.tag_name().namespace() == Some(DSIG_NS))
        .ok_or_else(|| VerifyError::Malformed("no collector's signature in DSCKS/DVThu".into()))?;
    let signed_info = ds_child(signature, "SignedInfo")?;
    let method_uri = ds_child(signed_info, "CanonicalizationMethod")?.attribute("Algorithm").unwrap_or("");
    let method = Method::from_uri(method_uri).ok_or_else(|| VerifyError::Algorithm(method_uri.to_string()))?;
    let algorithm =
        SignatureAlgorithm::from_uri(ds_child(signed_info, "SignatureMethod")?.attribute("Algorithm").unwrap_or(""))?;

    let mut covers_data = false;
    let mut signing_time = None;
    let references: Vec<Node> =
        signed_info.children().filter(|c| c.is_element() && c.tag_name().name() == "Reference").collect();
    if references.len() > limits::REFERENCES {
        return Err(VerifyError::Malformed(format!(
            "{} references in SignedInfo, at most {} allowed",
            references.len(),
            limits::REFERENCES
        )));
    }
    let mut digested = std::collections::BTreeSet::new();
    for reference in references {
        let uri = reference.attribute("URI").unwrap_or("");
        let id = uri
            .strip_prefix('#')
            .ok_or_else(|| VerifyError::Uncovered(format!("reference {uri:?} is not to this document")))?;
        if !digested.insert(id) {
            return Err(VerifyError::Malformed(format!("#{id} is referenced twice")));
        }
        let target = doc
            .descendants()
            .find(|n| n.is_element() && id_of(*n) == Some(id))
            .ok_or_else(|| VerifyError::Malformed(format!("reference #{id} names nothing")))?;
        let mut excluded = None;
        let mut ref_method = Method::Inclusive;
        if let Some(transforms) = child(reference, "Transforms") {
            if transforms.children().filter(|c| c.is_element()).count() > limits::TRANSFORMS {
                return Err(VerifyError::Malformed(format!(
                    "more than {} transforms in reference #{id}",
                    limits::TRANSFORMS
                )));
            }
            for t in transforms.children().filter(|c| c.is_element()) {
                let a = t.attribute("Algorithm").unwrap_or("");
                if a == ENVELOPED {
                    excluded = Some(signature);
                } else if let Some(m) = Method::from_uri(a) {
                    ref_method = m;
                } else {
                    return Err(VerifyError::Algorithm(a.chars().take(100).collect()));
                }
            }
        }
        let digest_uri = ds_child(reference, "DigestMethod")?.attribute("Algorithm").unwrap_or("");
        let canonical = c14n::canonicalize(target, ref_method, excluded);
        let digest = match digest_uri {
            SHA256 => Sha256::digest(&canonical).to_vec(),
            SHA512 => Sha512::digest(&canonical).to_vec(),
            other => return Err(VerifyError::Algorithm(other.chars().take(100).collect())),
        };
        if base64_text(ds_child(reference, "DigestValue")?, "DigestValue")? != digest {
            return Err(VerifyError::Digest(format!("#{id}")));
        }
        if target == *data {
            covers_data = true;
        }
        if target.tag_name().name() == "SignatureProperty" && target.ancestors().any(|a| a == signature) {
            signing_time = child(target, "SigningTime").and_then(|t| t.text()).map(str::to_string);
        }
    }
    if !covers_data {
        return Err(VerifyError::Uncovered("no reference to the data part DLBLai".into()));
    }
    let signing_time =
        signing_time.ok_or_else(|| VerifyError::Uncovered("the signing time is not among the signed parts".into()))?;
    let certificates = child(signature, "KeyInfo")
        .and_then(|k| child(k, "X509Data"))
        .map(|x| {
            x.children()
                .filter(|c| c.is_element() && c.tag_name().name() == "X509Certificate")
                .take(limits::CERTIFICATES + 1)
                .map(|c| base64_text(c, "X509Certificate"))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    if certificates.is_empty() {
        return Err(VerifyError::Certificate("the signature carries no X.509 certificate".into()));
    }
    if certificates.len() > limits::CERTIFICATES {
        return Err(VerifyError::Malformed(format!("more than {} certificates in X509Data", limits::CERTIFICATES)));
    }
    Ok(CheckedSignature {
        algorithm,
        signed_info: c14n::canonicalize(signed_info, method, None),
        signature_value: base64_text(ds_child(signature, "SignatureValue")?, "SignatureValue")?,
        certificates,
        signing_time,
        data: *data,
    })
}
