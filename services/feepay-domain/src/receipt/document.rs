//! The receipt's XML document, layout version 2.0.0.
//!
//! What Decree 254/2026/NĐ-CP Art. 23.2 requires of a receipt, and where it is: (a) its
//! name `TTChung/Ten`; (b) template `KHMSCTu` and symbol `KHCTu`, as Circular 91/2026/TT-BTC
//! Appendix II.2 makes them; (c) the number `SCTu`, at most 8 digits; (d) the collector's
//! name and tax code `DVThu/Ten`, `DVThu/MST`; (đ) each fee's name `TPLPhi` and amount
//! `ThTien`, the total in figures `TgTien` and in words `TgTienBChu`; (e) the date `NLap`;
//! (g) the collector's digital signature `DSCKS/DVThu`; (h) Vietnamese, in đồng (`DVTTe`).
//! A receipt issued under a delegation (Art. 25.4) also names the delegate and its address
//! (`DVThu/TTKhac` `UyNhiem.*`); the principal's signature is not required, the delegate's
//! is the one on the receipt. The payer is not a required item; a payer without an
//! identifier is still written. Extra data stays in `TTKhac/TTin`, each value at most
//! [`OTHER_INFO_MAX`] characters as the tax authority's format rules (Decision 1271/QĐ-CT)
//! cap them.
//!
//! ```text
//! BLai
//! ├── DLBLai Id="data"                      the data part: what is signed
//! │   ├── TTChung                           general information
//! │   │   ├── PBan, Ten, KHMSCTu, KHCTu, SCTu, NLap (date), DVTTe, HTTToan
//! │   │   └── TTKhac/TTin*                  project data: MaBienLai, MaGiaoDich, MaTraCuu,
//! │   │                                     ThoiDiemLap, MaBamTruoc, MaHoSo, MaTTHC, ...,
//! │   │                                     BLThayThe* for a replacement
//! │   └── NDBLai                            content
//! │       ├── DVThu: Ten, MST, DChi, TTKhac (MaDonVi, UyNhiem.*)  the collector (and
//! │       │                                                       the delegate issuing)
//! │       ├── NNop: Ten, MST?, SDDCN?, SHChieu?, DChi?          the payer
//! │       ├── DSKhoan/Khoan*: STT, MPLPhi, TPLPhi, LPLPhi, SLuong, MThu, STGiam?, ThTien,
//! │       │                   TTKhac (the waiver and its legal basis)
//! │       └── TToan: TgTien, TgTienBChu
//! └── DSCKS/DVThu/Signature                 the collector's XML signature
//! ```
//!
//! Where the standard names a datum its tag is used (`TTChung`, `PBan`, `NLap` as
//! `YYYY-MM-DD`, `DVTTe`, `HTTToan`, `Ten`, `MST`, `DChi`, `STT`, `SLuong`, `ThTien`,
//! `TgTien`, `TTKhac/TTin` with `TTruong`/`KDLieu`/`DLieu`, `DSCKS`); the receipt's own
//! identification follows the names the tax authority uses for e-receipts in its notice of
//! documents issued in error (04/SS-CTĐT: `KHMSCTu`, `KHCTu`, `SCTu`); the tax
//! authority's receipt forms name the root, data and content parts `BLai`, `DLBLai`,
//! `NDBLai`. Everything specific to this project travels in `TTKhac/TTin` entries, which
//! is what the standard leaves them for. `deploy/xsd/bien-lai-2.0.0.xsd` is the schema.
//!
//! The writer emits canonical XML (no insignificant whitespace, canonical escaping, empty
//! elements as start and end tags), so the signed digest is over the bytes written.

use super::xmldsig::{self, SignError, Signer};
use super::{date_gmt7, datetime_gmt7, ReceiptContent, SealedReceipt, VerifiedDocument};
use crate::canonical::Xml;
use roxmltree::Node;

/// Layout version of documents written now.
pub const VERSION: &str = "2.0.0";
/// Most characters of a `TTKhac/TTin/DLieu` value.
pub const OTHER_INFO_MAX: usize = 500;
/// `Id` of the data part.
pub const DATA_ID: &str = "data";
/// `Id` of the collector's signature.
pub const SIGNATURE_ID: &str = "DVThu";

