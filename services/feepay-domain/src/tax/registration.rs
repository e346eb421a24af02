//! 01/ĐKTĐ-CTĐT, the registration (or change) of the use of e-documents, Circular
//! 91/2026/TT-BTC Art. 17 and Appendix III: before it first uses e-receipts a collector
//! registers, and the tax authority answers on 01/TB-ĐKĐT (Appendix IV). The form has: the
//! taxpayer and its contact; 1. who issues; 2. the kind of e-document (receipts without or
//! with a printed face value); 3. how data is sent, where Circular 91 adds "sent on the
//! summary 01/TH-BLĐT" (Art. 4.6.d); 4. the certificates used; 5. the delegations of
//! receipt issuing.
//!
//! Tags: those the tax authority's display stylesheet for the form reads (namespace
//! `http://www.nhantokhai.gdt.gov.vn/xslt`, the version of Decree 70/2025):
//! `TKhai/DLTKhai/TTChung` (`PBan`, `MSo`, `Ten`, `HThuc`, `TNNT`, `MST`, `CQTQLy`,
//! `MCQTQLy`, `NLHe`, `DTLHe`, `DCLHe`, `DCTDTu`, `DDanh`, `NLap`), `NDTKhai/DTPHanh`
//! (`TCCNPHanh`, `CQTPHanh`), `NDTKhai/LHSDung` (`CTTNCNhan`, `CTKTTTMDTu`, `BLTPLPKIn`,
//! `BLTPLPIn`, `BLTTPLPhi`), `NDTKhai/HTGDLCTDT` (`CDLQCCQT`, `CDLQTCTN`, `CDLQTCTNUT`),
//! `NDTKhai/DSCTSSDung/CTS` (`TTChuc`, `Seri`, `TNgay`, `DNgay`, `HThuc`) and
//! `NDTKhai/DSDKUNhiem/DKUNhiem` (`LDKUNhiem`, `TLCTu`, `KHMCTu`, `KHCTu`, `MST`, `TTChuc`,
//! `MDich`, `TNgay`, `DNgay`, `PThuc`). The two choices Circular 91 adds to section 3 have
//! no published tag: `CDLTTiep` (sent directly) and `CDLBTHop` (01/TH-BLĐT) are this
//! project's (unconfirmed).

use super::{TaxOffice, REGISTRATION_VERSION};
use crate::canonical::Xml;
use crate::receipt::AgencyInfo;
use chrono::NaiveDate;

/// A form the collector registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredForm {
    /// 1 without, 2 with a printed face value.
    pub kind: u8,
    pub name: String,
    pub template: String,
    /// The receipt symbol as it will read this year, e.g. `26TAA`.
    pub symbol: String,
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

/// A delegation declared on the registration (section 5), from either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredDelegation {
    /// `true`: the registrant delegates (bên ủy nhiệm) to `counterpart`; `false`: it is the
    /// delegate (bên nhận ủy nhiệm) of `counterpart`.
    pub delegating: bool,
    pub counterpart: AgencyInfo,
    /// The receipt's name, template and symbol delegated.
    pub receipt_name: String,
    pub template: String,
    pub symbol: String,
    /// Purpose: the fees, with the numbers delegated (Decree 254 Art. 25.2).
    pub purpose: String,
    pub valid_from: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    /// How the delegated receipts are paid for (phương thức thanh toán biên lai ủy nhiệm).
    pub payment: String,
}

/// How the registrant sends its data (section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Submission {
    pub tax_portal: bool,
    pub service_provider: bool,
    pub entrusted_provider: bool,
    pub direct: bool,
    /// On the summary 01/TH-BLĐT (Circular 91 Art. 4.6.d).
    pub daily_summary: bool,
}

/// 01/ĐKTĐ-CTĐT: registration (or change) of the use of e-receipts, a draft to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub collector: AgencyInfo,
    pub tax_office: TaxOffice,
    pub place: String,
    /// 1 first registration, 2 change of information.
    pub action: u8,
    pub contact_name: String,
    pub contact_phone: String,
    pub contact_email: String,
    pub forms: Vec<RegisteredForm>,
    pub submission: Submission,
    pub certificates: Vec<DeclaredCertificate>,
    pub delegations: Vec<DeclaredDelegation>,
    pub created_on: NaiveDate,
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
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
        x.el("NLHe", &self.contact_name);
        x.el("DCLHe", &self.collector.address);
        x.el("DCTDTu", &self.contact_email);
        x.el("DTLHe", &self.contact_phone);
        x.el("DDanh", &self.place);
        x.el("NLap", &self.created_on.to_string());
        x.close("TTChung");
        x.open("NDTKhai");
        x.open("DTPHanh");
        x.el("TCCNPHanh", "1");
        x.el("CQTPHanh", "0");
        x.close("DTPHanh");
        x.open("LHSDung");
        x.el("CTTNCNhan", "0");
        x.el("CTKTTTMDTu", "0");
        x.el("BLTPLPKIn", flag(self.forms.iter().any(|f| f.kind == 1)));
        x.el("BLTPLPIn", flag(self.forms.iter().any(|f| f.kind == 2)));
        x.el("BLTTPLPhi", "0");
        x.close("LHSDung");
        x.open("HTGDLCTDT");
        x.el("CDLQCCQT", flag(self.submission.tax_portal));
        x.el("CDLQTCTN", flag(self.submission.service_provider));
        x.el("CDLQTCTNUT", flag(self.submission.entrusted_provider));
        x.el("CDLTTiep", flag(self.submission.direct));
        x.el("CDLBTHop", flag(self.submission.daily_summary));
        x.close("HTGDLCTDT");
        // Not a section of the form: the forms and symbols the registrant will use, which
        // the tax authority's answer (01/TB-ĐKĐT) and the delegations refer to.
        x.open("DSMBLai");
        for f in &self.forms {
            x.open("MBLai");
            x.el("TLoai", &f.kind.to_string());
            x.el("Ten", &f.name);
            x.el("KHMCTu", &f.template);
            x.el("KHCTu", &f.symbol);
            x.close("MBLai");
        }
        x.close("DSMBLai");
        x.open("DSCTSSDung");
        for c in &self.certificates {
            x.open("CTS");
            x.el("TTChuc", &c.issuer);
            x.el("Seri", &c.serial);
            x.el("TNgay", &c.valid_from.to_string());
            x.el("DNgay", &c.valid_until.to_string());
            x.el("HThuc", &c.action.to_string());
            x.close("CTS");
        }
        x.close("DSCTSSDung");
        if !self.delegations.is_empty() {
            x.open("DSDKUNhiem");
            for d in &self.delegations {
                x.open("DKUNhiem");
                x.el("LDKUNhiem", if d.delegating { "1" } else { "2" });
                x.el("TLCTu", &d.receipt_name);
                x.el("KHMCTu", &d.template);
                x.el("KHCTu", &d.symbol);
                x.el("MST", &d.counterpart.tax_code);
                x.el("TTChuc", &d.counterpart.name);
                x.el("MDich", &d.purpose);
                x.el("TNgay", &d.valid_from.to_string());
                x.opt("DNgay", &d.valid_until.map(|u| u.to_string()).unwrap_or_default());
                x.el("PThuc", &d.payment);
                x.close("DKUNhiem");
            }
            x.close("DSDKUNhiem");
        }
        x.close("NDTKhai");
        x.close("DLTKhai");
        x.0.push_str("<DSCKS><NNT></NNT></DSCKS></TKhai>\n");
        x.0
    }
}
