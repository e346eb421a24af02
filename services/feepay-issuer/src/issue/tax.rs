//! Documents for the tax authority, signed by the issuer (which alone holds the keys): the
//! notice 04/SS-CTĐT of a receipt issued in error (Circular 91/2026/TT-BTC Art. 20.1; before
//! 1 July 2026 also of each cancelled receipt), in the transaction that records it, and the
//! usage report BC26/BLĐT of each collector for periods of the forms that had it (before 1
//! July 2026). The daily summaries 01/TH-BLĐT are [`super::summaries`]'. Each document is
//! stored in `tax_documents` and published on `tax.documents` through the outbox.

use super::{IssueError, Issuer, Work};
use crate::store::receipts;
use chrono::{DateTime, NaiveDate, Utc};
use feepay_domain::forms::Transmission;
use feepay_domain::numbering::{date_gmt7, gmt7};
use feepay_domain::receipt::AgencyInfo;
use feepay_domain::reference::ReferenceData;
use feepay_domain::tax::{ErrorNotice, NoticeEntry, NoticeKind, Period, SealedDocument, UsageReport, UsageRow};
use feepay_domain::Vnd;
use feepay_proto::v1;
use feepay_runtime::convert::ts;
use feepay_runtime::outbox::OutboxEvent;
use feepay_runtime::parking::ParkReason;
use feepay_runtime::refdata::LoadedReference;
use feepay_runtime::tax_documents::{self, Kind, TaxDocument};
use sea_orm::sea_query::Alias;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Namespace of tax document ids (stable: a retried transaction makes the same id).
pub(super) const TAX_NS: Uuid = Uuid::from_u128(0x6a1f_3c2e_9b4d_4e71_a5c8_2f0d_7e93_b416);

/// An agency as named on a day (GMT+7).
pub(super) fn agency_info(reference: &ReferenceData, code: &str, on: NaiveDate) -> Option<AgencyInfo> {
    reference.agencies.get(code).map(|a| AgencyInfo {
        code: a.code.clone(),
        name: a.name_on(on).to_string(),
        tax_code: a.tax_code.clone(),
        address: a.address.clone(),
    })
}

fn kind_pb(kind: Kind) -> v1::TaxDocumentKind {
    match kind {
        Kind::UsageReport => v1::TaxDocumentKind::UsageReport,
        Kind::ErrorNotice => v1::TaxDocumentKind::ErrorNotice,
        Kind::DailySummary => v1::TaxDocumentKind::DailySummary,
    }
}

/// A document to record: what it is, about whom, for which period or receipt.
pub(super) struct NewTaxDocument<'a> {
    pub kind: Kind,
    /// Who sends (and signed) it.
    pub agency: &'a AgencyInfo,
    pub period: Option<String>,
    pub receipt_id: Option<Uuid>,
    /// A daily summary's number and submission of its day, and how many rows it has.
    pub sequence: Option<(u32, u32, u32)>,
    /// What makes the document's id (stable across retries).
    pub key: String,
}

impl Issuer {
    /// Signs a document with an agency's certificate (checked as for receipts).
    pub(super) fn sign_tax_document(
        &self,
        reference: &ReferenceData,
        agency: &str,
        at: DateTime<Utc>,
        seal: impl FnOnce(
            &dyn feepay_domain::receipt::xmldsig::Signer,
        ) -> Result<SealedDocument, feepay_domain::receipt::xmldsig::SignError>,
    ) -> Result<SealedDocument, ParkReason> {
        let signer = self.signing.signer_for(reference, agency, at)?;
        seal(signer.signer.as_ref()).map_err(|e| crate::signing::sign_failure(&signer.source, &e))
    }

