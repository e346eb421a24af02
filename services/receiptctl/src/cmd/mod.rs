//! One module per command group; `run` dispatches a parsed command line.

mod audit;
pub mod broker;
mod certificates;
mod dead_letters;
mod deliveries;
mod operators;
mod receipts;
mod reference;
mod reports;
mod retention;
mod rules;
mod series;
mod settings;
mod transition;

use crate::access::Role;
use crate::session::{session, Conn};
use crate::{demo, keys, parked, tax, Cli, Command, ParkedCmd, ReportCmd, RulesCmd};
use std::process::ExitCode;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = &mut std::io::stdout().lock();
    // A mounted secret (`FEEPAY_DATABASE_URL_FILE`) wins over the variable or the flag, so
    // jobs keep the URL out of their environment.
    let database_url = match feepay_runtime::settings::opt(&feepay_runtime::settings::catalog::DATABASE_URL_FILE) {
        Some(_) => {
            feepay_runtime::settings::secret(&feepay_runtime::settings::catalog::DATABASE_URL)?.expose().to_string()
        }
        None => cli.database_url.clone(),
    };
    let conn = Conn { database_url, token: cli.token.clone(), operator: cli.operator.clone() };
    match cli.command {
        Command::Migrate => reference::migrate(out, &conn).await,
        Command::Reference(cmd) => reference::run(out, &conn, cmd).await,
        Command::Keys(cmd) => keys::run(out, cmd),
        Command::Settings { markdown } => settings::run(out, markdown),
        Command::Broker(cmd) => broker::run(out, cmd).await,
        Command::Rules(RulesCmd::List { agency, date }) => rules::list(out, &conn, agency, date).await,
        Command::Assess(a) => rules::assess(out, &conn, a).await,
        Command::Receipts(cmd) => receipts::run(out, &conn, cmd).await,
        Command::Series(cmd) => series::run(out, &conn, cmd).await,
        Command::Audit(a) => audit::run(out, &conn, a).await,
        Command::DeadLetters(c) => dead_letters::run(out, &conn, &c).await,
        Command::Certificates(c) => certificates::run(out, &conn, c).await,
        Command::Retention(c) => retention::run(out, &conn, c).await,
        Command::Tax(c) => {
            let (db, actor) = session(&conn).await?;
            tax::run(out, &db, &actor, c).await
        }
        Command::Parked(c) => {
            let (db, actor) = session(&conn).await?;
            match c {
                ParkedCmd::List { all } => parked::list(out, &db, &actor, all).await,
                ParkedCmd::Show { id } => parked::show(out, &db, &actor, id).await,
                ParkedCmd::Retry { id, reason } => parked::retry(out, &db, &actor, id, &reason).await,
            }
        }
        Command::Reconcile(a) => reports::reconcile(out, &conn, a).await,
        Command::Report(ReportCmd::Usage { from, to, agency, format }) => {
            reports::usage(out, &conn, from, to, agency, format).await
        }
        Command::Operators(c) => operators::run(out, &conn, &c).await,
        Command::Deliveries(cmd) => deliveries::run(out, &conn, cmd).await,
        Command::Demo { smtp_web } => {
            let (db, actor) = session(&conn).await?;
            actor.require(Role::Admin, "publish the demo")?;
            demo::run(out, &db, &smtp_web).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
