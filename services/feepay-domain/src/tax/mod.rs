//! Documents for the tax authority, signed like receipts (an enveloped XML Signature of the
//! data part `Id="data"`, under `DSCKS/NNT`, the taxpayer's entry):
//!
//! - [`summary`]: 01/TH-BLĐT, the summary of the receipts issued on a day (Circular
//!   91/2026/TT-BTC Art. 4.6.d, Appendix III; Decree 254/2026/NĐ-CP Art. 29.3.b);
//! - [`notice`]: 04/SS-CTĐT, the notice of receipts issued in error (Circular 91 Art. 20.1);
//! - [`registration`]: 01/ĐKTĐ-CTĐT, the registration of e-receipt use (Circular 91
//!   Art. 17), drafted for the operator to submit;
//! - [`usage`]: BC26/BLĐT, the usage report of periods that ended before 1 July 2026.
//!
//! The tax authority has published no XML layout for 01/TH-BLĐT; where a layout is not
//! public the elements follow its published conventions (Decision 1450/QĐ-TCT and 1271/QĐ-CT:
//! `TTChung`, `PBan`, `MSo`, `NLap`, `TNNT`, `MST`, the 01/TH-HĐĐT summary's `SBTHDLieu`,
//! `LKDLieu`, `KDLieu`, `LDau`, `BSLThu`, `TThai`) and the version constants below are this
//! project's layout versions, so a change in the official layout is a new version.

mod notice;
mod period;
mod registration;
mod summary;
mod usage;

pub use notice::{ErrorNotice, NoticeEntry, NoticeKind};
pub use period::Period;
pub use registration::{DeclaredCertificate, DeclaredDelegation, RegisteredForm, Registration, Submission};
pub use summary::{DailySummary, RelatedReceipt, SummaryRow, SummaryStatus, ROWS_MAX};
pub use usage::{UsageReport, UsageRow};

use crate::receipt::xmldsig::{self, SignError, Signer};
use chrono::{DateTime, Utc};

/// Layout version of the BC26/BLĐT documents written now.
pub const BC26_VERSION: &str = "2.0.0";
/// Layout version of the 04/SS-CTĐT notices written now.
pub const NOTICE_VERSION: &str = "2.1.0";
/// Layout version of the 01/ĐKTĐ-CTĐT drafts written now.
pub const REGISTRATION_VERSION: &str = "2.1.0";
/// Layout version of the 01/TH-BLĐT summaries written now (this project's: no official XML).
pub const SUMMARY_VERSION: &str = "1.0.0";

/// The tax office that manages a collector.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxOffice {
    pub code: String,
    pub name: String,
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
