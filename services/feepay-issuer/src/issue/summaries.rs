//! The summaries 01/TH-BLĐT: every receipt issued under a form version whose receipts are
//! sent on the day of issue (Decree 254/2026/NĐ-CP Art. 29.3.b, Circular 91/2026/TT-BTC
//! Art. 4.6.d) is listed once in a summary signed by who issued it (the collector, or the
//! delegate for its receipts: Decree 254 Art. 25.6).
//!
//! When: from the cut-off of the day (`FEEPAY_TAX_SUMMARY_CUTOFF`, 23:00 GMT+7 by default)
//! the day's receipts are summarised; receipts issued later that day, and any of a past day
//! not yet listed (an outage, a late replacement), follow at the next pass as supplements
//! (`BSLThu` 1, 2, …) with the reason they are late. A day without receipts sends nothing.
//! Never twice, never lost: a receipt is marked with its summary in the transaction that
//! stores the signed summary and its outbox event, and every unmarked receipt of a day at or
//! past its cut-off is picked up, however late.

use super::tax::{NewTaxDocument, TAX_NS};
use super::{IssueError, Issuer, Work};
use crate::store::receipts;
use chrono::{DateTime, NaiveDate, Utc};
use feepay_domain::money::Vnd;
use feepay_domain::numbering::{date_gmt7, gmt7};
use feepay_domain::tax::{DailySummary, RelatedReceipt, SummaryRow, SummaryStatus, ROWS_MAX};
use feepay_proto::v1;
use feepay_proto::Message;
use feepay_runtime::sql::stmt;
use feepay_runtime::tax_documents::{entity as docs, Kind};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

/// Start of a GMT+7 day, as an instant.
fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(gmt7()).single())
        .map(|t| t.with_timezone(&Utc))
        .expect("midnight exists in GMT+7")
}

/// A receipt as a summary lists it: id, template, symbol, number, time, total, protobuf.
type Listed = (Uuid, String, String, i32, DateTime<Utc>, i64, Vec<u8>);

/// The explanation of a row sent after its day (column 12 of the form).
const LATE: &str =
    "Gửi sau ngày lập biên lai: biên lai lập sau thời điểm tổng hợp trong ngày hoặc dữ liệu chưa gửi được đúng hạn";

impl Issuer {
    /// Signs and records the summaries due now. Returns how many documents were made.
    /// Safe to call from several instances; a sender whose certificate cannot sign now is
    /// skipped with a warning and tried again at the next pass.
    pub async fn produce_daily_summaries(&self) -> Result<usize, IssueError> {
        let now = self.clock.now();
        let today = date_gmt7(now);
        let past_cutoff = now.with_timezone(&gmt7()).time() >= self.summary_cutoff;
        let due_before = if past_cutoff { start_of(today.succ_opt().expect("a next day")) } else { start_of(today) };
        // Who has receipts waiting, for which days: a grouped read over the partial index
        // `receipts_unsummarized`, clearer as SQL (a day in GMT+7) than as sea-query.
        let waiting = self
            .db
            .query_all(stmt(
                "SELECT coalesce(delegate_code, agency_code) AS sender, \
                 (issued_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date AS day \
                 FROM receipts WHERE transmission = 'daily_summary' AND summary_id IS NULL AND issued_at < $1 \
                 GROUP BY 1, 2 ORDER BY 2, 1",
                vec![due_before.into()],
            ))
            .await?;
        let mut made = 0;
        for row in waiting {
            let sender: String = row.try_get("", "sender")?;
            let day: NaiveDate = row.try_get("", "day")?;
            made += self.summarise(&sender, day, today, now).await?;
        }
        let overdue = receipts::Entity::find()
            .filter(feepay_runtime::sql::equals_constant(receipts::Column::Transmission, "daily_summary"))
            .filter(receipts::Column::SummaryId.is_null())
            .filter(receipts::Column::IssuedAt.lt(start_of(today)))
            .count(&self.db)
            .await?;
        self.metrics.summary_overdue.set(overdue as i64);
        Ok(made)
    }

