//! Reports: the daily reconciliation with the payment platform and the receipt usage report
//! (the content of the tax authority's BC26 report).
//!
//! These two are the only queries of receiptctl still written as SQL: analytical reads
//! over CTEs, `FILTER` aggregates, correlated subqueries and the JSON of waived lines, which
//! sea-query could state only as opaque custom expressions. They read, never write, and
//! live here alone so a schema change has one place to look.

use crate::access::Actor;
use chrono::{DateTime, NaiveDate, Utc};
use feepay_domain::numbering::gmt7;
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::sql::stmt;
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};

/// Start of a GMT+7 day, as a UTC instant.
pub fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_local_timezone(gmt7())
        .single()
        .expect("fixed offset")
        .with_timezone(&Utc)
}

/// A CSV field (RFC 4180).
pub fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn csv_line(cells: &[String]) -> String {
    cells.iter().map(|c| csv(c)).collect::<Vec<_>>().join(",")
}

/// One line of the reconciliation: an agency and a payment provider on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconRow {
    pub agency: String,
    pub provider: String,
    pub payments: i64,
    pub paid: i64,
    pub issued: i64,
    pub waived_fully: i64,
    pub rejected: i64,
    pub receipts: i64,
    /// Receipts replaced (or cancelled before 1 July 2026).
    pub superseded: i64,
    pub collected: i64,
    /// Given back by refunds recorded against the receipts (they stay as issued).
    pub refunded: i64,
    pub waived: i64,
}

/// A payment of the day that has no valid receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    pub payment_id: String,
    pub agency: String,
    pub provider: String,
    pub paid: i64,
    pub paid_at: DateTime<Utc>,
    pub why: String,
}

fn scope_sql(actor: &Actor, col: &str, v: &mut Vec<Value>) -> String {
    match actor.scope_value() {
        Some(a) => {
            v.push(a.into());
            format!(" AND {col} = ANY(${})", v.len())
        }
        None => String::new(),
    }
}

