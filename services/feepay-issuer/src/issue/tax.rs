//! Documents for the tax authority, signed by the issuer (which alone holds the keys):
//! the notice 04/SS-CTĐT for each cancelled receipt, in the cancellation's transaction, and
//! the usage report BC26/BLĐT of each collector once a period has closed. Each is stored in
//! `tax_documents` and published on `tax.documents` through the outbox.

use super::{IssueError, Issuer, Work};
use crate::store::receipts;
use chrono::{DateTime, Utc};
use feepay_domain::numbering::{date_gmt7, gmt7};
use feepay_domain::receipt::AgencyInfo;
use feepay_domain::reference::ReferenceData;
use feepay_domain::tax::{ErrorNotice, NoticeEntry, Period, SealedDocument, UsageReport, UsageRow};
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
const TAX_NS: Uuid = Uuid::from_u128(0x6a1f_3c2e_9b4d_4e71_a5c8_2f0d_7e93_b416);

pub(super) fn agency_info(reference: &ReferenceData, code: &str) -> Option<AgencyInfo> {
    reference.agencies.get(code).map(|a| AgencyInfo {
        code: a.code.clone(),
        name: a.name.clone(),
        tax_code: a.tax_code.clone(),
        address: a.address.clone(),
    })
}

fn kind_pb(kind: Kind) -> v1::TaxDocumentKind {
    match kind {
        Kind::UsageReport => v1::TaxDocumentKind::UsageReport,
        Kind::ErrorNotice => v1::TaxDocumentKind::ErrorNotice,
    }
}

impl Issuer {
    /// Signs a document with the collector's certificate (checked as for receipts).
    fn sign_tax_document(
        &self,
        reference: &ReferenceData,
        agency: &str,
        at: DateTime<Utc>,
        seal: impl FnOnce(
            &dyn feepay_domain::receipt::xmldsig::Signer,
        ) -> Result<SealedDocument, feepay_domain::receipt::xmldsig::SignError>,
    ) -> Result<SealedDocument, ParkReason> {
        let signer = self.signing.signer_for(reference, agency, at)?;
        seal(signer.signer.as_ref())
            .map_err(|e| ParkReason::new("no_signing_key", format!("signing with {} failed: {}", signer.source, e.0)))
    }

    /// Stores a signed document and queues its event, in the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    async fn record_tax_document(
        &self,
        txn: &impl ConnectionTrait,
        work: &mut Work,
        kind: Kind,
        agency: &AgencyInfo,
        period: Option<String>,
        receipt_id: Option<Uuid>,
        sealed: SealedDocument,
        now: DateTime<Utc>,
    ) -> Result<bool, IssueError> {
        let key = format!(
            "{}|{}|{}|{}",
            kind.code(),
            agency.code,
            period.clone().unwrap_or_default(),
            receipt_id.map(|u| u.to_string()).unwrap_or_default()
        );
        let document_id = Uuid::new_v5(&TAX_NS, key.as_bytes());
        let event = v1::TaxDocumentIssued {
            document_id: document_id.to_string(),
            kind: kind_pb(kind) as i32,
            agency: Some(super::events::agency_pb(agency)),
            period: period.clone().unwrap_or_default(),
            receipt_id: receipt_id.map(|u| u.to_string()).unwrap_or_default(),
            document: sealed.document.clone(),
            document_hash: sealed.document_hash.clone(),
            created_at: Some(ts(now)),
        };
        let inserted = tax_documents::insert(
            txn,
            TaxDocument {
                document_id,
                kind: kind.code().to_string(),
                agency_code: agency.code.clone(),
                period,
                receipt_id,
                document: sealed.document,
                document_hash: sealed.document_hash,
                key_id: sealed.key_id,
                created_at: now,
            },
        )
        .await?;
        if inserted {
            work.outbox.push(OutboxEvent::new(
                &self.topics.tax_documents,
                &agency.code,
                &format!("tax-document.{document_id}"),
                &self.source,
                &event,
                self.format,
            ));
            work.tally.push(super::tally::Fact::TaxDocument { kind: kind.code(), agency: agency.code.clone() });
        }
        Ok(inserted)
    }

    /// The notice 04/SS-CTĐT that `receipt` was issued in error, in the transaction that
    /// cancels it.
    pub(super) async fn error_notice(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        receipt: &v1::Receipt,
        reason: &str,
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<(), IssueError> {
        let reference = &loaded.reference;
        let collector = receipt.agency.clone().unwrap_or_default();
        let info = AgencyInfo {
            code: collector.code.clone(),
            name: collector.name.clone(),
            tax_code: collector.tax_code.clone(),
            address: collector.address.clone(),
        };
        let agency = reference.agencies.get(&collector.code);
        let issued_on = feepay_runtime::convert::from_ts(receipt.issued_at.as_ref())
            .map(date_gmt7)
            .unwrap_or_else(|| date_gmt7(now));
        let notice = ErrorNotice {
            collector: info.clone(),
            tax_office: agency.and_then(|a| a.tax_office(reference)).cloned().unwrap_or_default(),
            place: agency.map(|a| a.place()).unwrap_or_default(),
            entries: vec![NoticeEntry {
                template: receipt.template_symbol.clone(),
                symbol: receipt.receipt_symbol.clone(),
                number: receipt.number.clone(),
                issued_on,
                reason: reason.to_string(),
            }],
            created_at: now,
        };
        let sealed = self
            .sign_tax_document(reference, &collector.code, now, |s| notice.seal(s))
            .map_err(|r| IssueError::Blocked(vec![receipt.payment_id.clone()], r))?;
        let receipt_id: Uuid =
            receipt.receipt_id.parse().map_err(|e| IssueError::Reference(format!("receipt id: {e}")))?;
        self.record_tax_document(txn, work, Kind::ErrorNotice, &info, None, Some(receipt_id), sealed, now).await?;
        Ok(())
    }

    /// Signs the usage report BC26/BLĐT of every collector for the last closed period
    /// (quarterly, or monthly with `monthly`) that has none yet, zero reports included.
    /// Returns how many were made. Safe to call from several instances.
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
                let symbol = s.symbol(period.year());
                rows.insert(
                    (s.template.clone(), symbol.clone()),
                    UsageRow { kind: s.form_kind, template: s.template.clone(), symbol, used: 0, total: Vnd::ZERO },
                );
            }
            // Numbers used per series and status; the amount counts issued receipts only.
            let used: Vec<(String, String, receipts::Status, i64, i64)> = receipts::Entity::find()
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
                let kind = reference.forms.get(&template).map_or(1, |f| f.kind);
                let row = rows.entry((template.clone(), symbol.clone())).or_insert(UsageRow {
                    kind,
                    template,
                    symbol,
                    used: 0,
                    total: Vnd::ZERO,
                });
                row.used += used.max(0) as u64;
                if status == receipts::Status::Issued {
                    row.total = row.total + Vnd::new(total).map_err(|e| IssueError::Reference(e.to_string()))?;
                }
            }
            let info = agency_info(reference, code).expect("agency exists");
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
            if self
                .record_tax_document(&txn, &mut work, Kind::UsageReport, &info, Some(label), None, sealed, now)
                .await?
            {
                self.commit(txn, work.outbox).await?;
                work.tally.emit(self, &work.outcome);
                made += 1;
            }
        }
        Ok(made)
    }
}