impl ReceiptContent {
    /// The data part, canonical bytes: what is signed.
    pub fn data_xml(&self) -> String {
        let mut x = Xml::with_capacity(3072);
        x.open_with_id("DLBLai", DATA_ID);
        x.open("TTChung");
        x.el("PBan", VERSION);
        x.el("Ten", &self.title);
        x.el("KHMSCTu", &self.template);
        x.el("KHCTu", &self.symbol);
        x.el("SCTu", &self.number.to_string());
        x.el("NLap", &date_gmt7(self.issued_at));
        x.el("DVTTe", "VND");
        x.el("HTTToan", self.payment_method.vi());
        x.open("TTKhac");
        x.info("MaBienLai", "string", &self.receipt_id);
        x.info("ThoiDiemLap", "dateTime", &datetime_gmt7(self.issued_at));
        x.info("MaTraCuu", "string", &self.lookup_code);
        x.info("MaBamTruoc", "string", &self.previous_hash);
        x.info("MaGiaoDich", "string", &self.payment_id);
        x.info("MaHoSo", "string", &self.dossier_code);
        x.info("MaTTHC", "string", &self.procedure_code);
        x.info("TrungGianThanhToan", "string", &self.provider);
        if !self.provider_reference.is_empty() {
            x.info("MaThamChieu", "string", &self.provider_reference);
        }
        if let Some(r) = &self.replaces {
            x.info("BLThayThe.KHMSCTu", "string", &r.template);
            x.info("BLThayThe.KHCTu", "string", &r.symbol);
            x.info("BLThayThe.SCTu", "string", &r.number);
            if let Some(d) = r.issued_on {
                x.info("BLThayThe.NLap", "date", &d.format("%Y-%m-%d").to_string());
            }
            x.info("BLThayThe.MaBienLai", "string", &r.receipt_id);
        }
        x.close("TTKhac");
        x.close("TTChung");
        x.open("NDBLai");
        x.open("DVThu");
        x.el("Ten", &self.agency.name);
        x.el("MST", &self.agency.tax_code);
        x.el("DChi", &self.agency.address);
        x.open("TTKhac");
        x.info("MaDonVi", "string", &self.agency.code);
        if let Some(d) = &self.delegate {
            // Issued under a delegation: the delegate's identity, whose certificate signs.
            x.info("UyNhiem.MaDonVi", "string", &d.code);
            x.info("UyNhiem.Ten", "string", &d.name);
            x.info("UyNhiem.MST", "string", &d.tax_code);
            x.info("UyNhiem.DChi", "string", &d.address);
        }
        x.close("TTKhac");
        x.close("DVThu");
        x.open("NNop");
        x.el("Ten", &self.payer.full_name);
        x.opt("MST", &self.payer.tax_code);
        x.opt("SDDCN", &self.payer.personal_id);
        x.opt("SHChieu", &self.payer.passport);
        x.opt("DChi", &self.payer.address);
        x.close("NNop");
        x.open("DSKhoan");
        for (i, l) in self.lines.iter().enumerate() {
            x.open("Khoan");
            x.el("STT", &(i + 1).to_string());
            x.el("MPLPhi", &l.fee_code);
            x.el("TPLPhi", &l.fee_name);
            x.el("LPLPhi", l.kind.vi());
            x.el("SLuong", &l.quantity.to_string());
            x.el("MThu", &l.base.to_string());
            if let Some(w) = &l.applied {
                x.el("STGiam", &w.reduction.to_string());
            }
            x.el("ThTien", &l.due.to_string());
            if let Some(w) = &l.applied {
                x.open("TTKhac");
                x.info("MienGiam.VanBan", "string", &w.document_number);
                x.info("MienGiam.CoQuanBanHanh", "string", &w.issuing_body);
                x.info("MienGiam.NoiDung", "string", &w.description);
                x.info("MienGiam.MaQuyTac", "string", &w.rule_id);
                x.close("TTKhac");
            }
            x.close("Khoan");
        }
        x.close("DSKhoan");
        x.open("TToan");
        x.el("TgTien", &self.total.to_string());
        x.el("TgTienBChu", &crate::words::amount_in_words(self.total));
        x.close("TToan");
        x.close("NDBLai");
        x.close("DLBLai");
        x.0
    }

    /// Signs the data part with the collector's signer and assembles the document.
    pub fn seal(&self, signer: &dyn Signer) -> Result<SealedReceipt, SignError> {
        let data = self.data_xml();
        let signed =
            xmldsig::sign_enveloped(DATA_ID, data.as_bytes(), &datetime_gmt7(self.issued_at), SIGNATURE_ID, signer)?;
        let mut doc = String::with_capacity(data.len() + signed.element.len() + 96);
        doc.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<BLai>");
        doc.push_str(&data);
        doc.push_str("<DSCKS><DVThu>");
        doc.push_str(&signed.element);
        doc.push_str("</DVThu></DSCKS></BLai>\n");
        let document_hash = super::document_hash(&doc);
        Ok(SealedReceipt {
            document: doc,
            signature_b64: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &signed.signature_value),
            document_hash,
            key_id: signer.fingerprint().to_string(),
        })
    }
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text(n: Option<Node<'_, '_>>) -> String {
    n.and_then(|n| n.text()).unwrap_or("").to_string()
}

/// The value of a `TTKhac/TTin` entry of `parent`.
pub fn other_info(parent: Node<'_, '_>, field: &str) -> String {
    child(parent, "TTKhac")
        .into_iter()
        .flat_map(|t| t.children().filter(|c| c.is_element() && c.tag_name().name() == "TTin"))
        .find(|t| text(child(*t, "TTruong")) == field)
        .map(|t| text(child(t, "DLieu")))
        .unwrap_or_default()
}

/// What a (signed, checked) data part says about the receipt.
pub fn read_fields(data: Node<'_, '_>, key_id: String, document_hash: String) -> VerifiedDocument {
    let head = child(data, "TTChung");
    let body = child(data, "NDBLai");
    let collector = body.and_then(|b| child(b, "DVThu"));
    let from_head = |tag: &str| text(head.and_then(|h| child(h, tag)));
    VerifiedDocument {
        version: from_head("PBan"),
        key_id,
        receipt_id: head.map(|h| other_info(h, "MaBienLai")).unwrap_or_default(),
        agency_code: collector.map(|c| other_info(c, "MaDonVi")).unwrap_or_default(),
        agency_tax_code: text(collector.and_then(|c| child(c, "MST"))),
        signer_tax_code: collector
            .map(|c| other_info(c, "UyNhiem.MST"))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| text(collector.and_then(|c| child(c, "MST")))),
        template: from_head("KHMSCTu"),
        symbol: from_head("KHCTu"),
        number: from_head("SCTu"),
        previous_hash: head.map(|h| other_info(h, "MaBamTruoc")).unwrap_or_default(),
        document_hash,
        total: text(body.and_then(|b| child(b, "TToan")).and_then(|t| child(t, "TgTien"))),
        lookup_code: head.map(|h| other_info(h, "MaTraCuu")).unwrap_or_default(),
    }
}
