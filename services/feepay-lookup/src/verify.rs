//! The verdict on a receipt document: signature, registration, status and chain.

use crate::store::{Published, Store, StoredReceipt};
use feepay_domain::numbering::GENESIS_HASH;
use feepay_domain::receipt::VerifyError;
use feepay_runtime::pki::verify::{verify_receipt, Verification};
use feepay_runtime::pki::TrustAnchors;
use sea_orm::DbErr;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a verification waits for a free slot before it is answered "busy".
pub const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Where documents are checked: canonicalization, digests and public-key arithmetic run on
/// blocking threads, at most `workers` at once, never on the async workers that answer
/// requests. A burst of uploads then costs at most `workers` cores, waits in line for
/// [`SLOT_WAIT`] at most, and leaves every other page answering. (Each check is itself
/// bounded by the document limits of `xmldsig::limits`, so a slot is never held long.)
pub struct Checker {
    trust: Arc<TrustAnchors>,
    slots: Arc<Semaphore>,
}

/// Why a document got no verdict.
#[derive(Debug, thiserror::Error)]
pub enum NoVerdict {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("every verification slot stayed busy for {SLOT_WAIT:?}")]
    Busy,
    #[error("the verification task failed: {0}")]
    Task(String),
}

impl NoVerdict {
    /// The answer to give (logged here, once).
    pub fn failure(self) -> crate::failure::Failure {
        use crate::failure::Failure;
        match self {
            NoVerdict::Busy => {
                tracing::warn!("verification refused: every slot busy (FEEPAY_LOOKUP_VERIFY_WORKERS)");
                Failure::Busy { retry_after_secs: SLOT_WAIT.as_secs().max(1) }
            }
            e => {
                tracing::error!(error = %e, "verification failed");
                Failure::Unavailable
            }
        }
    }
}

impl Checker {
    /// The trust anchors signatures are checked against.
    pub fn trust(&self) -> &TrustAnchors {
        &self.trust
    }

    pub fn new(trust: TrustAnchors, workers: usize) -> Checker {
        Checker { trust: Arc::new(trust), slots: Arc::new(Semaphore::new(workers.max(1))) }
    }

    async fn check(
        &self,
        document: &str,
        keys: Arc<Published>,
    ) -> Result<Result<Verification, VerifyError>, NoVerdict> {
        let permit = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| NoVerdict::Busy)?
            .map_err(|e| NoVerdict::Task(e.to_string()))?;
        let trust = self.trust.clone();
        let document = document.to_owned();
        // The permit moves into the task: it is released when the work ends, also when the
        // request that asked has gone.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_receipt(&document, &trust, |id| {
                keys.legacy_keys.iter().find(|k| k.key_id == id).and_then(|k| k.verifying_key())
            })
        })
        .await
        .map_err(|e| NoVerdict::Task(e.to_string()))
    }
}

/// What a verifier learns about a document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Signature valid, document is the one on record, and it sits correctly in its chain.
    pub authentic: bool,
    pub signature_valid: bool,
    /// Why the signature does not verify, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_error: Option<String>,
    /// The signer: certificate fingerprint (SHA-256), or the key id of a layout 1.0 receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The certificate that signed (layout 2.0.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
    /// Layout version of the document (`PBan`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout_version: Option<String>,
    /// Agency the signing key is registered for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_agency_code: Option<String>,
    /// The signing certificate is on the revocation list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_revoked: Option<RevokedCertificate>,
    /// The document is byte for byte the one the issuer stored.
    pub on_record: bool,
    /// `issued`, `replaced`, `cancelled` (rules before 1 July 2026) or `unknown` (not on record).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The receipt that replaces this one, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<ReceiptRef>,
    pub chain: ChainCheck,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptRef>,
    /// One sentence in Vietnamese for people.
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptRef {
    pub agency_code: String,
    pub template_symbol: String,
    pub receipt_symbol: String,
    pub number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
}

/// A revocation of the signing certificate, as a verifier needs to see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedCertificate {
    /// From when its signatures are not accepted, RFC 3339.
    pub revoked_at: String,
    /// RFC 5280 reason (`key_compromise`, `superseded`, …).
    pub reason: String,
    /// The document was signed on or after the revocation time (or, not being the copy on
    /// record, its own signing time cannot be relied on).
    pub signed_after: bool,
}