pub async fn reconcile(
    db: &DatabaseConnection,
    actor: &Actor,
    day: NaiveDate,
    agency: Option<&str>,
    provider: Option<&str>,
) -> anyhow::Result<(Vec<ReconRow>, Vec<Unmatched>)> {
    let mut v: Vec<Value> = vec![day_start(day).into(), day_start(day.succ_opt().unwrap_or(day)).into()];
    let mut filter = scope_sql(actor, "agency_code", &mut v);
    if let Some(a) = agency {
        v.push(a.into());
        filter.push_str(&format!(" AND agency_code = ${}", v.len()));
    }
    if let Some(p) = provider {
        v.push(p.into());
        filter.push_str(&format!(" AND provider = ${}", v.len()));
    }
    let base = format!("SELECT * FROM payments WHERE paid_at >= $1 AND paid_at < $2{filter}");
    let rows = db
        .query_all(stmt(
            format!(
                "WITH p AS ({base}), r AS ( \
                   SELECT r.payment_id, count(*) AS receipts, count(*) FILTER (WHERE r.status <> 'issued') AS superseded, \
                          COALESCE(SUM(r.total) FILTER (WHERE r.status = 'issued'), 0) AS collected \
                   FROM receipts r JOIN p USING (payment_id) GROUP BY r.payment_id), \
                 f AS (SELECT payment_id, SUM((e->>'amount')::BIGINT) AS refunded \
                   FROM refunds, jsonb_array_elements(allocation) e \
                   WHERE status = 'applied' AND allocation IS NOT NULL AND payment_id IN (SELECT payment_id FROM p) \
                   GROUP BY payment_id) \
                 SELECT p.agency_code, p.provider, count(*) AS payments, SUM(p.total_paid)::BIGINT AS paid, \
                   count(*) FILTER (WHERE p.status = 'issued') AS issued, \
                   count(*) FILTER (WHERE p.status = 'waived') AS waived_fully, \
                   count(*) FILTER (WHERE p.status = 'rejected') AS rejected, \
                   COALESCE(SUM(r.receipts), 0)::BIGINT AS receipts, COALESCE(SUM(r.superseded), 0)::BIGINT AS superseded, \
                   COALESCE(SUM(r.collected), 0)::BIGINT AS collected, COALESCE(SUM(f.refunded), 0)::BIGINT AS refunded, \
                   COALESCE(SUM((SELECT SUM((l->'waiver'->>'reduction')::BIGINT) FROM jsonb_array_elements(p.waived_lines) l)) \
                     FILTER (WHERE p.status <> 'rejected'), 0)::BIGINT AS waived \
                 FROM p LEFT JOIN r USING (payment_id) LEFT JOIN f USING (payment_id) GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            v.clone(),
        ))
        .await?;
    let mut out = Vec::new();
    for r in rows {
        out.push(ReconRow {
            agency: r.try_get("", "agency_code")?,
            provider: r.try_get("", "provider")?,
            payments: r.try_get("", "payments")?,
            paid: r.try_get("", "paid")?,
            issued: r.try_get("", "issued")?,
            waived_fully: r.try_get("", "waived_fully")?,
            rejected: r.try_get("", "rejected")?,
            receipts: r.try_get("", "receipts")?,
            superseded: r.try_get("", "superseded")?,
            collected: r.try_get("", "collected")?,
            refunded: r.try_get("", "refunded")?,
            waived: r.try_get("", "waived")?,
        });
    }
    let rows = db
        .query_all(stmt(
            format!(
                "WITH p AS ({base}) SELECT p.payment_id, p.agency_code, p.provider, p.total_paid, p.paid_at, p.status, p.reason, p.detail, \
                   (SELECT count(*) FROM receipts r WHERE r.payment_id = p.payment_id) AS receipts \
                 FROM p WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE r.payment_id = p.payment_id AND r.status = 'issued') \
                 ORDER BY p.paid_at, p.payment_id"
            ),
            v,
        ))
        .await?;
    let mut unmatched = Vec::new();
    for r in rows {
        let status: String = r.try_get("", "status")?;
        let receipts: i64 = r.try_get("", "receipts")?;
        let why = match status.as_str() {
            "rejected" => format!(
                "rejected ({}): {}",
                r.try_get::<Option<String>>("", "reason")?.unwrap_or_default(),
                r.try_get::<Option<String>>("", "detail")?.unwrap_or_default()
            ),
            "waived" => "fully waived: no receipt for 0 đồng, the payer was notified".to_string(),
            _ if receipts > 0 => "every receipt cancelled (rules before 1 July 2026)".to_string(),
            _ => "no receipt".to_string(),
        };
        unmatched.push(Unmatched {
            payment_id: r.try_get("", "payment_id")?,
            agency: r.try_get("", "agency_code")?,
            provider: r.try_get("", "provider")?,
            paid: r.try_get("", "total_paid")?,
            paid_at: r.try_get("", "paid_at")?,
            why,
        });
    }
    Ok((out, unmatched))
}

pub const RECON_HEADERS: [&str; 12] = [
    "agency",
    "provider",
    "payments",
    "paid_vnd",
    "issued",
    "waived_fully",
    "rejected",
    "receipts",
    "superseded",
    "collected_vnd",
    "refunded_vnd",
    "waived_vnd",
];

impl ReconRow {
    pub fn cells(&self, grouped: bool) -> Vec<String> {
        let money = |v: i64| {
            if grouped {
                feepay_domain::Vnd::new(v).map(|v| v.grouped()).unwrap_or_default()
            } else {
                v.to_string()
            }
        };
        vec![
            self.agency.clone(),
            self.provider.clone(),
            self.payments.to_string(),
            money(self.paid),
            self.issued.to_string(),
            self.waived_fully.to_string(),
            self.rejected.to_string(),
            self.receipts.to_string(),
            self.superseded.to_string(),
            money(self.collected),
            money(self.refunded),
            money(self.waived),
        ]
    }
}

pub const UNMATCHED_HEADERS: [&str; 6] = ["payment_id", "agency", "provider", "paid_vnd", "paid_at_gmt7", "why"];

impl Unmatched {
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.payment_id.clone(),
            self.agency.clone(),
            self.provider.clone(),
            self.paid.to_string(),
            datetime_gmt7(self.paid_at),
            self.why.clone(),
        ]
    }
}

/// Usage of one series in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub agency: String,
    pub agency_name: String,
    pub agency_tax_code: String,
    pub template: String,
    pub symbol: String,
    /// The first number available at the start of the period.
    pub opening_number: i64,
    /// First and last number used in the period (0 when none).
    pub from_number: i64,
    pub to_number: i64,
    pub used: i64,
    pub cancelled: Vec<i64>,
    /// The last number used by the end of the period.
    pub closing_number: i64,
}

