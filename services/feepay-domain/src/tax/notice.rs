//! 04/SS-CTĐT, the notice that e-documents were issued in error (`TBao`), Circular
//! 91/2026/TT-BTC Art. 20.1 and Appendix III: when a receipt has a wrong name, address,
//! amount in words or other content but the right tax code and amount, the collector tells
//! the payer, does not reissue, and tells the tax authority on this form. Its table: STT,
//! template (`KHMSCTu`), symbol (`KHCTu`), number (`SCTu`), date (`NLap`), the type of
//! e-document (`LCTDT`), notice or explanation (`TCTBao`), reason (`LDo`).
//!
//! Receipts cancelled under the rules before 1 July 2026 (Decree 123/2020/NĐ-CP) were
//! notified on the same form with the cancellation as the notice kind.

use super::{seal, SealedDocument, TaxOffice, NOTICE_VERSION};
use crate::canonical::Xml;
use crate::receipt::xmldsig::{SignError, Signer};
use crate::receipt::AgencyInfo;
use chrono::{DateTime, NaiveDate, Utc};

/// What the notice says of a receipt (the form's column "Thông báo/Giải trình").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// The receipt was cancelled (rules before 1 July 2026).
    Cancellation,
    /// The receipt was issued with an error that Circular 91 Art. 20.1 corrects by notice.
    ErrorNotified,
}

impl NoticeKind {
    /// `TCTBao`. Public implementations of the 04/SS forms read the value list as 1 hủy
    /// (older stylesheets) or thông báo (the stylesheets of Decree 70/2025), 2 điều chỉnh,
    /// 3 thay thế, 4 giải trình; a notice under Art. 20.1 is "thông báo" (unconfirmed
    /// against the official list, so the code is kept here, in one place).
    pub fn code(self) -> &'static str {
        match self {
            NoticeKind::Cancellation | NoticeKind::ErrorNotified => "1",
        }
    }
}

/// The type of e-document a notice names (`LCTDT`): a fee receipt is 3 without a printed
/// face value and 4 with one in the tax authority's value list of 04/SS-CTĐT (unconfirmed
/// list; 2 is a withholding certificate), keyed by the form's kind.
pub fn document_type(form_kind: u8) -> &'static str {
    match form_kind {
        2 => "4",
        _ => "3",
    }
}

/// A receipt named in a notice of documents issued in error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeEntry {
    pub template: String,
    pub symbol: String,
    pub number: String,
    pub issued_on: NaiveDate,
    /// The form's kind: 1 without, 2 with a printed face value.
    pub form_kind: u8,
    pub kind: NoticeKind,
    pub reason: String,
}

/// 04/SS-CTĐT: the collector tells the tax authority that receipts were issued in error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorNotice {
    pub collector: AgencyInfo,
    pub tax_office: TaxOffice,
    pub place: String,
    pub entries: Vec<NoticeEntry>,
    pub created_at: DateTime<Utc>,
}

impl ErrorNotice {
    pub fn data_xml(&self) -> String {
        let mut x = Xml::with_capacity(1024 + self.entries.len() * 200);
        x.open_with_id("DLTBao", "data");
        x.el("PBan", NOTICE_VERSION);
        x.el("MSo", "04/SS-CTĐT");
        x.el("Ten", "Thông báo chứng từ điện tử đã lập sai");
        // 1: the issuer notifies on its own initiative (2: answers the tax office).
        x.el("Loai", "1");
        x.el("MCQT", &self.tax_office.code);
        x.el("TCQT", &self.tax_office.name);
        x.el("TNNT", &self.collector.name);
        x.el("MST", &self.collector.tax_code);
        x.el("DDanh", &self.place);
        x.el("NTBao", &crate::receipt::date_gmt7(self.created_at));
        x.open("DSCTu");
        for (i, e) in self.entries.iter().enumerate() {
            x.open("CTu");
            x.el("STT", &(i + 1).to_string());
            x.el("KHMSCTu", &e.template);
            x.el("KHCTu", &e.symbol);
            x.el("SCTu", &e.number);
            x.el("NLap", &e.issued_on.to_string());
            x.el("LCTDT", document_type(e.form_kind));
            x.el("TCTBao", e.kind.code());
            x.el("LDo", &e.reason);
            x.close("CTu");
        }
        x.close("DSCTu");
        x.close("DLTBao");
        x.0
    }

    pub fn seal(&self, signer: &dyn Signer) -> Result<SealedDocument, SignError> {
        seal("TBao", &self.data_xml(), self.created_at, signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fee_receipt_is_type_3_or_4_never_2() {
        assert_eq!(document_type(1), "3");
        assert_eq!(document_type(2), "4");
        let notice = ErrorNotice {
            collector: AgencyInfo {
                code: "X".into(),
                name: "X".into(),
                tax_code: "0100109106".into(),
                address: "".into(),
            },
            tax_office: TaxOffice::default(),
            place: String::new(),
            entries: vec![NoticeEntry {
                template: "EBL01".into(),
                symbol: "26TAA".into(),
                number: "0000001".into(),
                issued_on: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                form_kind: 1,
                kind: NoticeKind::ErrorNotified,
                reason: "Sai họ tên người nộp".into(),
            }],
            created_at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 2, 3, 0, 0).unwrap(),
        };
        let xml = notice.data_xml();
        assert!(xml.contains("<LCTDT>3</LCTDT><TCTBao>1</TCTBao><LDo>Sai họ tên người nộp</LDo>"), "{xml}");
    }
}
