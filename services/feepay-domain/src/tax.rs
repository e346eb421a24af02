//! Documents for the tax authority, in the layouts of its data formats (Decision 1271/QĐ-CT):
//!
//! - BC26/BLĐT, the report on the use of e-receipts (`BCTHSDBLai`): one `DLieu` row per
//!   template and symbol with the receipt type (`TLoai`), template (`KHMCTu`), symbol
//!   (`KHCTu`), receipts used in the period (`SLuong`) and the amount (`TgTien`), as the tax
//!   authority's public stylesheet for the form reads them. A period without use still has
//!   its report, with zero rows.
//! - 04/SS-CTĐT, the notice that e-documents were issued in error (`TBao`), sent when a
//!   receipt is cancelled: `DLTBao` with `MSo`, `Ten`, `Loai`, the tax office, the issuer
//!   and `DSCTu/CTu` (template `KHMSCTu`, symbol `KHCTu`, number `SCTu`, date `NLap`, type
//!   `LCTDT`, reason `LDo`).
//! - 01/ĐKTĐ-CTĐT, the registration of e-document use (`TKhai`), drafted from the reference
//!   data and the certificates for the operator to submit.
//!
//! Each data part carries `Id="data"` and is signed like a receipt (an enveloped XML
//! Signature, here under `DSCKS/NNT`, the taxpayer's entry). Elements the public sources do
//! not show (the header of BC26 beyond `NLap`, the body of 01/ĐKTĐ-CTĐT) follow the same
//! conventions and are marked in [`BC26_VERSION`] and [`REGISTRATION_VERSION`] as this
//! project's layout versions, so a change in the official layout is a new version.

use crate::canonical::Xml;
use crate::money::Vnd;
use crate::receipt::xmldsig::{self, SignError, Signer};
use crate::receipt::AgencyInfo;
use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// Layout version of the BC26/BLĐT documents written now.
pub const BC26_VERSION: &str = "2.0.0";
/// Layout version of the 04/SS-CTĐT notices written now.
pub const NOTICE_VERSION: &str = "2.0.0";
/// Layout version of the 01/ĐKTĐ-CTĐT drafts written now.
pub const REGISTRATION_VERSION: &str = "2.0.0";
/// `LCTDT` of an e-receipt in the notice of documents issued in error (unconfirmed: the
/// value lists of Decision 1271 name the e-document types).
pub const LCTDT_RECEIPT: &str = "2";

/// A reporting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Quarter { year: i32, quarter: u32 },
    Month { year: i32, month: u32 },
}

impl Period {
    /// The period of this kind that ended last before `today` (GMT+7 date).
    pub fn last_closed(quarterly: bool, today: NaiveDate) -> Period {
        let (y, m) = (today.year(), today.month());
        if quarterly {
            let q = (m - 1) / 3 + 1;
            if q == 1 {
                Period::Quarter { year: y - 1, quarter: 4 }
            } else {
                Period::Quarter { year: y, quarter: q - 1 }
            }
        } else if m == 1 {
            Period::Month { year: y - 1, month: 12 }
        } else {
            Period::Month { year: y, month: m - 1 }
        }
    }

    /// Parses `2026-Q3` or `2026-09`.
    pub fn parse(s: &str) -> Option<Period> {
        let (y, rest) = s.split_once('-')?;
        let year: i32 = y.parse().ok()?;
        if let Some(q) = rest.strip_prefix('Q') {
            let quarter: u32 = q.parse().ok()?;
            (1..=4).contains(&quarter).then_some(Period::Quarter { year, quarter })
        } else {
            let month: u32 = rest.parse().ok()?;
            (1..=12).contains(&month).then_some(Period::Month { year, month })
        }
    }

    /// First and last day.
    pub fn days(self) -> (NaiveDate, NaiveDate) {
        let (y, first_month, months) = match self {
            Period::Quarter { year, quarter } => (year, (quarter - 1) * 3 + 1, 3),
            Period::Month { year, month } => (year, month, 1),
        };
        let from = NaiveDate::from_ymd_opt(y, first_month, 1).expect("valid period");
        let next = if first_month + months > 12 {
            NaiveDate::from_ymd_opt(y + 1, first_month + months - 12, 1)
        } else {
            NaiveDate::from_ymd_opt(y, first_month + months, 1)
        }
        .expect("valid period");
        (from, next.pred_opt().expect("a day before"))
    }

    pub fn year(self) -> i32 {
        match self {
            Period::Quarter { year, .. } | Period::Month { year, .. } => year,
        }
    }

