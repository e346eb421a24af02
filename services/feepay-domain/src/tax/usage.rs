//! BC26/BLĐT, the report on the use of e-receipts (`BCTHSDBLai`), for periods that ended
//! before 1 July 2026: Circular 91/2026/TT-BTC's Appendix III has no such form, receipts of
//! a form version with [`crate::forms::Transmission::DailySummary`] are sent on the day of
//! issue instead. One `DLieu` row per template and symbol with the receipt type (`TLoai`),
//! template (`KHMCTu`), symbol (`KHCTu`), receipts used in the period (`SLuong`) and the
//! amount (`TgTien`), as the tax authority's public stylesheet for the form reads them. A
//! period without use still has its report, with zero rows.

use super::{seal, Period, SealedDocument, BC26_VERSION};
use crate::canonical::Xml;
use crate::money::Vnd;
use crate::receipt::xmldsig::{SignError, Signer};
use crate::receipt::AgencyInfo;
use chrono::{DateTime, Utc};

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
