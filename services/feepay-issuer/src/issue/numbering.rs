//! Numbering and sealing: the counters of the series involved are locked in key order,
//! consecutive numbers assigned, each document sealed (signed, chained to the previous
//! receipt of its counter) and the receipts inserted with the counters, in the caller's
//! transaction.
//!
//! A counter is one collector, template, symbol, year and number range: the collector's
//! own numbers, or a delegate's range (Decree 254/2026/NĐ-CP Art. 25.5: "sử dụng biên lai
//! theo thứ tự từ số nhỏ đến số lớn trong phạm vi biên lai được phân chia"). The form
//! version in force on the day of issue gives the receipt's name, symbol and how it is
//! transmitted; a version that needs it is used only for a series whose registration the
//! tax authority accepted (Circular 91/2026/TT-BTC Art. 17).

use super::tally::Fact;
use super::{events::agency_pb, IssueError, Issuer, Work};
use crate::store::{counters, receipts};
use chrono::{DateTime, Utc};
use feepay_domain::forms::Form;
use feepay_domain::money::Vnd;
use feepay_domain::numbering::{date_gmt7, year_gmt7, GENESIS_HASH};
use feepay_domain::receipt::{generate_lookup_code, AgencyInfo, PayerInfo, PaymentMethod, ReceiptContent, Replaces};
use feepay_domain::reference::{NumberRange, Series};
use feepay_domain::waiver::LineAssessment;
use feepay_proto::v1;
use feepay_proto::Message;
use feepay_runtime::convert::{assessed_line_pb, payment_method_pb, ts};
use feepay_runtime::parking::ParkReason;
use feepay_runtime::pki::signers::AgencySigner;
use feepay_runtime::refdata::LoadedReference;
use feepay_runtime::sql::{rows_per_statement, stmt};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QuerySelect,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

/// A receipt about to be numbered.
#[derive(Debug, Clone)]
pub(super) struct ToIssue {
    pub receipt_id: Uuid,
    pub payment_id: String,
    /// The collector named on the receipt (the series' agency).
    pub agency: AgencyInfo,
    pub series: Series,
    /// A desk issuing under a delegation from the collector: named, and signing.
    pub delegate: Option<AgencyInfo>,
    /// The numbers it is numbered in: the delegate's range or the collector's own.
    pub range: NumberRange,
    /// The payer as the receipt names them, and as the receipt's protobuf carries them
    /// (with the email and categories the notifier needs). Both are made once from the
    /// domain payer (or read from the stored receipt a replacement copies).
    pub payer: PayerInfo,
    pub payer_pb: v1::Payer,
    pub dossier_code: String,
    pub procedure_code: String,
    pub lines: Vec<LineAssessment>,
    pub total: Vnd,
    pub payment_method: PaymentMethod,
    pub provider: String,
    pub provider_reference: String,
    pub replaces: Option<Replaces>,
    pub paid_at: Option<DateTime<Utc>>,
}

impl ToIssue {
    /// The agency whose certificate signs.
    pub fn signer(&self) -> &str {
        self.delegate.as_ref().map_or(&self.series.agency, |d| &d.code)
    }
}

pub(super) fn series_label(template: &str, symbol: &str) -> String {
    format!("{template}/{symbol}")
}

/// (agency, template, receipt symbol, first number of the range) of a counter.
type CounterKey = (String, String, String, u32);

/// A series as registrations name it: (agency, template, letters).
pub(super) type SeriesKey = (String, String, String);

fn series_key(s: &Series) -> SeriesKey {
    (s.agency.clone(), s.template.clone(), s.letters.clone())
}

/// Payments of the receipts of `series` in the list.
fn payments_of(to_issue: &[ToIssue], series: &SeriesKey) -> Vec<String> {
    to_issue.iter().filter(|t| series_key(&t.series) == *series).map(|t| t.payment_id.clone()).collect()
}

impl Issuer {
    /// The certificate that signs for an agency at `at`, checked, or why none can.
    pub(super) fn signer_for(
        &self,
        loaded: &LoadedReference,
        agency: &str,
        at: DateTime<Utc>,
    ) -> Result<Arc<AgencySigner>, ParkReason> {
        self.signing.signer_for(&loaded.reference, agency, at)
    }

