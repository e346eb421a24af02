//! `receiptctl rules` and `receiptctl assess`: the waivers in force and what a payer owes.

use crate::session::{session, Conn};
use crate::table;
use crate::AssessArgs;
use anyhow::{bail, Context};
use chrono::NaiveDate;
use feepay_domain::numbering::gmt7;
use feepay_domain::receipt::datetime_gmt7;
use feepay_domain::waiver::{Category, Channel, LineQuery};
use feepay_runtime::refdata;
use std::io::Write;
use std::process::ExitCode;

pub async fn list(
    out: &mut impl Write,
    conn: &Conn,
    agency: String,
    date: Option<NaiveDate>,
) -> anyhow::Result<ExitCode> {
    let (db, _actor) = session(conn).await?;
    let loaded =
        refdata::load_latest(&db).await?.context("no reference data loaded: run `receiptctl reference load`")?;
    if !loaded.reference.agencies.contains_key(&agency) {
        eprintln!("agency {agency} is not in reference version {}", loaded.version);
        return Ok(ExitCode::from(2));
    }
    let date = date.unwrap_or_else(|| crate::session::now().with_timezone(&gmt7()).date_naive());
    let rules = loaded.rules.in_force_for(&loaded.reference, &agency, date);
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.legal.document_number.clone(),
                format!("{} → {}", r.valid_from, r.valid_until.map_or("…".to_string(), |d| d.to_string())),
                r.priority.to_string(),
                match r.effect {
                    feepay_domain::waiver::Effect::PercentOff(p) => format!("-{p}%"),
                    feepay_domain::waiver::Effect::AmountOff(a) => {
                        format!("-{} đ/unit", a.grouped())
                    }
                    feepay_domain::waiver::Effect::SetAmount(a) => {
                        format!("= {} đ/unit", a.grouped())
                    }
                    feepay_domain::waiver::Effect::Exempt => "exempt".into(),
                },
            ]
        })
        .collect();
    writeln!(out, "rules in force for {agency} on {date} (reference version {}):", loaded.version)?;
    table::print(out, &["RULE", "LEGAL BASIS", "VALID", "PRIORITY", "EFFECT"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn assess(out: &mut impl Write, conn: &Conn, a: AssessArgs) -> anyhow::Result<ExitCode> {
    let (db, _actor) = session(conn).await?;
    let loaded =
        refdata::load_latest(&db).await?.context("no reference data loaded: run `receiptctl reference load`")?;
    let channel = parse_channel(&a.channel)?;
    let categories: Vec<Category> = a.categories.iter().map(|c| parse_category(c)).collect::<Result<_, _>>()?;
    if !loaded.reference.agencies.contains_key(&a.agency) {
        eprintln!("agency {} is not in the reference data", a.agency);
        return Ok(ExitCode::from(2));
    }
    let at = a.at.unwrap_or_else(crate::session::now);
    let mut rows = Vec::new();
    let mut total = feepay_domain::Vnd::ZERO;
    let mut explanations = Vec::new();
    for f in &a.fees {
        let (code, qty) = match f.split_once(':') {
            Some((c, q)) => (c, q.parse::<u32>().with_context(|| format!("quantity in {f:?}"))?),
            None => (f.as_str(), 1),
        };
        let Some(fee) = loaded.reference.fees.get(code) else {
            eprintln!("fee {code} is not in the fee schedule");
            return Ok(ExitCode::from(2));
        };
        let q = LineQuery {
            agency: &a.agency,
            procedure: &a.procedure,
            fee,
            quantity: qty,
            channel,
            paid_online: a.paid_online,
            categories: &categories,
            identity_level: a.identity_level,
            citizen: !a.foreigner,
            at,
        };
        let l = loaded.rules.assess_line(&loaded.reference, &q)?;
        total = total + l.due;
        explanations.push(l.explain());
        rows.push(vec![
            l.fee_code.clone(),
            l.fee_name.clone(),
            l.quantity.to_string(),
            l.base.grouped(),
            l.applied.as_ref().map_or("—".into(), |w| format!("{} ({})", w.document_number, w.rule_id)),
            l.due.grouped(),
        ]);
    }
    writeln!(out, "assessment for {} at {} (GMT+7), channel {}", a.agency, datetime_gmt7(at), channel.code())?;
    table::print(out, &["FEE", "NAME", "QTY", "BASE (đ)", "WAIVER", "DUE (đ)"], &rows)?;
    writeln!(out, "total due: {} đ ({})", total.grouped(), feepay_domain::words::amount_in_words(total))?;
    writeln!(out, "\nwhy:")?;
    for e in explanations {
        writeln!(out, "  {e}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_channel(s: &str) -> anyhow::Result<Channel> {
    Ok(match s {
        "fully_online" => Channel::FullyOnline,
        "partly_online" => Channel::PartlyOnline,
        "counter" => Channel::Counter,
        other => bail!("channel {other:?}: use fully_online, partly_online or counter"),
    })
}

fn parse_category(s: &str) -> anyhow::Result<Category> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        anyhow::anyhow!(
            "category {s:?}: use one of poor_household, near_poor_household, meritorious_service, person_with_disabilities, martyr_relative, war_invalid, heroic_mother, difficult_commune_resident"
        )
    })
}