    /// `Q` for a quarter, `T` (tháng) for a month.
    fn kind_code(self) -> &'static str {
        match self {
            Period::Quarter { .. } => "Q",
            Period::Month { .. } => "T",
        }
    }

    /// The period as the form writes it: `3/2026`.
    fn number_text(self) -> String {
        match self {
            Period::Quarter { year, quarter } => format!("{quarter}/{year}"),
            Period::Month { year, month } => format!("{month}/{year}"),
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Period::Quarter { year, quarter } => write!(f, "{year}-Q{quarter}"),
            Period::Month { year, month } => write!(f, "{year}-{month:02}"),
        }
    }
}

/// A signed document for the tax authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedDocument {
    pub document: String,
    pub document_hash: String,
    /// Fingerprint of the certificate that signed.
    pub key_id: String,
}

/// Signs a data part (`<tag Id="data">…`) and wraps it in `root` with the signature in
/// `DSCKS/NNT`.
fn seal(root: &str, data: &str, signing_time: DateTime<Utc>, signer: &dyn Signer) -> Result<SealedDocument, SignError> {
    let signed =
        xmldsig::sign_enveloped("data", data.as_bytes(), &crate::receipt::datetime_gmt7(signing_time), "NNT", signer)?;
    let mut doc = String::with_capacity(data.len() + signed.element.len() + 128);
    doc.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    doc.push_str(root);
    doc.push('>');
    doc.push_str(data);
    doc.push_str("<DSCKS><NNT>");
    doc.push_str(&signed.element);
    doc.push_str("</NNT></DSCKS></");
    doc.push_str(root);
    doc.push_str(">\n");
    Ok(SealedDocument {
        document_hash: crate::receipt::document_hash(&doc),
        document: doc,
        key_id: signer.fingerprint().to_string(),
    })
}

/// One row of BC26: a template and symbol of the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// `TLoai`: 1 without a printed face value, 2 with one.
    pub kind: u8,
    pub template: String,
    pub symbol: String,
    /// Receipts numbered in the period (a cancelled receipt used its number).
    pub used: u64,
    /// Amount on the receipts of the period that are still valid.
    pub total: Vnd,
}

/// The report on the use of e-receipts of one collector for one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    pub collector: AgencyInfo,
    pub period: Period,
    /// Place of issue (địa danh), e.g. the province.
    pub place: String,
    pub rows: Vec<UsageRow>,
    pub created_at: DateTime<Utc>,
}

impl UsageReport {
    /// The data part `DLBCTHSDBLai`, canonical.
    pub fn data_xml(&self) -> String {
        let (from, to) = self.period.days();
        let mut x = Xml::with_capacity(1024 + self.rows.len() * 160);
        x.open_with_id("DLBCTHSDBLai", "data");
        x.open("TTChung");
        x.el("PBan", BC26_VERSION);
        x.el("MSo", "BC26/BLĐT");
        x.el("Ten", "Báo cáo tình hình sử dụng biên lai");
        x.el("LKBCao", self.period.kind_code());
        x.el("KBCao", &self.period.number_text());
        x.el("TNgay", &from.to_string());
        x.el("DNgay", &to.to_string());
        x.el("TNNT", &self.collector.name);
        x.el("MST", &self.collector.tax_code);
        x.el("DChi", &self.collector.address);
        x.el("DDanh", &self.place);
        x.el("NLap", &crate::receipt::date_gmt7(self.created_at));
        x.close("TTChung");
        x.open("NDBCTHSDBLai");
        for r in &self.rows {
            x.open("DLieu");
            x.el("TLoai", &r.kind.to_string());
            x.el("KHMCTu", &r.template);
            x.el("KHCTu", &r.symbol);
            x.el("SLuong", &r.used.to_string());
            x.el("TgTien", &r.total.to_string());
            x.close("DLieu");
        }
        x.close("NDBCTHSDBLai");
        x.close("DLBCTHSDBLai");
        x.0
    }

    pub fn seal(&self, signer: &dyn Signer) -> Result<SealedDocument, SignError> {
        seal("BCTHSDBLai", &self.data_xml(), self.created_at, signer)
    }
}

/// A receipt named in a notice of documents issued in error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeEntry {
    pub template: String,
    pub symbol: String,
    pub number: String,
    pub issued_on: NaiveDate,
    pub reason: String,
}

/// The tax office that manages a collector.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxOffice {
    pub code: String,
    pub name: String,
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
        let mut x = Xml::with_capacity(1024);
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
            x.el("LCTDT", LCTDT_RECEIPT);
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

/// A form the collector registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredForm {
    pub kind: u8,
    pub name: String,
    pub template: String,
    /// The symbol rule, e.g. `{yy}T`.
    pub symbol_rule: String,
}