    /// Locks the counters of every series involved (in key order), assigns consecutive
    /// numbers, seals the documents, and inserts receipts, counters and events. Receipts
    /// that cannot be issued (no usable signer, the series' numbers used up) fail the call
    /// with [`IssueError::Blocked`] naming their payments; nothing is written for any.
    pub(super) async fn number_and_insert(
        &self,
        txn: &DatabaseTransaction,
        loaded: &LoadedReference,
        to_issue: Vec<ToIssue>,
        now: DateTime<Utc>,
        work: &mut Work,
    ) -> Result<Vec<Uuid>, IssueError> {
        if to_issue.is_empty() {
            return Ok(Vec::new());
        }
        let year = year_gmt7(now);
        let today = date_gmt7(now);
        let mut forms: Vec<Form> = Vec::with_capacity(to_issue.len());
        for t in &to_issue {
            match t.series.form_on(today) {
                Some(f) => forms.push(f.clone()),
                None => {
                    let key = series_key(&t.series);
                    return Err(IssueError::Blocked(
                        payments_of(&to_issue, &key),
                        ParkReason::new(
                            "no_form_in_force",
                            format!(
                                "no version of form {} is in force on {today}; load reference data with the form of the rules in force, then retry",
                                t.series.template
                            ),
                        ),
                    ));
                }
            }
        }
        self.check_registered(txn, &to_issue, &forms, today).await?;
        let mut signers = Vec::with_capacity(to_issue.len());
        for t in &to_issue {
            match self.signer_for(loaded, t.signer(), now) {
                Ok(k) => signers.push(k),
                Err(reason) => {
                    let blocked: Vec<String> =
                        to_issue.iter().filter(|u| u.signer() == t.signer()).map(|u| u.payment_id.clone()).collect();
                    return Err(IssueError::Blocked(blocked, reason));
                }
            }
        }
        let symbols: Vec<String> =
            to_issue.iter().zip(&forms).map(|(t, f)| f.symbol.symbol(&t.series.letters, year)).collect();
        let keys: BTreeSet<CounterKey> = to_issue
            .iter()
            .zip(&symbols)
            .map(|(t, symbol)| (t.series.agency.clone(), t.series.template.clone(), symbol.clone(), t.range.from))
            .collect();
        let mut counters = lock_counters(txn, &keys, year).await?;
        check_room(&to_issue, &symbols, &counters)?;

        let mut rows: Vec<receipts::ActiveModel> = Vec::with_capacity(to_issue.len());
        let mut ids = Vec::with_capacity(to_issue.len());
        let mut rng = rand::rngs::OsRng;
        for (((t, key), symbol), form) in to_issue.into_iter().zip(signers).zip(symbols).zip(forms) {
            let ck = (t.series.agency.clone(), t.series.template.clone(), symbol.clone(), t.range.from);
            let (last, last_hash) =
                counters.get_mut(&ck).ok_or_else(|| IssueError::Reference("counter missing".into()))?;
            let number = t.range.next_after(*last).ok_or_else(|| {
                IssueError::Blocked(vec![t.payment_id.clone()], exhausted(&t.series.template, &symbol, t.range, 0))
            })?;
            let content = ReceiptContent {
                receipt_id: t.receipt_id.to_string(),
                payment_id: t.payment_id.clone(),
                title: form.name.clone(),
                payment_method: t.payment_method,
                agency: t.agency.clone(),
                template: t.series.template.clone(),
                symbol: symbol.clone(),
                number,
                payer: t.payer.clone(),
                dossier_code: t.dossier_code.clone(),
                procedure_code: t.procedure_code.clone(),
                lines: t.lines.clone(),
                total: t.total,
                provider: t.provider.clone(),
                provider_reference: t.provider_reference.clone(),
                issued_at: now,
                lookup_code: generate_lookup_code(&mut rng),
                previous_hash: last_hash.clone(),
                replaces: t.replaces.clone(),
                delegate: t.delegate.clone(),
            };
            let sealed = content.seal(key.signer.as_ref()).map_err(|e| {
                let blocked = vec![t.payment_id.clone()];
                IssueError::Blocked(blocked, crate::signing::sign_failure(&key.source, &e))
            })?;
            *last = number.value();
            *last_hash = sealed.document_hash.clone();

            let receipt_pb = v1::Receipt {
                receipt_id: content.receipt_id.clone(),
                payment_id: t.payment_id.clone(),
                agency: Some(agency_pb(&t.agency)),
                template_symbol: content.template.clone(),
                receipt_symbol: symbol.clone(),
                number: number.to_string(),
                year: year as u32,
                payer: Some(t.payer_pb.clone()),
                dossier_code: t.dossier_code.clone(),
                procedure_code: t.procedure_code.clone(),
                lines: t.lines.iter().map(assessed_line_pb).collect(),
                total: t.total.to_string(),
                total_in_words: feepay_domain::words::amount_in_words(t.total),
                provider: t.provider.clone(),
                provider_reference: t.provider_reference.clone(),
                issued_at: Some(ts(now)),
                lookup_code: content.lookup_code.clone(),
                key_id: sealed.key_id.clone(),
                signature: sealed.signature_b64.clone(),
                previous_hash: content.previous_hash.clone(),
                document_hash: sealed.document_hash.clone(),
                replaces_receipt_id: t.replaces.as_ref().map(|r| r.receipt_id.clone()).unwrap_or_default(),
                status: v1::ReceiptStatus::Issued as i32,
                title: content.title.clone(),
                replaces: t.replaces.as_ref().map(|r| v1::ReceiptReference {
                    receipt_id: r.receipt_id.clone(),
                    template_symbol: r.template.clone(),
                    receipt_symbol: r.symbol.clone(),
                    number: r.number.clone(),
                    issued_on: r.issued_on.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default(),
                }),
                payment_method: payment_method_pb(t.payment_method) as i32,
                layout_version: feepay_domain::receipt::document::VERSION.to_string(),
                delegate: t.delegate.as_ref().map(agency_pb),
                replaced_at: None,
                replaced_by_receipt_id: String::new(),
            };
            let waived: i64 = t.lines.iter().map(|l| l.reduction().dong()).sum();
            let replaces: Option<Uuid> = t.replaces.as_ref().and_then(|r| r.receipt_id.parse().ok());
            rows.push(receipts::ActiveModel {
                receipt_id: Set(t.receipt_id),
                payment_id: Set(t.payment_id.clone()),
                agency_code: Set(t.series.agency.clone()),
                template: Set(t.series.template.clone()),
                symbol: Set(symbol.clone()),
                year: Set(year),
                number: Set(number.value() as i32),
                total: Set(t.total.dong()),
                waived: Set(waived),
                status: Set(receipts::Status::Issued),
                issued_at: Set(now),
                lookup_code: Set(content.lookup_code.clone()),
                key_id: Set(sealed.key_id.clone()),
                signature: Set(sealed.signature_b64.clone()),
                previous_hash: Set(content.previous_hash.clone()),
                document_hash: Set(sealed.document_hash.clone()),
                document: Set(sealed.document),
                receipt_pb: Set(receipt_pb.encode_to_vec()),
                replaces: Set(replaces),
                range_from: Set(t.range.from as i32),
                delegate_code: Set(t.delegate.as_ref().map(|d| d.code.clone())),
                transmission: Set(form.transmission.into()),
                ..Default::default()
            });
            work.tally.push(Fact::Issued {
                agency: t.series.agency.clone(),
                series: series_label(&t.series.template, &symbol),
                payment_id: t.payment_id.clone(),
                number: number.to_string(),
                total: t.total.dong(),
                latency: t.paid_at.map(|paid_at| ((now - paid_at).num_milliseconds().max(0) as f64) / 1000.0),
            });
            // The event is the receipt row itself: the outbox row only points at it.
            self.receipt_issued_event(work, &t.payment_id, t.receipt_id);
            work.outcome.receipts_issued += 1;
            ids.push(t.receipt_id);
        }
        insert_receipts(txn, rows).await?;
        for ((agency, template, symbol, range_from), (n, h)) in counters {
            counters::Entity::update_many()
                .col_expr(counters::Column::LastNumber, Expr::value(n as i32))
                .col_expr(counters::Column::LastHash, Expr::value(h))
                .col_expr(counters::Column::UpdatedAt, Expr::value(now))
                .filter(counters::Column::Agency.eq(agency))
                .filter(counters::Column::Template.eq(template))
                .filter(counters::Column::Symbol.eq(symbol))
                .filter(counters::Column::Year.eq(year))
                .filter(counters::Column::RangeFrom.eq(range_from as i32))
                .exec(txn)
                .await?;
        }
        Ok(ids)
    }