/// The signing certificate as a verifier needs to see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signer {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_code: Option<String>,
    /// Validity, RFC 3339.
    pub valid_from: String,
    pub valid_until: String,
    /// When the document was signed (GMT+7), as covered by the signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<String>,
}

fn signer(v: &Verification) -> Option<Signer> {
    v.signer.as_ref().map(|c| Signer {
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        serial: c.serial.clone(),
        tax_code: c.tax_code.clone(),
        valid_from: feepay_domain::receipt::rfc3339(c.not_before),
        valid_until: feepay_domain::receipt::rfc3339(c.not_after),
        signing_time: v.signing_time.clone(),
    })
}

/// Position in the series' hash chain.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainCheck {
    /// The hash of the previous receipt written in this one matches that receipt (or the
    /// genesis value for number 1).
    pub previous_matches: bool,
    /// The next receipt names this one's hash; absent when this is the last one so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_matches: Option<bool>,
}

fn reference(r: &StoredReceipt) -> ReceiptRef {
    ReceiptRef {
        agency_code: r.agency_code.clone(),
        template_symbol: r.template.clone(),
        receipt_symbol: r.symbol.clone(),
        number: format!("{:07}", r.number),
        total: Some(r.receipt.total.clone()),
    }
}

/// The summary of a signature made with a revoked certificate.
const REVOKED: &str = "Chữ ký không được chấp nhận: chứng thư số đã bị thu hồi trước thời điểm ký. Liên hệ đơn vị thu.";

/// The verdict as a metric outcome.
pub fn outcome(v: &Verdict) -> &'static str {
    if v.authentic {
        "found"
    } else {
        "not_authentic"
    }
}

/// The verdict on a document that is not a receipt on record.
fn not_on_record(signature_valid: bool, summary: &str) -> Verdict {
    Verdict {
        authentic: false,
        signature_valid,
        signature_error: None,
        key_id: None,
        signer: None,
        layout_version: None,
        key_agency_code: None,
        certificate_revoked: None,
        on_record: false,
        status: "unknown".into(),
        cancelled_at: None,
        cancel_reason: None,
        replaced_by: None,
        chain: ChainCheck::default(),
        receipt: None,
        summary: summary.into(),
    }
}