    /// Stores a signed document and queues its event, in the caller's transaction; returns
    /// its id, or `None` when it exists already (a retry, another instance).
    pub(super) async fn record_tax_document(
        &self,
        txn: &impl ConnectionTrait,
        work: &mut Work,
        doc: NewTaxDocument<'_>,
        sealed: SealedDocument,
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, IssueError> {
        let document_id = Uuid::new_v5(&TAX_NS, doc.key.as_bytes());
        let (sequence, _, rows) = doc.sequence.unwrap_or_default();
        let event = v1::TaxDocumentIssued {
            document_id: document_id.to_string(),
            kind: kind_pb(doc.kind) as i32,
            agency: Some(super::events::agency_pb(doc.agency)),
            period: doc.period.clone().unwrap_or_default(),
            receipt_id: doc.receipt_id.map(|u| u.to_string()).unwrap_or_default(),
            document: sealed.document.clone(),
            document_hash: sealed.document_hash.clone(),
            created_at: Some(ts(now)),
            sequence,
            rows,
        };
        let inserted = tax_documents::insert(
            txn,
            TaxDocument {
                document_id,
                kind: doc.kind.code().to_string(),
                agency_code: doc.agency.code.clone(),
                period: doc.period,
                receipt_id: doc.receipt_id,
                document: sealed.document,
                document_hash: sealed.document_hash,
                key_id: sealed.key_id,
                created_at: now,
                sequence: doc.sequence.map(|(n, _, _)| n as i32),
                supplement: doc.sequence.map(|(_, s, _)| s as i32),
            },
        )
        .await?;
        if !inserted {
            return Ok(None);
        }
        work.outbox.push(OutboxEvent::new(
            &self.topics.tax_documents,
            &doc.agency.code,
            &format!("tax-document.{document_id}"),
            &self.source,
            &event,
            self.format,
        ));
        work.tally.push(super::tally::Fact::TaxDocument { kind: doc.kind.code(), agency: doc.agency.code.clone() });
        Ok(Some(document_id))
    }

    /// The notice 04/SS-CTĐT that `receipt` was issued in error, signed by who issued it
    /// (the delegate for a delegated receipt), in the caller's transaction. `key` makes the
    /// notice's id; returns it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn error_notice(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        receipt: &v1::Receipt,
        kind: NoticeKind,
        reason: &str,
        key: &str,
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<Uuid, IssueError> {
        let reference = &loaded.reference;
        let issued_on = feepay_runtime::convert::from_ts(receipt.issued_at.as_ref())
            .map(date_gmt7)
            .unwrap_or_else(|| date_gmt7(now));
        // The notice comes from who made the receipt: the collector, or its delegate.
        let info = sender_of(receipt);
        let agency = reference.agencies.get(&info.code);
        let form_kind = reference.form_on(&receipt.template_symbol, issued_on).map_or(1, |f| f.kind);
        let notice = ErrorNotice {
            collector: info.clone(),
            tax_office: agency.and_then(|a| a.tax_office(reference)).cloned().unwrap_or_default(),
            place: agency.map(|a| a.place()).unwrap_or_default(),
            entries: vec![NoticeEntry {
                template: receipt.template_symbol.clone(),
                symbol: receipt.receipt_symbol.clone(),
                number: receipt.number.clone(),
                issued_on,
                form_kind,
                kind,
                reason: reason.to_string(),
            }],
            created_at: now,
        };
        let sealed = self
            .sign_tax_document(reference, &info.code, now, |s| notice.seal(s))
            .map_err(|r| IssueError::Blocked(vec![receipt.payment_id.clone()], r))?;
        let receipt_id: Uuid =
            receipt.receipt_id.parse().map_err(|e| IssueError::Reference(format!("receipt id: {e}")))?;
        let doc = NewTaxDocument {
            kind: Kind::ErrorNotice,
            agency: &info,
            period: None,
            receipt_id: Some(receipt_id),
            sequence: None,
            key: key.to_string(),
        };
        let id = Uuid::new_v5(&TAX_NS, key.as_bytes());
        self.record_tax_document(txn, work, doc, sealed, now).await?;
        Ok(id)
    }

    /// Signs the usage report BC26/BLĐT of every collector for the last closed period
    /// (quarterly, or monthly with `monthly`) that has none yet, zero reports included, for
    /// the series whose form version of the period had one: Circular 91/2026/TT-BTC's
    /// Appendix III has no BC26/BLĐT, so periods from 1 July 2026 have none. Returns how
    /// many were made. Safe to call from several instances.
    pub async fn produce_usage_reports(&self, monthly: bool) -> Result<usize, IssueError> {
        let now = self.clock.now();
        let loaded = self.reference().await?;
        let reference = &loaded.reference;
        let period = Period::last_closed(!monthly, date_gmt7(now));
        let (from, to) = period.days();
        let start = from.and_hms_opt(0, 0, 0).and_then(|t| t.and_local_timezone(gmt7()).single());
        let end =
            to.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).and_then(|t| t.and_local_timezone(gmt7()).single());
        let (Some(start), Some(end)) = (start, end) else { return Ok(0) };
        let mut collectors: Vec<&str> = reference.series.iter().map(|s| s.agency.as_str()).collect();
        collectors.sort_unstable();
        collectors.dedup();
        let mut made = 0;
        for code in collectors {
            let Some(agency) = reference.agencies.get(code) else { continue };
            // A unit that ceased before the period began reports nothing for it.
            if !agency.exists_on(from) {
                continue;
            }
            let label = period.to_string();
            if tax_documents::has_report(&self.db, code, &label).await? {
                continue;
            }
            // Every series of the collector appears, used or not; then what was used.
            let mut rows: BTreeMap<(String, String), UsageRow> = BTreeMap::new();
            for s in reference.series.iter().filter(|s| s.agency == code) {
                let Some(form) = s.form_on(from).filter(|f| f.transmission == Transmission::UsageReport) else {
                    continue;
                };
                let symbol = form.symbol.symbol(&s.letters, period.year());
                rows.insert(
                    (s.template.clone(), symbol.clone()),
                    UsageRow { kind: form.kind, template: s.template.clone(), symbol, used: 0, total: Vnd::ZERO },
                );
            }
            if rows.is_empty() {
                // No series of the collector was under a form with a usage report then.
                continue;
            }
            // Numbers used per series and status; the amount counts issued receipts only.
            let used: Vec<(String, String, receipts::Status, i64, i64)> = receipts::Entity::find()
                .filter(receipts::Column::Transmission.eq(receipts::Transmission::UsageReport))
                .select_only()
                .columns([receipts::Column::Template, receipts::Column::Symbol, receipts::Column::Status])
                .column_as(receipts::Column::Number.count(), "used")
                .column_as(receipts::Column::Total.sum().cast_as(Alias::new("BIGINT")), "total")
                .filter(receipts::Column::AgencyCode.eq(code))
                .filter(receipts::Column::IssuedAt.gte(start.with_timezone(&Utc)))
                .filter(receipts::Column::IssuedAt.lt(end.with_timezone(&Utc)))
                .group_by(receipts::Column::Template)
                .group_by(receipts::Column::Symbol)
                .group_by(receipts::Column::Status)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (template, symbol, status, used, total) in used {
                let kind = reference.form_on(&template, from).map_or(1, |f| f.kind);
                let row = rows.entry((template.clone(), symbol.clone())).or_insert(UsageRow {
                    kind,
                    template,
                    symbol,
                    used: 0,
                    total: Vnd::ZERO,
                });
                row.used += used.max(0) as u64;
                if status != receipts::Status::Cancelled {
                    row.total = row.total + Vnd::new(total).map_err(|e| IssueError::Reference(e.to_string()))?;
                }
            }
            let info = agency_info(reference, code, to).expect("agency exists");
            let report = UsageReport {
                collector: info.clone(),
                period,
                place: agency.place(),
                rows: rows.into_values().collect(),
                created_at: now,
            };
            let sealed = match self.sign_tax_document(reference, code, now, |s| report.seal(s)) {
                Ok(s) => s,
                Err(reason) => {
                    tracing::warn!(agency = code, period = %label, reason = reason.code, detail = %reason.detail, "the usage report cannot be signed yet");
                    continue;
                }
            };
            let txn = self.db.begin().await?;
            let mut work = Work { outbox: Vec::new(), outcome: Default::default(), tally: Default::default() };
            let doc = NewTaxDocument {
                kind: Kind::UsageReport,
                agency: &info,
                period: Some(label.clone()),
                receipt_id: None,
                sequence: None,
                key: format!("{}|{}|{}|", Kind::UsageReport.code(), code, label),
            };
            if self.record_tax_document(&txn, &mut work, doc, sealed, now).await?.is_some() {
                self.commit(txn, work.outbox).await?;
                work.tally.emit(self, &work.outcome);
                made += 1;
            }
        }
        Ok(made)
    }
}

/// Who made a receipt and sends its data: its delegate, else its collector, as printed.
pub(super) fn sender_of(r: &v1::Receipt) -> AgencyInfo {
    let a = r.delegate.clone().or_else(|| r.agency.clone()).unwrap_or_default();
    AgencyInfo { code: a.code, name: a.name, tax_code: a.tax_code, address: a.address }
}