pub async fn usage(
    db: &DatabaseConnection,
    actor: &Actor,
    from: NaiveDate,
    to: NaiveDate,
    agency: Option<&str>,
) -> anyhow::Result<Vec<Usage>> {
    let mut v: Vec<Value> = vec![day_start(from).into(), day_start(to.succ_opt().unwrap_or(to)).into()];
    let mut filter = scope_sql(actor, "r.agency_code", &mut v);
    if let Some(a) = agency {
        v.push(a.into());
        filter.push_str(&format!(" AND r.agency_code = ${}", v.len()));
    }
    let rows = db
        .query_all(stmt(
            format!(
                "WITH s AS (SELECT DISTINCT agency_code, template, symbol FROM receipts r \
                   WHERE ((r.issued_at >= $1 AND r.issued_at < $2) OR (r.cancelled_at >= $1 AND r.cancelled_at < $2)){filter}) \
                 SELECT s.agency_code, s.template, s.symbol, COALESCE(a.name, '') AS name, COALESCE(a.tax_code, '') AS tax_code, \
                   (SELECT COALESCE(MAX(number), 0) FROM receipts x WHERE (x.agency_code, x.template, x.symbol) = (s.agency_code, s.template, s.symbol) AND x.issued_at < $1)::BIGINT AS before, \
                   (SELECT COALESCE(MIN(number), 0) FROM receipts x WHERE (x.agency_code, x.template, x.symbol) = (s.agency_code, s.template, s.symbol) AND x.issued_at >= $1 AND x.issued_at < $2)::BIGINT AS first, \
                   (SELECT COALESCE(MAX(number), 0) FROM receipts x WHERE (x.agency_code, x.template, x.symbol) = (s.agency_code, s.template, s.symbol) AND x.issued_at >= $1 AND x.issued_at < $2)::BIGINT AS last, \
                   (SELECT count(*) FROM receipts x WHERE (x.agency_code, x.template, x.symbol) = (s.agency_code, s.template, s.symbol) AND x.issued_at >= $1 AND x.issued_at < $2) AS used, \
                   (SELECT COALESCE(array_agg(number::BIGINT ORDER BY number), '{{}}') FROM receipts x WHERE (x.agency_code, x.template, x.symbol) = (s.agency_code, s.template, s.symbol) AND x.cancelled_at >= $1 AND x.cancelled_at < $2) AS cancelled \
                 FROM s LEFT JOIN agencies a ON a.code = s.agency_code ORDER BY 1, 2, 3"
            ),
            v,
        ))
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let before: i64 = r.try_get("", "before")?;
        let last: i64 = r.try_get("", "last")?;
        out.push(Usage {
            agency: r.try_get("", "agency_code")?,
            agency_name: r.try_get("", "name")?,
            agency_tax_code: r.try_get("", "tax_code")?,
            template: r.try_get("", "template")?,
            symbol: r.try_get("", "symbol")?,
            opening_number: before + 1,
            from_number: r.try_get("", "first")?,
            to_number: last,
            used: r.try_get("", "used")?,
            cancelled: r.try_get("", "cancelled")?,
            closing_number: if last > 0 { last } else { before },
        });
    }
    Ok(out)
}

pub const USAGE_HEADERS: [&str; 15] = [
    "agency",
    "agency_name",
    "agency_tax_code",
    "template",
    "symbol",
    "period_from",
    "period_to",
    "opening_number",
    "from_number",
    "to_number",
    "used",
    "cancelled",
    "cancelled_numbers",
    "lost",
    "closing_number",
];

fn n7(n: i64) -> String {
    if n > 0 {
        format!("{n:07}")
    } else {
        String::new()
    }
}

impl Usage {
    pub fn cells(&self, from: NaiveDate, to: NaiveDate) -> Vec<String> {
        vec![
            self.agency.clone(),
            self.agency_name.clone(),
            self.agency_tax_code.clone(),
            self.template.clone(),
            self.symbol.clone(),
            from.to_string(),
            to.to_string(),
            n7(self.opening_number),
            n7(self.from_number),
            n7(self.to_number),
            self.used.to_string(),
            self.cancelled.len().to_string(),
            self.cancelled.iter().map(|n| n7(*n)).collect::<Vec<_>>().join(" "),
            "0".into(),
            n7(self.closing_number),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv("plain"), "plain");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_line(&["x".into(), "Nguyễn, Văn A".into()]), "x,\"Nguyễn, Văn A\"");
    }

    #[test]
    fn a_day_starts_at_midnight_in_vietnam() {
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        assert_eq!(day_start(d).to_rfc3339(), "2025-12-31T17:00:00+00:00");
    }
}