/// A certificate declared on the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredCertificate {
    pub issuer: String,
    pub serial: String,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    /// 1 add, 2 renew, 3 stop using.
    pub action: u8,
}

/// A delegation declared on the registration: who issues on the collector's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredDelegation {
    pub delegate: AgencyInfo,
    pub fees: Vec<String>,
    pub basis: String,
}

/// 01/ĐKTĐ-CTĐT: registration (or change) of the use of e-receipts, a draft to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub collector: AgencyInfo,
    pub tax_office: TaxOffice,
    pub place: String,
    /// 1 first registration, 2 change of information.
    pub action: u8,
    pub contact_email: String,
    pub forms: Vec<RegisteredForm>,
    pub certificates: Vec<DeclaredCertificate>,
    pub delegations: Vec<DeclaredDelegation>,
    pub created_on: NaiveDate,
}

impl Registration {
    /// The draft document (unsigned: the operator signs it when submitting).
    pub fn draft_xml(&self) -> String {
        let mut x = Xml::with_capacity(2048);
        x.0.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TKhai>");
        x.open_with_id("DLTKhai", "data");
        x.open("TTChung");
        x.el("PBan", REGISTRATION_VERSION);
        x.el("MSo", "01/ĐKTĐ-CTĐT");
        x.el("Ten", "Tờ khai đăng ký/thay đổi thông tin sử dụng chứng từ điện tử");
        x.el("HThuc", &self.action.to_string());
        x.el("TNNT", &self.collector.name);
        x.el("MST", &self.collector.tax_code);
        x.el("CQTQLy", &self.tax_office.name);
        x.el("MCQTQLy", &self.tax_office.code);
        x.el("DCLHe", &self.collector.address);
        x.el("DCTDTu", &self.contact_email);
        x.el("DDanh", &self.place);
        x.el("NLap", &self.created_on.to_string());
        x.close("TTChung");
        x.open("NDTKhai");
        x.el("LCTu", "Biên lai điện tử");
        x.open("DSMBLai");
        for f in &self.forms {
            x.open("MBLai");
            x.el("TLoai", &f.kind.to_string());
            x.el("Ten", &f.name);
            x.el("KHMSCTu", &f.template);
            x.el("QTKHCTu", &f.symbol_rule);
            x.close("MBLai");
        }
        x.close("DSMBLai");
        x.open("DSCTS");
        for (i, c) in self.certificates.iter().enumerate() {
            x.open("CTS");
            x.el("STT", &(i + 1).to_string());
            x.el("TTChuc", &c.issuer);
            x.el("Seri", &c.serial);
            x.el("TNgay", &c.valid_from.to_string());
            x.el("DNgay", &c.valid_until.to_string());
            x.el("HThuc", &c.action.to_string());
            x.close("CTS");
        }
        x.close("DSCTS");
        if !self.delegations.is_empty() {
            x.open("DSUNhiem");
            for (i, d) in self.delegations.iter().enumerate() {
                x.open("UNhiem");
                x.el("STT", &(i + 1).to_string());
                x.el("TDVNUNhiem", &d.delegate.name);
                x.el("MSTDVNUNhiem", &d.delegate.tax_code);
                x.el("NDUNhiem", &d.fees.join(", "));
                x.el("CCu", &d.basis);
                x.close("UNhiem");
            }
            x.close("DSUNhiem");
        }
        x.close("NDTKhai");
        x.close("DLTKhai");
        x.0.push_str("<DSCKS><NNT></NNT></DSCKS></TKhai>\n");
        x.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_close_and_span_their_days() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(Period::last_closed(true, d("2026-11-28")), Period::Quarter { year: 2026, quarter: 3 });
        assert_eq!(Period::last_closed(true, d("2026-02-01")), Period::Quarter { year: 2025, quarter: 4 });
        assert_eq!(Period::last_closed(false, d("2026-01-15")), Period::Month { year: 2025, month: 12 });
        assert_eq!(Period::Quarter { year: 2026, quarter: 4 }.days(), (d("2026-10-01"), d("2026-12-31")));
        assert_eq!(Period::Month { year: 2024, month: 2 }.days(), (d("2024-02-01"), d("2024-02-29")));
        assert_eq!(Period::parse("2026-Q3"), Some(Period::Quarter { year: 2026, quarter: 3 }));
        assert_eq!(Period::parse("2026-09"), Some(Period::Month { year: 2026, month: 9 }));
        assert_eq!(Period::parse("2026-Q5"), None);
        assert_eq!(Period::Quarter { year: 2026, quarter: 3 }.to_string(), "2026-Q3");
    }
}