/// Verifies `document`: its XML signature and certificate against the trust anchors (or,
/// for layout 1.0, the registered Ed25519 key), then against the records.
pub async fn verify(store: &Store, checker: &Checker, document: &str) -> Result<Verdict, NoVerdict> {
    let keys = store.keys().await?;
    let checked = checker.check(document, keys.clone()).await?;
    let verification = match checked {
        Ok(v) => v,
        Err(e) => {
            return Ok(Verdict {
                signature_error: Some(e.to_string()),
                ..not_on_record(
                    false,
                    "Chữ ký số không hợp lệ: tài liệu không phải biên lai do hệ thống phát hành, đã bị sửa đổi, hoặc chứng thư số không hợp lệ.",
                )
            })
        }
    };
    let signer = signer(&verification);
    let doc = verification.document;
    let layout_version = Some(doc.version.clone());
    let key_agency = keys.agency_of(&doc.key_id).map(str::to_string);
    // A trusted CA's certificate naming the right tax code is not enough: the certificate
    // must be one this system registered before signing with it, and (unless a delegate
    // signed) registered for the agency the document names.
    let delegated = doc.signer_tax_code != doc.agency_tax_code;
    let registered = match &key_agency {
        Some(a) => delegated || *a == doc.agency_code,
        None => false,
    };
    if !registered {
        return Ok(Verdict {
            signature_error: Some(format!(
                "certificate {} is not registered for agency {}",
                doc.key_id, doc.agency_code
            )),
            key_id: Some(doc.key_id),
            key_agency_code: key_agency,
            ..not_on_record(
                false,
                "Chứng thư số ký tài liệu không phải chứng thư đã đăng ký của đơn vị thu này: không phải biên lai do hệ thống phát hành.",
            )
        });
    }
    let stored = match doc.receipt_id.parse() {
        Ok(id) => store.by_id(id).await?,
        Err(_) => None,
    };
    // A revoked certificate's signature counts only for a copy on record signed before the
    // revocation: the signing time of any other document is the signer's own claim.
    let revocation = keys.revocations.get(&doc.key_id);
    let signed_at = verification.signing_time.as_deref().and_then(feepay_runtime::pki::verify::parse_signing_time);
    let revoked = |on_record: bool| {
        revocation.map(|r| RevokedCertificate {
            revoked_at: feepay_domain::receipt::rfc3339(r.revoked_at),
            reason: r.reason.clone(),
            signed_after: !on_record || signed_at.is_none_or(|t| r.covers(t)),
        })
    };
    let Some(stored) = stored else {
        if let Some(r) = revoked(false) {
            return Ok(Verdict {
                signature_error: Some(format!(
                    "certificate {} was revoked from {} ({})",
                    doc.key_id, r.revoked_at, r.reason
                )),
                key_id: Some(doc.key_id),
                signer,
                layout_version,
                key_agency_code: key_agency,
                certificate_revoked: Some(r),
                ..not_on_record(false, REVOKED)
            });
        }
        return Ok(Verdict {
            key_id: Some(doc.key_id),
            signer,
            layout_version,
            key_agency_code: key_agency,
            receipt: Some(ReceiptRef {
                agency_code: doc.agency_code,
                template_symbol: doc.template,
                receipt_symbol: doc.symbol,
                number: doc.number,
                total: Some(doc.total),
            }),
            ..not_on_record(true, "Chữ ký hợp lệ nhưng biên lai không có trong sổ của hệ thống.")
        });
    };
    let on_record = stored.document_hash == doc.document_hash;
    let n = store.neighbours(&stored).await?;
    let previous_matches = match n.previous_document_hash {
        Some(h) => h == doc.previous_hash,
        None => stored.number == 1 && doc.previous_hash == GENESIS_HASH,
    };
    let chain = ChainCheck { previous_matches, next_matches: n.next_previous_hash.map(|h| h == doc.document_hash) };
    let replaced_by = match stored.replaced_by {
        Some(id) => store.by_id(id).await?.map(|r| reference(&r)),
        None => None,
    };
    let certificate_revoked = revoked(on_record);
    let revoked_before_signing = certificate_revoked.as_ref().is_some_and(|r| r.signed_after);
    let signature_valid = !revoked_before_signing;
    let authentic = signature_valid && on_record && chain.previous_matches && chain.next_matches != Some(false);
    let summary = if revoked_before_signing {
        REVOKED.to_string()
    } else if !on_record {
        "Chữ ký hợp lệ nhưng tài liệu khác với bản đã lưu trong sổ: không dùng tài liệu này.".to_string()
    } else if !authentic {
        "Biên lai có trong sổ nhưng chuỗi băm của dãy biên lai không khớp: cần kiểm tra.".to_string()
    } else if stored.cancelled {
        match &replaced_by {
            Some(r) => format!(
                "Biên lai xác thực nhưng ĐÃ BỊ HỦY và được thay thế bởi biên lai số {} ký hiệu {}.",
                r.number, r.receipt_symbol
            ),
            None => "Biên lai xác thực nhưng ĐÃ BỊ HỦY.".to_string(),
        }
    } else if stored.status == "replaced" {
        match &replaced_by {
            Some(r) => format!(
                "Biên lai xác thực nhưng ĐÃ ĐƯỢC THAY THẾ bởi biên lai số {} ký hiệu {}.",
                r.number, r.receipt_symbol
            ),
            None => "Biên lai xác thực nhưng ĐÃ ĐƯỢC THAY THẾ.".to_string(),
        }
    } else if let Some(r) = &certificate_revoked {
        format!(
            "Biên lai hợp lệ: được ký trước khi chứng thư số bị thu hồi ({}), trùng với bản lưu trong sổ và đúng vị trí trong dãy biên lai.",
            r.revoked_at
        )
    } else {
        "Biên lai hợp lệ: chữ ký đúng, trùng với bản lưu trong sổ và đúng vị trí trong dãy biên lai.".to_string()
    };
    Ok(Verdict {
        authentic,
        signature_valid,
        signature_error: certificate_revoked
            .as_ref()
            .filter(|r| r.signed_after)
            .map(|r| format!("certificate {} was revoked from {} ({})", doc.key_id, r.revoked_at, r.reason)),
        key_id: Some(doc.key_id),
        signer,
        layout_version,
        key_agency_code: key_agency,
        certificate_revoked,
        on_record,
        status: stored.status.clone(),
        cancelled_at: stored.cancelled_at.map(feepay_domain::receipt::rfc3339),
        cancel_reason: stored.cancel_reason.clone(),
        replaced_by,
        chain,
        receipt: Some(reference(&stored)),
        summary,
    })
}
