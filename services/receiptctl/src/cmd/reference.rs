//! `receiptctl migrate` and `receiptctl reference`: the schema and the reference data.

use crate::access::Role;
use crate::session::{db, session, Conn};
use crate::ReferenceCmd;
use anyhow::Context;
use feepay_runtime::refdata::{self, ReferenceFiles};
use std::io::Write;
use std::process::ExitCode;

pub async fn migrate(out: &mut impl Write, conn: &Conn) -> anyhow::Result<ExitCode> {
    // The schema owner's login is the authority here: applying a migration needs its rights,
    // and the deployment's migration job holds no operator token.
    let db = db(&conn.database_url).await?;
    feepay_runtime::db::migrate(&db).await.context("applying migrations (needs the schema owner's rights)")?;
    writeln!(out, "migrations applied")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: ReferenceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ReferenceCmd::Check { dir } => {
            let files = ReferenceFiles::read_dir(&dir)?;
            match files.parse() {
                Ok((r, rules)) => writeln!(
                    out,
                    "valid: {} agencies, {} series, {} fees, {} waiver rules",
                    r.agencies.len(),
                    r.series.len(),
                    r.fees.len(),
                    rules.rules.len()
                )?,
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("nothing was loaded: fix the lines above and run the command again");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        ReferenceCmd::Load { dir } => {
            let files = ReferenceFiles::read_dir(&dir)?;
            if let Err(e) = files.parse() {
                eprintln!("{e}");
                eprintln!("nothing was loaded: fix the lines above and run the command again");
                return Ok(ExitCode::from(2));
            }
            let (db, actor) = session(conn).await?;
            actor.require(Role::Admin, "load reference data")?;
            let (version, changed) = refdata::store(&db, &files, &actor.name).await?;
            let (r, rules) = files.parse().expect("validated above");
            if changed {
                writeln!(
                    out,
                    "loaded reference version {version}: {} agencies, {} series, {} fees, {} waiver rules",
                    r.agencies.len(),
                    r.series.len(),
                    r.fees.len(),
                    rules.rules.len()
                )?;
            } else {
                writeln!(out, "reference version {version} already holds these files; nothing changed")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
