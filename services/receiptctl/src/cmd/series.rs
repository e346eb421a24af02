//! `receiptctl series`: the collectors' receipt series and the tax authority's acceptance of
//! their registration (01/ĐKTĐ-CTĐT answered on 01/TB-ĐKĐT, Circular 91/2026/TT-BTC
//! Art. 17). The issuer numbers receipts of a form version that needs it only in a series
//! whose acceptance is recorded here; payments waiting for it are parked and retried after.

use crate::access::Role;
use crate::session::{session, Conn};
use crate::table;
use crate::SeriesCmd;
use feepay_runtime::series_registrations::{self, Acceptance};
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: SeriesCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    let Some(loaded) = feepay_runtime::refdata::load_latest(&db).await? else {
        eprintln!("no reference data loaded: run `receiptctl reference load`");
        return Ok(ExitCode::from(2));
    };
    let reference = &loaded.reference;
    match cmd {
        SeriesCmd::List { date } => {
            let day = date.unwrap_or_else(|| feepay_domain::numbering::date_gmt7(crate::session::now()));
            let registered = series_registrations::all(&db).await?;
            let mut rows = Vec::new();
            for s in reference.series.iter().filter(|s| actor.covers(&s.agency)) {
                let form = s.form_on(day);
                let reg = registered
                    .iter()
                    .find(|r| r.agency_code == s.agency && r.template == s.template && r.letters == s.letters);
                let state = match (form, reg) {
                    (None, _) => "no form in force".to_string(),
                    (Some(f), _) if !f.registration_required => "registration not required by the form".into(),
                    (Some(_), Some(r)) if r.accepted_on <= day => format!("accepted {} ({})", r.accepted_on, r.notice),
                    (Some(_), Some(r)) => format!("accepted from {} ({})", r.accepted_on, r.notice),
                    (Some(_), None) => "NOT REGISTERED: receipts wait".into(),
                };
                let delegated: Vec<String> = s.delegated.iter().map(|(d, r)| format!("{d} {r}")).collect();
                rows.push(vec![
                    s.agency.clone(),
                    s.template.clone(),
                    s.symbol_on(day).unwrap_or_default(),
                    s.kinds.iter().map(|k| k.code()).collect::<Vec<_>>().join(","),
                    delegated.join("; "),
                    state,
                ]);
            }
            table::print(out, &["AGENCY", "TEMPLATE", "SYMBOL", "KINDS", "DELEGATED NUMBERS", "REGISTRATION"], &rows)?;
        }
        SeriesCmd::Register { agency, template, letters, notice, accepted_on } => {
            actor.require(Role::Operator, "record a registration")?;
            actor.check_agency(&agency)?;
            if reference.series_named(&agency, &template, &letters).is_none() {
                eprintln!(
                    "agency {agency} has no series {template} {letters:?} in reference version {}",
                    loaded.version
                );
                return Ok(ExitCode::from(2));
            }
            if notice.trim().chars().count() < 3 {
                eprintln!("give the number and date of the acceptance notice 01/TB-ĐKĐT");
                return Ok(ExitCode::from(2));
            }
            let acceptance = Acceptance {
                agency: &agency,
                template: &template,
                letters: &letters,
                notice: notice.trim(),
                accepted_on,
            };
            let now = crate::session::now();
            if !series_registrations::record(&db, &acceptance, &actor.name, now).await? {
                writeln!(out, "series {template} {letters} of {agency} was already registered")?;
                return Ok(ExitCode::SUCCESS);
            }
            actor
                .record(
                    &db,
                    "series.register",
                    &format!("{agency}/{template}/{letters}"),
                    None,
                    serde_json::json!({"notice": notice, "accepted_on": accepted_on}),
                )
                .await?;
            writeln!(
                out,
                "series {template} {letters} of {agency} registered (accepted {accepted_on}); payments parked as series_unregistered can be retried: receiptctl parked list"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
