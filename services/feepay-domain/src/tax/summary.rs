//! 01/TH-BLĐT, the summary of the e-receipts issued (Bảng tổng hợp dữ liệu biên lai điện tử
//! gửi cơ quan thuế), Circular 91/2026/TT-BTC Art. 4.6.d and Appendix III: a collector, or a
//! delegate for the receipts it issues (Decree 254/2026/NĐ-CP Art. 25.6), sends it on the
//! day the receipts are issued (Decree 254 Art. 29.3.b), signed.
//!
//! The form: a header with the data period [01] (here a day), first submission [02] or
//! supplement number [03], the sender's name [04] and tax code [05]; one row per receipt
//! with STT (1), template (2), symbol (3), number (4), date (5), kind of tax, fee or charge
//! (6), amount (7), exchange rate (8), status (9: new / information corrected on the
//! summary / replacing or adjusting), period of the data corrected (10), the related
//! receipt (11), explanation (12) and note (13). Only [05] of the header survives legibly in
//! the public copy of the appendix; [01]–[04] are read after the same header of 01/TH-HĐĐT
//! (unconfirmed).
//!
//! No XML layout is published for the form: the elements follow 01/TH-HĐĐT's (`SBTHDLieu`,
//! `LKDLieu` = `N` for a day, `KDLieu` = `dd/mm/yyyy`, `LDau`, `BSLThu`, `TThai`,
//! `LKDLDChinh`, `KDLDChinh`, `GChu`) with the receipt's own identification tags
//! (`KHMSCTu`, `KHCTu`, `SCTu`), in this project's layout [`super::SUMMARY_VERSION`].

use super::{seal, SealedDocument, TaxOffice, SUMMARY_VERSION};
use crate::canonical::Xml;
use crate::money::Vnd;
use crate::receipt::xmldsig::{SignError, Signer};
use crate::receipt::AgencyInfo;
use chrono::{DateTime, NaiveDate, Utc};

/// Rows per document: a day of a busy collector is sent as several documents, each of
/// which fits one event on the broker (about 350 bytes a row).
pub const ROWS_MAX: usize = 1000;

/// Column (9), the row's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SummaryStatus {
    /// "Mới": a receipt issued.
    New,
    /// "Sửa thông tin trên bảng kê": a row sent earlier carried wrong data (the summary is
    /// built from the signed receipts, so this arises only when a sent row is corrected).
    InformationCorrected,
    /// "Biên lai thay thế, điều chỉnh": a receipt replacing another (Circular 91 Art. 20.2).
    ReplacingOrAdjusting,
}

impl SummaryStatus {
    /// `TThai` (this project's code list, in the form's order: no official list exists).
    pub fn code(self) -> &'static str {
        match self {
            SummaryStatus::New => "1",
            SummaryStatus::InformationCorrected => "2",
            SummaryStatus::ReplacingOrAdjusting => "3",
        }
    }

    pub fn vi(self) -> &'static str {
        match self {
            SummaryStatus::New => "Mới",
            SummaryStatus::InformationCorrected => "Sửa thông tin trên bảng tổng hợp",
            SummaryStatus::ReplacingOrAdjusting => "Biên lai thay thế",
        }
    }
}

/// Column (11): the receipt a replacement replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedReceipt {
    pub template: String,
    pub symbol: String,
    pub number: String,
    pub issued_on: NaiveDate,
}

/// One receipt of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub template: String,
    pub symbol: String,
    pub number: String,
    pub issued_on: NaiveDate,
    /// Column (6): the names of the fees and charges on the receipt.
    pub fees: String,
    pub amount: Vnd,
    pub status: SummaryStatus,
    /// Column (10): the day of the summary whose row this one corrects.
    pub corrected_day: Option<NaiveDate>,
    pub related: Option<RelatedReceipt>,
    /// Column (12), e.g. why a row is sent after the day of issue.
    pub explanation: String,
    pub note: String,
}

/// One document of the summary of a sender's receipts of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailySummary {
    /// Who sends and signs: the collector, or the delegate for the receipts it issued.
    pub sender: AgencyInfo,
    pub tax_office: TaxOffice,
    /// The day the receipts were issued (GMT+7).
    pub day: NaiveDate,
    /// `SBTHDLieu`: the document's number among those of the sender for the day, from 1.
    pub number: u32,
    /// `BSLThu`: 0 for the first submission of the day, then 1, 2, … for each later one
    /// (receipts issued after the cut-off, rows sent late). `LDau` is 1 when it is 0.
    pub supplement: u32,
    pub rows: Vec<SummaryRow>,
    pub created_at: DateTime<Utc>,
}