    /// The documents of one sender and day, up to [`ROWS_MAX`] rows each, each in its own
    /// transaction.
    async fn summarise(
        &self,
        sender: &str,
        day: NaiveDate,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<usize, IssueError> {
        let loaded = self.reference().await?;
        let reference = &loaded.reference;
        let Some(agency) = reference.agencies.get(sender) else {
            tracing::warn!(%sender, %day, "receipts wait for a summary but their sender is not in the reference data");
            return Ok(0);
        };
        let info = super::tax::agency_info(reference, sender, day).expect("agency exists");
        let label = day.to_string();
        // All documents of this pass are one submission: the first of the day, or the next
        // supplement.
        let earlier: Option<Option<i32>> = docs::Entity::find()
            .select_only()
            .column_as(docs::Column::Supplement.max(), "s")
            .filter(feepay_runtime::sql::equals_constant(docs::Column::Kind, Kind::DailySummary.code()))
            .filter(docs::Column::AgencyCode.eq(sender))
            .filter(docs::Column::Period.eq(label.clone()))
            .into_tuple()
            .one(&self.db)
            .await?;
        let supplement = match earlier.flatten() {
            None => 0,
            Some(s) => s as u32 + 1,
        };
        let (from, to) = (start_of(day), start_of(day.succ_opt().expect("a next day")));
        let mut made = 0;
        loop {
            let txn = self.db.begin().await?;
            // The rows are locked: another instance summarising the same sender and day waits,
            // then finds them marked.
            let rows: Vec<Listed> = receipts::Entity::find()
                .select_only()
                .columns([
                    receipts::Column::ReceiptId,
                    receipts::Column::Template,
                    receipts::Column::Symbol,
                    receipts::Column::Number,
                    receipts::Column::IssuedAt,
                    receipts::Column::Total,
                    receipts::Column::ReceiptPb,
                ])
                .filter(feepay_runtime::sql::equals_constant(receipts::Column::Transmission, "daily_summary"))
                .filter(receipts::Column::SummaryId.is_null())
                .filter(receipts::Column::IssuedAt.gte(from))
                .filter(receipts::Column::IssuedAt.lt(to))
                .filter(
                    sea_orm::Condition::any().add(receipts::Column::DelegateCode.eq(sender)).add(
                        sea_orm::Condition::all()
                            .add(receipts::Column::DelegateCode.is_null())
                            .add(receipts::Column::AgencyCode.eq(sender)),
                    ),
                )
                .order_by_asc(receipts::Column::IssuedAt)
                .order_by_asc(receipts::Column::Number)
                .limit(ROWS_MAX as u64)
                .lock_exclusive()
                .into_tuple()
                .all(&txn)
                .await?;
            if rows.is_empty() {
                return Ok(made);
            }
            let sequence: Option<Option<i32>> = docs::Entity::find()
                .select_only()
                .column_as(docs::Column::Sequence.max(), "n")
                .filter(feepay_runtime::sql::equals_constant(docs::Column::Kind, Kind::DailySummary.code()))
                .filter(docs::Column::AgencyCode.eq(sender))
                .filter(docs::Column::Period.eq(label.clone()))
                .into_tuple()
                .one(&txn)
                .await?;
            let number = sequence.flatten().map_or(1, |n| n as u32 + 1);
            let mut summary_rows = Vec::with_capacity(rows.len());
            let mut ids = Vec::with_capacity(rows.len());
            for (id, template, symbol, n, issued_at, total, pb) in rows {
                let r = v1::Receipt::decode(pb.as_slice())
                    .map_err(|e| IssueError::Reference(format!("stored receipt {id} does not decode: {e}")))?;
                let related = r.replaces.as_ref().map(|p| RelatedReceipt {
                    template: p.template_symbol.clone(),
                    symbol: p.receipt_symbol.clone(),
                    number: p.number.clone(),
                    issued_on: NaiveDate::parse_from_str(&p.issued_on, "%Y-%m-%d").unwrap_or(day),
                });
                let mut fees: Vec<&str> = r.lines.iter().map(|l| l.fee_name.as_str()).collect();
                fees.dedup();
                summary_rows.push(SummaryRow {
                    template,
                    symbol,
                    number: format!("{n:07}"),
                    issued_on: date_gmt7(issued_at),
                    fees: fees.join("; "),
                    amount: Vnd::new(total).map_err(|e| IssueError::Reference(e.to_string()))?,
                    status: if related.is_some() { SummaryStatus::ReplacingOrAdjusting } else { SummaryStatus::New },
                    corrected_day: None,
                    related,
                    explanation: if day < today { LATE.to_string() } else { String::new() },
                    note: String::new(),
                });
                ids.push(id);
            }
            let summary = DailySummary {
                sender: info.clone(),
                tax_office: agency.tax_office(reference).cloned().unwrap_or_default(),
                day,
                number,
                supplement,
                rows: summary_rows,
                created_at: now,
            };
            let sealed = match self.sign_tax_document(reference, sender, now, |s| summary.seal(s)) {
                Ok(s) => s,
                Err(reason) => {
                    tracing::warn!(%sender, %day, reason = reason.code, detail = %reason.detail, "the daily summary 01/TH-BLĐT cannot be signed yet; its receipts wait");
                    return Ok(made);
                }
            };
            let mut work = Work::default();
            let key = format!("{}|{sender}|{label}|{number}", Kind::DailySummary.code());
            let doc = NewTaxDocument {
                kind: Kind::DailySummary,
                agency: &info,
                period: Some(label.clone()),
                receipt_id: None,
                sequence: Some((number, supplement, ids.len() as u32)),
                key: key.clone(),
            };
            let document_id = Uuid::new_v5(&TAX_NS, key.as_bytes());
            if self.record_tax_document(&txn, &mut work, doc, sealed, now).await?.is_none() {
                // Another instance made this number first: look again next pass.
                return Ok(made);
            }
            receipts::Entity::update_many()
                .col_expr(receipts::Column::SummaryId, Expr::value(document_id))
                .filter(feepay_runtime::sql::any_of(receipts::Column::ReceiptId, ids))
                .exec(&txn)
                .await?;
            self.commit(txn, work.outbox).await?;
            work.tally.emit(self, &work.outcome);
            tracing::info!(%sender, %day, number, supplement, "daily summary 01/TH-BLĐT signed");
            made += 1;
        }
    }
}