    /// Refuses, naming their payments, receipts of a series whose form version needs a
    /// registration the tax authority has not accepted (as of `today`). Acceptances are
    /// never deleted, so those seen once are remembered.
    async fn check_registered(
        &self,
        txn: &DatabaseTransaction,
        to_issue: &[ToIssue],
        forms: &[Form],
        today: chrono::NaiveDate,
    ) -> Result<(), IssueError> {
        use feepay_runtime::series_registrations::entity as reg;
        let needed: BTreeSet<SeriesKey> = to_issue
            .iter()
            .zip(forms)
            .filter(|(_, f)| f.registration_required)
            .map(|(t, _)| series_key(&t.series))
            .filter(|k| !self.registered.lock().expect("registrations lock").contains(k))
            .collect();
        if needed.is_empty() {
            return Ok(());
        }
        let agencies: Vec<String> = needed.iter().map(|(a, _, _)| a.clone()).collect();
        let rows: Vec<(String, String, String)> = reg::Entity::find()
            .select_only()
            .columns([reg::Column::AgencyCode, reg::Column::Template, reg::Column::Letters])
            .filter(feepay_runtime::sql::any_of(reg::Column::AgencyCode, agencies))
            .filter(reg::Column::AcceptedOn.lte(today))
            .into_tuple()
            .all(txn)
            .await?;
        let found: BTreeSet<SeriesKey> = rows.into_iter().collect();
        self.registered
            .lock()
            .expect("registrations lock")
            .extend(found.iter().filter(|k| needed.contains(*k)).cloned());
        if let Some(missing) = needed.iter().find(|k| !found.contains(*k)) {
            let (agency, template, letters) = missing;
            return Err(IssueError::Blocked(
                payments_of(to_issue, missing),
                ParkReason::new(
                    "series_unregistered",
                    format!(
                        "series {template} {letters} of {agency} has no registration accepted by the tax authority (Circular 91/2026/TT-BTC Art. 17); record the acceptance notice 01/TB-ĐKĐT with `receiptctl series register --agency {agency} --template {template} --letters {letters} --notice ... --accepted-on ...`, then retry the parked payments"
                    ),
                ),
            ));
        }
        Ok(())
    }
}