fn dmy(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

impl DailySummary {
    /// The data part `DLBTHop`, canonical.
    pub fn data_xml(&self) -> String {
        let mut x = Xml::with_capacity(1024 + self.rows.len() * 360);
        x.open_with_id("DLBTHop", "data");
        x.open("TTChung");
        x.el("PBan", SUMMARY_VERSION);
        x.el("MSo", "01/TH-BLĐT");
        x.el("Ten", "Bảng tổng hợp dữ liệu biên lai điện tử gửi cơ quan thuế");
        x.el("SBTHDLieu", &self.number.to_string());
        x.el("LKDLieu", "N");
        x.el("KDLieu", &dmy(self.day));
        x.el("LDau", if self.supplement == 0 { "1" } else { "0" });
        x.el("BSLThu", &self.supplement.to_string());
        x.el("NLap", &crate::receipt::date_gmt7(self.created_at));
        x.el("TNNT", &self.sender.name);
        x.el("MST", &self.sender.tax_code);
        x.opt("DChi", &self.sender.address);
        x.opt("MCQT", &self.tax_office.code);
        x.opt("TCQT", &self.tax_office.name);
        x.close("TTChung");
        x.open("NDBTHDLieu");
        x.open("DSDLieu");
        for (i, r) in self.rows.iter().enumerate() {
            x.open("DLieu");
            x.el("STT", &(i + 1).to_string());
            x.el("KHMSCTu", &r.template);
            x.el("KHCTu", &r.symbol);
            x.el("SCTu", &r.number);
            x.el("NLap", &r.issued_on.to_string());
            x.el("TLPhi", &r.fees);
            x.el("STien", &r.amount.to_string());
            // No exchange rate: the receipts are in đồng (Decree 254 Art. 23.2.h).
            x.el("DVTTe", "VND");
            x.el("TThai", r.status.code());
            if let Some(d) = r.corrected_day {
                x.el("LKDLDChinh", "N");
                x.el("KDLDChinh", &dmy(d));
            }
            if let Some(rel) = &r.related {
                x.el("KHMSCTuLQuan", &rel.template);
                x.el("KHCTuLQuan", &rel.symbol);
                x.el("SCTuLQuan", &rel.number);
                x.el("NLapLQuan", &rel.issued_on.to_string());
            }
            x.opt("GTrinh", &r.explanation);
            x.opt("GChu", &r.note);
            x.close("DLieu");
        }
        x.close("DSDLieu");
        x.close("NDBTHDLieu");
        x.close("DLBTHop");
        x.0
    }

    pub fn seal(&self, signer: &dyn Signer) -> Result<SealedDocument, SignError> {
        seal("BTHDLBLai", &self.data_xml(), self.created_at, signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(number: &str, status: SummaryStatus) -> SummaryRow {
        SummaryRow {
            template: "EBL01".into(),
            symbol: "26TAA".into(),
            number: number.into(),
            issued_on: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            fees: "Lệ phí hộ tịch".into(),
            amount: Vnd::new(28000).unwrap(),
            status,
            corrected_day: None,
            related: None,
            explanation: String::new(),
            note: String::new(),
        }
    }

    #[test]
    fn a_day_is_one_period_and_supplements_are_counted() {
        let mut replacing = row("0000002", SummaryStatus::ReplacingOrAdjusting);
        replacing.related = Some(RelatedReceipt {
            template: "EBL01".into(),
            symbol: "26TAA".into(),
            number: "0000001".into(),
            issued_on: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        });
        let s = DailySummary {
            sender: AgencyInfo {
                code: "X".into(),
                name: "Trung tâm".into(),
                tax_code: "0100109106".into(),
                address: "Bắc Ninh".into(),
            },
            tax_office: TaxOffice { code: "23100".into(), name: "Thuế thành phố Bắc Ninh".into() },
            day: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            number: 2,
            supplement: 1,
            rows: vec![row("0000001", SummaryStatus::New), replacing],
            created_at: Utc.with_ymd_and_hms(2026, 12, 2, 16, 30, 0).unwrap(),
        };
        let xml = s.data_xml();
        assert!(xml.contains("<SBTHDLieu>2</SBTHDLieu><LKDLieu>N</LKDLieu><KDLieu>02/12/2026</KDLieu><LDau>0</LDau><BSLThu>1</BSLThu><NLap>2026-12-02</NLap>"), "{xml}");
        assert!(xml.contains("<TThai>1</TThai>"));
        assert!(xml.contains("<TThai>3</TThai><KHMSCTuLQuan>EBL01</KHMSCTuLQuan><KHCTuLQuan>26TAA</KHCTuLQuan><SCTuLQuan>0000001</SCTuLQuan><NLapLQuan>2026-11-30</NLapLQuan>"), "{xml}");
        // NLap of the summary is the GMT+7 date of signing: 23:30 on 2 December.
        assert!(roxmltree::Document::parse(&xml).is_ok());
    }
}