fn exhausted(template: &str, symbol: &str, range: NumberRange, left: u32) -> ParkReason {
    let whose = if range == NumberRange::WHOLE { "its numbers".to_string() } else { format!("its numbers {range}") };
    ParkReason::new(
        "series_exhausted",
        format!(
            "series {template} {symbol} has {left} of {whose} of the year left; register a new series (or delegate a new range) and retry"
        ),
    )
}

/// Refuses, naming their payments, the receipts that would take a counter past the last
/// number of its range (in the order they would be numbered).
fn check_room(
    to_issue: &[ToIssue],
    symbols: &[String],
    counters: &BTreeMap<CounterKey, (u32, String)>,
) -> Result<(), IssueError> {
    let mut used: BTreeMap<CounterKey, u32> = BTreeMap::new();
    let mut blocked: Vec<String> = Vec::new();
    let mut reason = None;
    for (t, symbol) in to_issue.iter().zip(symbols) {
        let key = (t.series.agency.clone(), t.series.template.clone(), symbol.clone(), t.range.from);
        let last = counters.get(&key).map_or(0, |(n, _)| *n);
        let n = used.entry(key).or_insert(0);
        let left = t.range.left_after(last);
        if *n >= left {
            blocked.push(t.payment_id.clone());
            reason.get_or_insert_with(|| exhausted(&t.series.template, symbol, t.range, left));
        } else {
            *n += 1;
        }
    }
    match reason {
        None => Ok(()),
        Some(reason) => Err(IssueError::Blocked(blocked, reason)),
    }
}

/// Creates missing counter rows and locks every involved one, one statement per key in key
/// order (a stable lock order across instances). Returns (last number, last hash) by key.
async fn lock_counters(
    txn: &DatabaseTransaction,
    keys: &BTreeSet<CounterKey>,
    year: i32,
) -> Result<BTreeMap<CounterKey, (u32, String)>, IssueError> {
    let missing = keys.iter().map(|(agency, template, symbol, range_from)| counters::ActiveModel {
        agency: Set(agency.clone()),
        template: Set(template.clone()),
        symbol: Set(symbol.clone()),
        year: Set(year),
        range_from: Set(*range_from as i32),
        // No number of the range used yet.
        last_number: Set(*range_from as i32 - 1),
        last_hash: Set(GENESIS_HASH.to_string()),
        ..Default::default()
    });
    counters::Entity::insert_many(missing)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(txn)
        .await?;
    let mut locked = BTreeMap::new();
    for (agency, template, symbol, range_from) in keys {
        // One row per statement, in key order: the lock order is the same in every
        // instance, so two issuers queue instead of deadlocking.
        let row =
            counters::Entity::find_by_id((agency.clone(), template.clone(), symbol.clone(), year, *range_from as i32))
                .lock_exclusive()
                .one(txn)
                .await?
                .ok_or_else(|| IssueError::Reference("counter row vanished".into()))?;
        locked.insert(
            (agency.clone(), template.clone(), symbol.clone(), *range_from),
            (row.last_number as u32, row.last_hash),
        );
    }
    Ok(locked)
}

async fn insert_receipts(txn: &DatabaseTransaction, rows: Vec<receipts::ActiveModel>) -> Result<(), DbErr> {
    const COLS: usize = 22;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        // Moves the rows (documents are kilobytes each) instead of copying them.
        let chunk: Vec<receipts::ActiveModel> = rows.by_ref().take(rows_per_statement(COLS)).collect();
        receipts::Entity::insert_many(chunk).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// Checks every series of a year, range by range: numbers from the range's first to its
/// counter without gap or repeat. Returns the number of defects (missing + repeated numbers) and updates the gauge.
pub(super) async fn self_check(issuer: &Issuer, year: i32) -> Result<i64, DbErr> {
    // A grouped outer join with three aggregates per series: clearer as the SQL itself
    // than as a chain of sea-query expressions, and only read.
    let rows = issuer
        .db
        .query_all(stmt(
            "SELECT c.agency, c.template, c.symbol, c.range_from, c.last_number, count(r.number)::BIGINT AS n, count(DISTINCT r.number)::BIGINT AS d, \
             COALESCE(max(r.number), c.range_from - 1)::BIGINT AS mx FROM series_counters c LEFT JOIN receipts r \
             ON r.agency_code = c.agency AND r.template = c.template AND r.symbol = c.symbol AND r.year = c.year \
             AND r.range_from = c.range_from \
             WHERE c.year = $1 GROUP BY c.agency, c.template, c.symbol, c.range_from, c.last_number",
            vec![year.into()],
        ))
        .await?;
    let mut defects = 0i64;
    for r in rows {
        let from: i32 = r.try_get("", "range_from")?;
        let last: i32 = r.try_get("", "last_number")?;
        let n: i64 = r.try_get("", "n")?;
        let d: i64 = r.try_get("", "d")?;
        let mx: i64 = r.try_get("", "mx")?;
        // Numbers from..=last must each be there once.
        let missing = i64::from(last).max(mx) - i64::from(from - 1) - d;
        let repeated = n - d;
        if missing != 0 || repeated != 0 {
            let (a, t, s): (String, String, String) =
                (r.try_get("", "agency")?, r.try_get("", "template")?, r.try_get("", "symbol")?);
            tracing::error!(agency = %a, series = %series_label(&t, &s), missing, repeated, "numbering defect found");
        }
        defects += missing.abs() + repeated;
    }
    issuer.metrics.numbering_gaps.set(defects);
    Ok(defects)
}
