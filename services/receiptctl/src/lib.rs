//! `receiptctl`: the operators' command line.
//!
//! Exit codes: 0 success, 1 operational error (database unreachable, ...), 2 invalid
//! input (bad reference files, unknown agency, ...), 3 a check found a defect (audit).

#![allow(clippy::print_stdout)]

use access::{Actor, Role};
use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use feepay_domain::numbering::{check_chain, gmt7, ChainLink};
use feepay_domain::receipt::datetime_gmt7;
use feepay_domain::waiver::{Category, Channel, LineQuery};
use feepay_runtime::refdata::{self, ReferenceFiles};
use feepay_runtime::settings::DatabaseSettings;
use feepay_runtime::sql::stmt;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

pub mod access;
pub mod demo;
pub mod dlq;
pub mod keys;
pub mod parked;
pub mod reports;
pub mod table;
pub mod tax;

/// Operator command line of feepay: reference data, keys, waivers, receipts and audits.
#[derive(Debug, Parser)]
#[command(name = "receiptctl", version, about, long_about = None)]
pub struct Cli {
    /// Who is acting when no operators are configured (open local mode); recorded in the
    /// audit log.
    #[arg(long, global = true, env = "FEEPAY_OPERATOR", default_value = "operator")]
    pub operator: String,
    /// Operator token (required once operators are configured; see `receiptctl operators`).
    #[arg(long, global = true, env = "FEEPAY_OPERATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PostgreSQL URL.
    #[arg(
        long,
        global = true,
        env = "FEEPAY_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/feepay?sslmode=disable",
        hide_default_value = false
    )]
    pub database_url: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations.
    Migrate,
    /// Reference data: agencies, series, fees and waiver rules.
    #[command(subcommand)]
    Reference(ReferenceCmd),
    /// Signing certificates: the local test CA, certificates per agency (file or token),
    /// their checks and expiry, what to register with the tax authority.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Waiver rules in force.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// What a dossier would cost: every line with its waiver and legal basis.
    Assess(AssessArgs),
    /// Receipts: search, show, cancel, replace.
    #[command(subcommand)]
    Receipts(ReceiptsCmd),
    /// Dead letters: list, inspect, replay after a fix.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCmd),
    /// Parked events (valid events waiting for a fix: a key, a series, ...): list, show, retry.
    #[command(subcommand)]
    Parked(ParkedCmd),
    /// Daily reconciliation per agency and payment provider, to compare with the platform's report.
    Reconcile(ReconcileArgs),
    /// Internal reports (the usage table behind BC26).
    #[command(subcommand)]
    Report(ReportCmd),
    /// Documents for the tax authority: signed usage reports (BC26/BLĐT) and notices of
    /// receipts issued in error (04/SS-CTĐT), and the registration draft (01/ĐKTĐ-CTĐT).
    #[command(subcommand)]
    Tax(tax::TaxCmd),
    /// Operators of this tool: their role, agency scope and token.
    #[command(subcommand)]
    Operators(OperatorsCmd),
    /// Audit a series: numbering, hash chain and every signature.
    Audit(AuditArgs),
    /// Email deliveries: list them, resend a receipt's email.
    #[command(subcommand)]
    Deliveries(DeliveriesCmd),
    /// Publish a realistic demo day and print what became of it (used by `make run`).
    Demo {
        /// Web address of the SMTP sink.
        #[arg(long, env = "FEEPAY_DEMO_SMTP_WEB", default_value = "http://127.0.0.1:1080")]
        smtp_web: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReferenceCmd {
    /// Validate the files and store them as a new version, all or nothing.
    Load {
        #[arg(long, default_value = "deploy/reference")]
        dir: PathBuf,
    },
    /// Validate the files without storing anything.
    Check {
        #[arg(long, default_value = "deploy/reference")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ParkedCmd {
    /// Parked events waiting for a fix (with --all, resolved ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// One parked event: its reason, its record and its body.
    Show { id: i64 },
    /// Ask the owning service to apply it again (after the fix).
    Retry {
        id: i64,
        /// Why (kept in the audit log), e.g. "khóa ký của đơn vị đã được bổ sung".
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCmd {
    /// Rules in force for an agency on a date (GMT+7).
    List {
        #[arg(long)]
        agency: String,
        /// Date, YYYY-MM-DD (default today in GMT+7).
        #[arg(long)]
        date: Option<NaiveDate>,
    },
}

#[derive(Debug, clap::Args)]
pub struct AssessArgs {
    #[arg(long)]
    pub agency: String,
    #[arg(long, default_value = "")]
    pub procedure: String,
    /// Fee lines as CODE or CODE:QUANTITY, repeatable.
    #[arg(long = "fee", required = true)]
    pub fees: Vec<String>,
    /// fully_online, partly_online or counter.
    #[arg(long, default_value = "counter")]
    pub channel: String,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub paid_online: bool,
    /// Beneficiary categories, e.g. poor_household (repeatable).
    #[arg(long = "category")]
    pub categories: Vec<String>,
    /// Level of the payer's electronic identity account (VNeID), 0 when unknown.
    #[arg(long, default_value_t = 0)]
    pub identity_level: u8,
    /// Time of assessment, RFC 3339 (default now).
    #[arg(long)]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Subcommand)]
pub enum ReceiptsCmd {
    /// Search receipts.
    List {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        payment: Option<String>,
        #[arg(long)]
        dossier: Option<String>,
        /// From date, YYYY-MM-DD (GMT+7).
        #[arg(long)]
        from: Option<NaiveDate>,
        /// To date inclusive, YYYY-MM-DD (GMT+7).
        #[arg(long)]
        to: Option<NaiveDate>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one receipt by lookup code or receipt id, with its signed document.
    Show { id: String },
    /// Cancel a receipt (it keeps its number; a ReceiptCancelled event and an email follow).
    Cancel {
        /// Receipt id or lookup code.
        id: String,
        /// Why (printed on the cancellation and kept in the audit log).
        #[arg(long)]
        reason: String,
        /// Do it without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Cancel a receipt and issue a replacement with corrected payer details.
    Replace {
        /// Receipt id or lookup code.
        id: String,
        #[arg(long)]
        reason: String,
        /// Corrected name of the payer.
        #[arg(long)]
        payer_name: Option<String>,
        /// Corrected personal identification number (12 digits; empty to remove).
        #[arg(long)]
        payer_id: Option<String>,
        /// Corrected tax code (empty to remove).
        #[arg(long)]
        payer_tax_code: Option<String>,
        /// Corrected address.
        #[arg(long)]
        payer_address: Option<String>,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCmd {
    /// List dead letters of every consumed topic (or one), oldest first.
    List {
        /// A dead-letter topic, e.g. payments.succeeded.dlq.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Show one dead letter: reason, headers and the original event decoded when possible.
    Show {
        /// <dlq topic>/<partition>/<offset>, as listed.
        reference: String,
    },
    /// Put a dead letter back on its original topic, as it was or with a corrected body.
    Replay {
        reference: String,
        /// A corrected event body (JSON, or protobuf if the file ends in .pb) to send instead.
        #[arg(long)]
        edited: Option<PathBuf>,
        /// Why (audit log).
        #[arg(long)]
        reason: String,
        /// Replay even if it was replayed before.
        #[arg(long)]
        again: bool,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Xml,
}

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Day of payment, YYYY-MM-DD (GMT+7); default yesterday.
    #[arg(long)]
    pub date: Option<NaiveDate>,
    #[arg(long)]
    pub agency: Option<String>,
    /// Payment provider code as in the events.
    #[arg(long)]
    pub provider: Option<String>,
    /// table (both sections), csv (the summary) ...
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// ... or, with csv, the payments without a receipt instead of the summary.
    #[arg(long)]
    pub unmatched: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Receipt usage per template and series for a period, in detail (opening and closing
    /// numbers, cancelled numbers): an internal table behind BC26/BLĐT.
    Usage {
        /// First day, YYYY-MM-DD (GMT+7).
        #[arg(long)]
        from: NaiveDate,
        /// Last day, inclusive.
        #[arg(long)]
        to: NaiveDate,
        #[arg(long)]
        agency: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorsCmd {
    /// Add an operator and print their token (shown once).
    Add {
        name: String,
        /// auditor (read), operator (read and act) or admin (everything).
        #[arg(long)]
        role: String,
        /// Agency code whose subtree the operator covers, or * for all.
        #[arg(long)]
        scope: String,
    },
    /// List operators (never their tokens).
    List,
    /// Revoke an operator's token.
    Revoke {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Show who the current token belongs to.
    Whoami,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCmd {
    /// List deliveries (failed ones by default), newest first.
    List {
        /// queued, sent, failed or skipped.
        #[arg(long, default_value = "failed")]
        status: String,
        #[arg(long)]
        agency: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Queue a receipt's email(s) again: by receipt id, lookup code or payment id.
    Resend {
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Do it without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[arg(long)]
    pub agency: String,
    #[arg(long)]
    pub template: String,
    /// Receipt symbol, e.g. BN-26E.
    #[arg(long)]
    pub symbol: String,
    /// The CA certificates (PEM) signing certificates must chain to, e.g. the trust
    /// anchors published by the lookup service (`/api/v1/keys`).
    #[arg(long, env = "FEEPAY_TRUST_ANCHORS", default_value = ".local/pki/ca.pem")]
    pub trust_anchors: PathBuf,
}

async fn db(url: &str) -> anyhow::Result<DatabaseConnection> {
    let s = DatabaseSettings { url: feepay_runtime::settings::Secret::new(url), ..DatabaseSettings::from_env()? };
    feepay_runtime::db::connect(&s).await.context("connecting to PostgreSQL (FEEPAY_DATABASE_URL)")
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

/// Runs a command; the exit code follows the table in the crate docs.
/// Runs a command. Exit code 4 when the operator is not allowed to do it.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match run_command(cli).await {
        Err(e) if e.downcast_ref::<access::Denied>().is_some() => {
            eprintln!("not permitted: {e}");
            Ok(ExitCode::from(4))
        }
        other => other,
    }
}

/// How to reach the database and who claims to be calling.
#[derive(Debug, Clone)]
pub struct Conn {
    pub database_url: String,
    pub token: Option<String>,
    pub operator: String,
}

/// Connects, applies migrations and resolves the caller.
async fn session(conn: &Conn) -> anyhow::Result<(DatabaseConnection, Actor)> {
    let db = db(&conn.database_url).await?;
    // Only `receiptctl migrate`, run as the schema's owner, changes the schema.
    let behind = feepay_runtime::db::schema_behind(&db).await?;
    if !behind.is_empty() {
        anyhow::bail!(
            "the database schema is behind ({} migration(s) not applied, from {}): run `receiptctl migrate` with the migrator's database URL",
            behind.len(),
            behind[0]
        );
    }
    let actor = access::authenticate(&db, conn.token.as_deref(), &conn.operator).await?;
    Ok((db, actor))
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} type yes to confirm: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(true)
    } else {
        eprintln!("nothing changed");
        Ok(false)
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = &mut std::io::stdout().lock();
    let conn =
        Conn { database_url: cli.database_url.clone(), token: cli.token.clone(), operator: cli.operator.clone() };
    match cli.command {
        Command::Migrate => {
            let db = db(&conn.database_url).await?;
            feepay_runtime::db::migrate(&db).await.context("applying migrations (needs the schema owner's rights)")?;
            let actor = access::authenticate(&db, conn.token.as_deref(), &conn.operator).await?;
            actor.require(Role::Admin, "apply migrations")?;
            writeln!(out, "migrations applied")?;
        }
        Command::Reference(ReferenceCmd::Check { dir }) => {
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
        Command::Reference(ReferenceCmd::Load { dir }) => {
            let files = ReferenceFiles::read_dir(&dir)?;
            if let Err(e) = files.parse() {
                eprintln!("{e}");
                eprintln!("nothing was loaded: fix the lines above and run the command again");
                return Ok(ExitCode::from(2));
            }
            let (db, actor) = session(&conn).await?;
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
        Command::Keys(cmd) => return keys::run(out, cmd),
        Command::Rules(RulesCmd::List { agency, date }) => {
            let (db, _actor) = session(&conn).await?;
            let loaded = refdata::load_latest(&db)
                .await?
                .context("no reference data loaded: run `receiptctl reference load`")?;
            if !loaded.reference.agencies.contains_key(&agency) {
                eprintln!("agency {agency} is not in reference version {}", loaded.version);
                return Ok(ExitCode::from(2));
            }
            let date = date.unwrap_or_else(|| Utc::now().with_timezone(&gmt7()).date_naive());
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
        }
        Command::Assess(a) => {
            let (db, _actor) = session(&conn).await?;
            let loaded = refdata::load_latest(&db)
                .await?
                .context("no reference data loaded: run `receiptctl reference load`")?;
            let channel = parse_channel(&a.channel)?;
            let categories: Vec<Category> = a.categories.iter().map(|c| parse_category(c)).collect::<Result<_, _>>()?;
            if !loaded.reference.agencies.contains_key(&a.agency) {
                eprintln!("agency {} is not in the reference data", a.agency);
                return Ok(ExitCode::from(2));
            }
            let at = a.at.unwrap_or_else(Utc::now);
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
        }
        Command::Receipts(ReceiptsCmd::List { agency, payment, dossier, from, to, limit }) => {
            let (db, actor) = session(&conn).await?;
            let mut sql = String::from(
                "SELECT r.agency_code, r.template, r.symbol, r.number, r.status, r.total, r.issued_at, r.payment_id, p.dossier_code, r.lookup_code \
                 FROM receipts r JOIN payments p USING (payment_id) WHERE true",
            );
            let mut v: Vec<sea_orm::Value> = Vec::new();
            let add = |cond: &str, val: sea_orm::Value, v: &mut Vec<sea_orm::Value>, sql: &mut String| {
                v.push(val);
                sql.push_str(&cond.replace("$?", &format!("${}", v.len())));
            };
            if let Some(scope) = actor.scope_value() {
                add(" AND r.agency_code = ANY($?)", scope.into(), &mut v, &mut sql);
            }
            if let Some(a) = agency {
                add(" AND r.agency_code = $?", a.into(), &mut v, &mut sql);
            }
            if let Some(p) = payment {
                add(" AND r.payment_id = $?", p.into(), &mut v, &mut sql);
            }
            if let Some(d) = dossier {
                add(" AND p.dossier_code = $?", d.into(), &mut v, &mut sql);
            }
            // Days are GMT+7 days: compare instants with midnight in Vietnam, computed here.
            // (PostgreSQL reads `AT TIME ZONE '+07'` as POSIX, i.e. UTC−7.)
            if let Some(f) = from {
                add(" AND r.issued_at >= $?", reports::day_start(f).into(), &mut v, &mut sql);
            }
            if let Some(t) = to {
                add(" AND r.issued_at < $?", reports::day_start(t.succ_opt().unwrap_or(t)).into(), &mut v, &mut sql);
            }
            v.push(limit.into());
            sql.push_str(&format!(" ORDER BY r.issued_at DESC, r.number DESC LIMIT ${}", v.len()));
            let rows = db.query_all(stmt(sql, v)).await?;
            let mut table_rows = Vec::new();
            for r in rows {
                let issued: DateTime<Utc> = r.try_get("", "issued_at")?;
                let total: i64 = r.try_get("", "total")?;
                table_rows.push(vec![
                    r.try_get::<String>("", "agency_code")?,
                    format!("{} {}", r.try_get::<String>("", "template")?, r.try_get::<String>("", "symbol")?),
                    format!("{:07}", r.try_get::<i32>("", "number")?),
                    r.try_get::<String>("", "status")?,
                    feepay_domain::Vnd::new(total).map(|v| v.grouped()).unwrap_or_default(),
                    datetime_gmt7(issued),
                    r.try_get::<String>("", "payment_id")?,
                    r.try_get::<String>("", "dossier_code")?,
                    r.try_get::<String>("", "lookup_code")?,
                ]);
            }
            table::print(
                out,
                &[
                    "AGENCY",
                    "SERIES",
                    "NUMBER",
                    "STATUS",
                    "TOTAL (đ)",
                    "ISSUED (GMT+7)",
                    "PAYMENT",
                    "DOSSIER",
                    "LOOKUP CODE",
                ],
                &table_rows,
            )?;
            writeln!(out, "{} receipt(s)", table_rows.len())?;
        }
        Command::Receipts(ReceiptsCmd::Show { id }) => {
            let (db, actor) = session(&conn).await?;
            let row = db
                .query_one(stmt(
                    "SELECT agency_code, document, status, cancel_reason, cancelled_at FROM receipts WHERE lookup_code = $1 OR receipt_id::text = $1",
                    vec![id.clone().into()],
                ))
                .await?;
            let Some(row) = row.filter(|r| r.try_get::<String>("", "agency_code").is_ok_and(|a| actor.covers(&a)))
            else {
                eprintln!("no receipt with lookup code or id {id} (in your scope)");
                return Ok(ExitCode::from(2));
            };
            actor.record(&db, "receipt.show", &id, None, serde_json::json!({})).await?;
            let status: String = row.try_get("", "status")?;
            writeln!(out, "status: {status}")?;
            if status == "cancelled" {
                writeln!(
                    out,
                    "cancelled: {}",
                    row.try_get::<Option<String>>("", "cancel_reason")?.unwrap_or_default()
                )?;
            }
            writeln!(out, "{}", row.try_get::<String>("", "document")?)?;
        }
        Command::Audit(a) => {
            let (db, actor) = session(&conn).await?;
            actor.check_agency(&a.agency)?;
            actor
                .record(
                    &db,
                    "series.audit",
                    &format!("{} {} {}", a.agency, a.template, a.symbol),
                    None,
                    serde_json::json!({}),
                )
                .await?;
            return audit(out, &db, a).await;
        }
        Command::Receipts(ReceiptsCmd::Cancel { id, reason, yes }) => {
            return correct(out, &conn, CorrectionAsk { receipt: id, reason, replace: None }, yes).await;
        }
        Command::Receipts(ReceiptsCmd::Replace {
            id,
            reason,
            payer_name,
            payer_id,
            payer_tax_code,
            payer_address,
            yes,
        }) => {
            let replace = feepay_domain::correction::PayerCorrection {
                full_name: payer_name,
                personal_id: payer_id,
                tax_code: payer_tax_code,
                address: payer_address,
            };
            return correct(out, &conn, CorrectionAsk { receipt: id, reason, replace: Some(replace) }, yes).await;
        }
        Command::DeadLetters(c) => return dead_letters(out, &conn, &c).await,
        Command::Tax(c) => {
            let (db, actor) = session(&conn).await?;
            return tax::run(out, &db, &actor, c).await;
        }
        Command::Parked(c) => {
            let (db, actor) = session(&conn).await?;
            return match c {
                ParkedCmd::List { all } => parked::list(out, &db, &actor, all).await,
                ParkedCmd::Show { id } => parked::show(out, &db, &actor, id).await,
                ParkedCmd::Retry { id, reason } => parked::retry(out, &db, &actor, id, &reason).await,
            };
        }
        Command::Reconcile(a) => {
            let (db, actor) = session(&conn).await?;
            if let Some(agency) = &a.agency {
                actor.check_agency(agency)?;
            }
            let day = a.date.unwrap_or_else(|| {
                let today = Utc::now().with_timezone(&gmt7()).date_naive();
                today.pred_opt().unwrap_or(today)
            });
            let (rows, unmatched) =
                reports::reconcile(&db, &actor, day, a.agency.as_deref(), a.provider.as_deref()).await?;
            actor
                .record(
                    &db,
                    "report.reconcile",
                    &day.to_string(),
                    None,
                    serde_json::json!({"agency": a.agency, "provider": a.provider}),
                )
                .await?;
            match (a.format, a.unmatched) {
                (Format::Csv, false) => {
                    writeln!(out, "{}", reports::RECON_HEADERS.join(","))?;
                    for r in &rows {
                        writeln!(out, "{}", reports::csv_line(&r.cells(false)))?;
                    }
                }
                (Format::Csv, true) => {
                    writeln!(out, "{}", reports::UNMATCHED_HEADERS.join(","))?;
                    for u in &unmatched {
                        writeln!(out, "{}", reports::csv_line(&u.cells()))?;
                    }
                }
                (Format::Xml, _) => {
                    eprintln!("reconcile prints a table or csv");
                    return Ok(ExitCode::from(2));
                }
                (Format::Table, _) => {
                    writeln!(out, "reconciliation of payments made on {day} (GMT+7)")?;
                    let headers: Vec<String> = reports::RECON_HEADERS.iter().map(|h| h.to_uppercase()).collect();
                    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
                    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells(true)).collect();
                    table::print(out, &headers, &cells)?;
                    let total = |f: fn(&reports::ReconRow) -> i64| rows.iter().map(f).sum::<i64>();
                    writeln!(
                        out,
                        "total: {} payments, {} đ paid, {} đ collected on valid receipts, {} đ waived",
                        total(|r| r.payments),
                        feepay_domain::Vnd::new(total(|r| r.paid)).map(|v| v.grouped()).unwrap_or_default(),
                        feepay_domain::Vnd::new(total(|r| r.collected)).map(|v| v.grouped()).unwrap_or_default(),
                        feepay_domain::Vnd::new(total(|r| r.waived)).map(|v| v.grouped()).unwrap_or_default(),
                    )?;
                    writeln!(out, "\npayments without a valid receipt: {}", unmatched.len())?;
                    if !unmatched.is_empty() {
                        let headers: Vec<String> =
                            reports::UNMATCHED_HEADERS.iter().map(|h| h.to_uppercase()).collect();
                        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
                        let cells: Vec<Vec<String>> = unmatched.iter().map(|u| u.cells()).collect();
                        table::print(out, &headers, &cells)?;
                    }
                }
            }
        }
        Command::Report(ReportCmd::Usage { from, to, agency, format }) => {
            let (db, actor) = session(&conn).await?;
            if let Some(a) = &agency {
                actor.check_agency(a)?;
            }
            if to < from {
                eprintln!("--to {to} is before --from {from}");
                return Ok(ExitCode::from(2));
            }
            let rows = reports::usage(&db, &actor, from, to, agency.as_deref()).await?;
            actor
                .record(&db, "report.usage", &format!("{from}..{to}"), None, serde_json::json!({"agency": agency}))
                .await?;
            match format {
                Format::Csv => {
                    writeln!(out, "{}", reports::USAGE_HEADERS.join(","))?;
                    for r in &rows {
                        writeln!(out, "{}", reports::csv_line(&r.cells(from, to)))?;
                    }
                }
                Format::Xml => {
                    eprintln!(
                        "the official XML of BC26/BLĐT is signed by the issuer for each closed period: receiptctl tax list --kind usage-report"
                    );
                    return Ok(ExitCode::from(2));
                }
                Format::Table => {
                    writeln!(out, "receipt usage from {from} to {to} (GMT+7)")?;
                    let cells: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            let c = r.cells(from, to);
                            vec![
                                c[0].clone(),
                                c[3].clone(),
                                c[4].clone(),
                                c[7].clone(),
                                c[8].clone(),
                                c[9].clone(),
                                c[10].clone(),
                                c[11].clone(),
                                c[12].clone(),
                                c[14].clone(),
                            ]
                        })
                        .collect();
                    table::print(
                        out,
                        &[
                            "AGENCY",
                            "TEMPLATE",
                            "SYMBOL",
                            "OPENING",
                            "FROM",
                            "TO",
                            "USED",
                            "CANCELLED",
                            "CANCELLED NUMBERS",
                            "CLOSING",
                        ],
                        &cells,
                    )?;
                }
            }
        }
        Command::Operators(c) => return operators(out, &conn, &c).await,
        Command::Deliveries(DeliveriesCmd::List { status, agency, limit }) => {
            let (db, actor) = session(&conn).await?;
            if !["queued", "sent", "failed", "skipped"].contains(&status.as_str()) {
                eprintln!("status must be queued, sent, failed or skipped");
                return Ok(ExitCode::from(2));
            }
            let rows = db
                .query_all(stmt(
                    "SELECT d.notification_id, d.kind, d.agency_code, d.payment_id, d.recipient, d.attempts, d.last_error, d.created_at \
                     FROM deliveries d WHERE d.status = $1 AND ($2::TEXT IS NULL OR d.agency_code = $2) AND ($4::TEXT[] IS NULL OR d.agency_code = ANY($4)) ORDER BY d.created_at DESC LIMIT $3",
                    vec![status.clone().into(), agency.into(), limit.into(), sea_orm::Value::Array(sea_orm::sea_query::ArrayType::String, actor.scope_value().map(|v| Box::new(v.into_iter().map(|s| sea_orm::Value::String(Some(Box::new(s)))).collect())))],
                ))
                .await?;
            let mut t = Vec::new();
            for r in rows {
                let at: DateTime<Utc> = r.try_get("", "created_at")?;
                t.push(vec![
                    datetime_gmt7(at),
                    r.try_get::<String>("", "kind")?,
                    r.try_get::<String>("", "agency_code")?,
                    r.try_get::<String>("", "payment_id")?,
                    r.try_get::<Option<String>>("", "recipient")?
                        .map(|e| feepay_domain::ids::mask_email(&e))
                        .unwrap_or_else(|| "—".into()),
                    r.try_get::<i32>("", "attempts")?.to_string(),
                    r.try_get::<Option<String>>("", "last_error")?.unwrap_or_default().chars().take(80).collect(),
                    r.try_get::<String>("", "notification_id")?,
                ]);
            }
            table::print(
                out,
                &["CREATED (GMT+7)", "KIND", "AGENCY", "PAYMENT", "TO", "ATTEMPTS", "LAST ERROR", "NOTIFICATION"],
                &t,
            )?;
            writeln!(out, "{} {status} deliver{}", t.len(), if t.len() == 1 { "y" } else { "ies" })?;
        }
        Command::Deliveries(DeliveriesCmd::Resend { id, reason, yes }) => {
            let (db, actor) = session(&conn).await?;
            actor.require(Role::Operator, "resend emails")?;
            let rows = db
                .query_all(stmt(
                    "SELECT d.notification_id, d.status, d.recipient, d.agency_code FROM deliveries d LEFT JOIN receipts r ON r.receipt_id::TEXT = d.receipt_id \
                     WHERE d.receipt_id = $1 OR r.lookup_code = $1 OR d.payment_id = $1 ORDER BY d.created_at",
                    vec![id.clone().into()],
                ))
                .await?;
            if rows.is_empty() {
                eprintln!("no email was recorded for {id}: check the id (receipt id, lookup code or payment id) and that the notifier received the receipt event");
                return Ok(ExitCode::from(2));
            }
            let mut ids = Vec::new();
            for r in &rows {
                actor.check_agency(&r.try_get::<String>("", "agency_code")?)?;
                let nid: String = r.try_get("", "notification_id")?;
                let status: String = r.try_get("", "status")?;
                let to = r.try_get::<Option<String>>("", "recipient")?;
                if to.is_none() {
                    writeln!(out, "{nid}: {status}, no valid address on record; nothing to resend")?;
                    continue;
                }
                writeln!(out, "{nid}: {status} → queued again")?;
                ids.push(nid);
            }
            if ids.is_empty() {
                return Ok(ExitCode::from(2));
            }
            if !yes && !confirm(&format!("resend {} email(s)?", ids.len()))? {
                return Ok(ExitCode::from(2));
            }
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            txn.execute(stmt(
                "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = now(), last_error = NULL WHERE notification_id = ANY($1)",
                vec![ids.clone().into()],
            ))
            .await?;
            txn.execute(stmt(
                "INSERT INTO audit_log (actor, action, target, reason, details) VALUES ($1, 'delivery.resend', $2, $3, $4)",
                vec![actor.name.clone().into(), id.clone().into(), reason.into(), serde_json::json!({ "notifications": ids }).into()],
            ))
            .await?;
            txn.commit().await?;
            writeln!(out, "queued; the notifier sends within seconds")?;
        }
        Command::Demo { smtp_web } => {
            let (db, actor) = session(&conn).await?;
            actor.require(Role::Admin, "publish the demo")?;
            demo::run(out, &db, &smtp_web).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(out: &mut impl Write, db: &DatabaseConnection, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let trust = feepay_runtime::pki::TrustAnchors::load(&a.trust_anchors).map_err(anyhow::Error::msg)?;
    // Layout 1.0 receipts name an Ed25519 key registered in the database.
    let legacy = feepay_runtime::signing_keys::load(db).await?;
    let legacy_key = |id: &str| legacy.iter().find(|k| k.key_id == id).and_then(|k| k.verifying_key());
    let mut signers: std::collections::BTreeMap<String, (String, usize)> = Default::default();
    let rows = db
        .query_all(stmt(
            "SELECT number, document, previous_hash, document_hash FROM receipts WHERE agency_code = $1 AND template = $2 AND symbol = $3 ORDER BY number",
            vec![a.agency.clone().into(), a.template.clone().into(), a.symbol.clone().into()],
        ))
        .await?;
    let total = rows.len();
    let mut links = Vec::with_capacity(total);
    for (i, r) in rows.iter().enumerate() {
        let number: i32 = r.try_get("", "number")?;
        let doc: String = r.try_get("", "document")?;
        match feepay_runtime::pki::verify::verify_receipt(&doc, &trust, legacy_key) {
            Ok(verified) => {
                let signer = match &verified.signer {
                    Some(c) => format!(
                        "{} (serial {}, valid {} to {})",
                        c.subject,
                        c.serial,
                        datetime_gmt7(c.not_before),
                        datetime_gmt7(c.not_after)
                    ),
                    None => format!("Ed25519 key {} (layout 1.0)", verified.document.key_id),
                };
                signers.entry(verified.document.key_id.clone()).or_insert((signer, 0)).1 += 1;
                let v = verified.document;
                let stored_hash: String = r.try_get("", "document_hash")?;
                if v.document_hash != stored_hash || v.number != format!("{number:07}") {
                    writeln!(
                        out,
                        "DEFECT: receipt {number:07}: stored hash or number differs from the signed document"
                    )?;
                    return Ok(ExitCode::from(3));
                }
                links.push(ChainLink {
                    number: number as u32,
                    previous_hash: v.previous_hash,
                    document_hash: v.document_hash,
                });
            }
            Err(e) => {
                writeln!(out, "DEFECT: receipt {number:07}: {e}")?;
                return Ok(ExitCode::from(3));
            }
        }
        if total > 1000 && (i + 1) % 1000 == 0 {
            eprint!("\rchecked {}/{total}", i + 1);
        }
    }
    if total > 1000 {
        eprintln!();
    }
    for (signer, n) in signers.values() {
        writeln!(out, "signed by {signer}: {n} receipt(s)")?;
    }
    match check_chain(&links) {
        Ok(()) => {
            writeln!(out, "OK: {} {} {}: {total} receipt(s), numbers 1..{total} without gap or repeat, hash chain intact, every signature valid", a.agency, a.template, a.symbol)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => {
            writeln!(out, "DEFECT: {} {} {}: {d}", a.agency, a.template, a.symbol)?;
            Ok(ExitCode::from(3))
        }
    }
}

/// A correction an operator asks for.
pub struct CorrectionAsk {
    /// Receipt id or lookup code.
    pub receipt: String,
    pub reason: String,
    /// The payer fields to change for a replacement.
    pub replace: Option<feepay_domain::correction::PayerCorrection>,
}

/// Cancels or replaces a receipt: the request is queued and the running issuer, which holds
/// the signing keys, carries it out in its own transaction; this waits for the outcome.
async fn correct(out: &mut impl Write, conn: &Conn, ask: CorrectionAsk, yes: bool) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    actor.require(Role::Operator, "cancel or replace receipts")?;
    if let Err(e) = feepay_domain::correction::check_reason(&ask.reason) {
        eprintln!("{e}");
        return Ok(ExitCode::from(2));
    }
    let row = db
        .query_one(stmt(
            "SELECT agency_code, template, symbol, number, status, total FROM receipts WHERE receipt_id::TEXT = $1 OR lookup_code = $1",
            vec![ask.receipt.clone().into()],
        ))
        .await?;
    let Some(row) = row.filter(|r| r.try_get::<String>("", "agency_code").is_ok_and(|a| actor.covers(&a))) else {
        eprintln!("no receipt with id or lookup code {} (in your scope)", ask.receipt);
        return Ok(ExitCode::from(2));
    };
    let label = format!(
        "{} {} {} {:07} ({} đ, {})",
        row.try_get::<String>("", "agency_code")?,
        row.try_get::<String>("", "template")?,
        row.try_get::<String>("", "symbol")?,
        row.try_get::<i32>("", "number")?,
        feepay_domain::Vnd::new(row.try_get::<i64>("", "total")?).map(|v| v.grouped()).unwrap_or_default(),
        row.try_get::<String>("", "status")?,
    );
    let what = if ask.replace.is_some() { "cancel and replace" } else { "cancel" };
    writeln!(out, "{what} receipt {label}, reason: {}", ask.reason)?;
    if !yes && !confirm(&format!("{what} this receipt? It cannot be undone."))? {
        return Ok(ExitCode::from(2));
    }
    let replace = ask.replace.as_ref().map(serde_json::to_value).transpose()?;
    let id = feepay_runtime::correction_requests::request(&db, &ask.receipt, &ask.reason, replace, &actor.name).await?;
    let wait = std::time::Duration::from_secs(feepay_runtime::settings::env_parse("FEEPAY_CORRECTION_WAIT_SECS", 60)?);
    let deadline = std::time::Instant::now() + wait;
    loop {
        let r = feepay_runtime::correction_requests::get(&db, id).await?.context("the request vanished")?;
        let outcome = r.outcome.unwrap_or_default();
        match r.status.as_str() {
            "done" => {
                writeln!(out, "cancelled {}", outcome["cancelled"].as_str().unwrap_or_default())?;
                if let (Some(rep), Some(code)) =
                    (outcome["replacement"].as_str(), outcome["replacementLookupCode"].as_str())
                {
                    writeln!(out, "replaced by {rep}, lookup code {code}")?;
                }
                writeln!(
                    out,
                    "the issuer publishes the receipt events and the notice to the tax authority; the payer is emailed"
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            "refused" => {
                eprintln!("{}", outcome["error"].as_str().unwrap_or("refused"));
                return Ok(ExitCode::from(2));
            }
            _ if std::time::Instant::now() > deadline => {
                eprintln!(
                    "request {id} is queued but the issuer has not carried it out within {} s: is feepay-issuer running? \
                     It will be carried out when the issuer runs (receiptctl does not sign).",
                    wait.as_secs()
                );
                return Ok(ExitCode::from(1));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

async fn dead_letters(out: &mut impl Write, conn: &Conn, cmd: &DeadLettersCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    let topics = feepay_runtime::settings::Topics::from_env();
    let kafka = feepay_runtime::settings::KafkaSettings::from_env("receiptctl")?;
    // What a scoped operator may see: the dead letters whose event names an agency in scope.
    let visible = |l: &dlq::Letter| match dlq::agency_of(&topics, &l.dead) {
        Some(a) => actor.covers(&a),
        None => actor.agencies.is_none(),
    };
    match cmd {
        DeadLettersCmd::List { topic } => {
            let names = match topic {
                Some(t) => vec![t.clone()],
                None => dlq::dlq_topics(&topics),
            };
            let mut rows = Vec::new();
            for t in &names {
                eprintln!("reading {t} ...");
                let letters = tokio::task::spawn_blocking({
                    let (k, t) = (kafka.clone(), t.clone());
                    move || dlq::read(&k, &t, None)
                })
                .await??;
                let replayed: std::collections::HashSet<(i32, i64)> = db
                    .query_all(stmt(
                        "SELECT partition, \"offset\" FROM dead_letter_replays WHERE dlq_topic = $1",
                        vec![t.clone().into()],
                    ))
                    .await?
                    .iter()
                    .filter_map(|r| Some((r.try_get("", "partition").ok()?, r.try_get("", "offset").ok()?)))
                    .collect();
                for l in letters.iter().filter(|l| visible(l)) {
                    let at = l.dead.dead_lettered_at.as_ref().and_then(|t| DateTime::from_timestamp(t.seconds, 0));
                    rows.push(vec![
                        l.reference(),
                        at.map(datetime_gmt7).unwrap_or_default(),
                        l.dead.reason_code.clone(),
                        l.dead.reason.chars().take(90).collect(),
                        if replayed.contains(&(l.partition, l.offset)) { "replayed".into() } else { String::new() },
                    ]);
                }
            }
            table::print(out, &["DEAD LETTER", "AT (GMT+7)", "CODE", "REASON", "STATE"], &rows)?;
            writeln!(out, "{} dead letter(s)", rows.len())?;
            actor
                .record(&db, "dead_letters.list", topic.as_deref().unwrap_or("*"), None, serde_json::json!({}))
                .await?;
        }
        DeadLettersCmd::Show { reference } => {
            let letter = read_one(&kafka, reference).await?;
            if !visible(&letter) {
                return Err(access::Denied(format!("{reference} concerns an agency outside your scope")).into());
            }
            let dl = &letter.dead;
            writeln!(out, "dead letter:   {}", letter.reference())?;
            writeln!(out, "original:      {}/{}/{}", dl.original_topic, dl.original_partition, dl.original_offset)?;
            writeln!(out, "service:       {}", dl.service)?;
            writeln!(out, "reason code:   {}", dl.reason_code)?;
            writeln!(out, "reason:        {}", dl.reason)?;
            writeln!(out, "key:           {}", String::from_utf8_lossy(&dl.original_key))?;
            writeln!(out, "headers:       {}", dlq::header_summary(dl))?;
            writeln!(out, "body:          {} bytes", dl.original_value.len())?;
            match dlq::decode_original(&topics, dl) {
                Ok((json, _)) => writeln!(
                    out,
                    "decoded now (the fix may already be in place):\n{}",
                    serde_json::to_string_pretty(&json)?
                )?,
                Err(e) => {
                    writeln!(out, "does not decode now: {e}")?;
                    let text = String::from_utf8_lossy(&dl.original_value);
                    let shown: String = text.chars().take(2000).collect();
                    writeln!(
                        out,
                        "body as text{}:\n{shown}",
                        if text.chars().count() > 2000 { " (first 2000 characters)" } else { "" }
                    )?;
                }
            }
            actor.record(&db, "dead_letters.show", reference, None, serde_json::json!({})).await?;
        }
        DeadLettersCmd::Replay { reference, edited, reason, again, yes } => {
            actor.require(Role::Operator, "replay dead letters")?;
            let letter = read_one(&kafka, reference).await?;
            if !visible(&letter) {
                return Err(access::Denied(format!("{reference} concerns an agency outside your scope")).into());
            }
            let before = db
                .query_one(stmt(
                    "SELECT replayed_at, replayed_by FROM dead_letter_replays WHERE dlq_topic = $1 AND partition = $2 AND \"offset\" = $3",
                    vec![letter.topic.clone().into(), letter.partition.into(), letter.offset.into()],
                ))
                .await?;
            if let Some(b) = &before {
                if !again {
                    let at: DateTime<Utc> = b.try_get("", "replayed_at")?;
                    eprintln!(
                        "{reference} was already replayed at {} by {}; add --again to replay it once more",
                        datetime_gmt7(at),
                        b.try_get::<String>("", "replayed_by")?
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            let body = match edited {
                Some(path) => {
                    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                    let ct = if path.extension().is_some_and(|e| e == "pb") {
                        "application/protobuf"
                    } else {
                        "application/json"
                    };
                    Some((bytes, ct))
                }
                None => None,
            };
            // Check the replay decodes now, so a replay does not just dead-letter again.
            let mut probe = letter.dead.clone();
            if let Some((b, ct)) = &body {
                probe.original_value = b.clone();
                probe.original_headers.retain(|h| !h.key.eq_ignore_ascii_case("content-type"));
                probe
                    .original_headers
                    .push(feepay_proto::v1::RecordHeader { key: "content-type".into(), value: ct.as_bytes().to_vec() });
            }
            match dlq::decode_original(&topics, &probe) {
                Ok((_, agency)) => {
                    if let Some(a) = agency {
                        actor.check_agency(&a)?;
                    }
                }
                Err(e) => {
                    eprintln!("the event still does not decode: {e}");
                    eprintln!("fix it (e.g. save the corrected JSON and pass --edited FILE) and run the command again");
                    return Ok(ExitCode::from(2));
                }
            }
            writeln!(
                out,
                "replay {reference} to {}{}",
                letter.dead.original_topic,
                if body.is_some() { " with the edited body" } else { "" }
            )?;
            if !yes && !confirm("replay it?")? {
                return Ok(ExitCode::from(2));
            }
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            txn.execute(stmt(
                "INSERT INTO dead_letter_replays (dlq_topic, partition, \"offset\", replayed_by, target_topic, edited) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (dlq_topic, partition, \"offset\") DO UPDATE SET replayed_at = now(), replayed_by = EXCLUDED.replayed_by, edited = EXCLUDED.edited",
                vec![
                    letter.topic.clone().into(),
                    letter.partition.into(),
                    letter.offset.into(),
                    actor.name.clone().into(),
                    letter.dead.original_topic.clone().into(),
                    body.is_some().into(),
                ],
            ))
            .await?;
            // What is sent, exactly: its hash and size are in the audit row, which commits
            // before anything is published.
            let sent: &[u8] = body.as_ref().map_or(&letter.dead.original_value[..], |(b, _)| &b[..]);
            let sent_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(sent));
            actor
                .record(
                    &txn,
                    "dead_letters.replay",
                    reference,
                    Some(reason),
                    serde_json::json!({
                        "edited": body.is_some(),
                        "again": before.is_some(),
                        "target_topic": letter.dead.original_topic,
                        "body_sha256": sent_sha256,
                        "body_bytes": sent.len(),
                        "original_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&letter.dead.original_value)),
                    }),
                )
                .await?;
            txn.commit().await?;
            if let Err(e) = dlq::replay(&kafka, &letter, body, &actor).await {
                actor
                    .record(
                        &db,
                        "dead_letters.replay_failed",
                        reference,
                        Some(&e.to_string()),
                        serde_json::json!({"body_sha256": sent_sha256}),
                    )
                    .await?;
                return Err(e);
            }
            writeln!(out, "replayed (body sha256 {sent_sha256}); the consumer picks it up within seconds")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn read_one(kafka: &feepay_runtime::settings::KafkaSettings, reference: &str) -> anyhow::Result<dlq::Letter> {
    let (topic, partition, offset) = dlq::parse_reference(reference)?;
    let k = kafka.clone();
    let mut letters = tokio::task::spawn_blocking(move || dlq::read(&k, &topic, Some((partition, offset)))).await??;
    letters.pop().with_context(|| format!("{reference} was not found"))
}

async fn operators(out: &mut impl Write, conn: &Conn, cmd: &OperatorsCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    match cmd {
        OperatorsCmd::Add { name, role, scope } => {
            actor.require(Role::Admin, "add operators")?;
            let role = Role::parse(role)?;
            if scope != "*" {
                let known = db
                    .query_one(stmt("SELECT 1 AS x FROM agencies WHERE code = $1", vec![scope.clone().into()]))
                    .await?
                    .is_some();
                if !known {
                    eprintln!("agency {scope} is not in the reference data; give an agency code or * for all");
                    return Ok(ExitCode::from(2));
                }
            }
            if actor.agencies.is_some() && scope == "*" {
                return Err(access::Denied(
                    "an admin with an agency scope cannot create an all-agency operator".into(),
                )
                .into());
            }
            if scope != "*" {
                actor.check_agency(scope)?;
            }
            let token = access::new_token();
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            let inserted = txn
                .execute(stmt(
                    "INSERT INTO operators (name, role, scope, token_sha256, created_by) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                    vec![name.clone().into(), role.as_str().into(), scope.clone().into(), access::token_hash(&token).into(), actor.name.clone().into()],
                ))
                .await?
                .rows_affected();
            if inserted == 0 {
                eprintln!("operator {name} exists already; revoke it first or choose another name");
                return Ok(ExitCode::from(2));
            }
            actor
                .record(&txn, "operator.add", name, None, serde_json::json!({"role": role.as_str(), "scope": scope}))
                .await?;
            txn.commit().await?;
            writeln!(out, "operator {name} added: role {}, scope {scope}", role.as_str())?;
            writeln!(out, "token (shown once; give it to {name} and keep it secret):\n{token}")?;
        }
        OperatorsCmd::List => {
            actor.require(Role::Admin, "list operators")?;
            let rows = db
                .query_all(stmt(
                    "SELECT name, role, scope, created_at, created_by, revoked_at FROM operators ORDER BY name",
                    vec![],
                ))
                .await?;
            let mut t = Vec::new();
            for r in rows {
                let created: DateTime<Utc> = r.try_get("", "created_at")?;
                let revoked: Option<DateTime<Utc>> = r.try_get("", "revoked_at")?;
                t.push(vec![
                    r.try_get::<String>("", "name")?,
                    r.try_get::<String>("", "role")?,
                    r.try_get::<String>("", "scope")?,
                    datetime_gmt7(created),
                    r.try_get::<String>("", "created_by")?,
                    revoked.map(|t| format!("revoked {}", datetime_gmt7(t))).unwrap_or_else(|| "active".into()),
                ]);
            }
            table::print(out, &["NAME", "ROLE", "SCOPE", "CREATED (GMT+7)", "BY", "STATE"], &t)?;
        }
        OperatorsCmd::Revoke { name, reason } => {
            actor.require(Role::Admin, "revoke operators")?;
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            let target = txn
                .query_one(stmt(
                    "SELECT role, scope FROM operators WHERE name = $1 AND revoked_at IS NULL FOR UPDATE",
                    vec![name.clone().into()],
                ))
                .await?;
            let Some(target) = target else {
                eprintln!("no active operator named {name}");
                return Ok(ExitCode::from(2));
            };
            let (role, scope): (String, String) = (target.try_get("", "role")?, target.try_get("", "scope")?);
            // An admin acts within its subtree, on operators too.
            let within = match (&actor.agencies, scope.as_str()) {
                (None, _) => true,
                (Some(_), "*") => false,
                (Some(_), s) => actor.covers(s),
            };
            if !within {
                return Err(access::Denied(format!(
                    "{} may not revoke {name}, whose scope ({scope}) is wider than or outside their own",
                    actor.name
                ))
                .into());
            }
            // A scope never loses its last admin: another active admin must cover it.
            if role == "admin" {
                let others = txn
                    .query_all(stmt(
                        "SELECT scope FROM operators WHERE role = 'admin' AND revoked_at IS NULL AND name <> $1",
                        vec![name.clone().into()],
                    ))
                    .await?;
                let mut covered = false;
                for o in others {
                    let other: String = o.try_get("", "scope")?;
                    if other == "*" || (scope != "*" && access::subtree(&db, &other).await?.contains(&scope)) {
                        covered = true;
                        break;
                    }
                }
                if !covered {
                    return Err(access::Denied(format!(
                        "{name} is the last admin of scope {scope}: add another admin for it first"
                    ))
                    .into());
                }
            }
            txn.execute(stmt("UPDATE operators SET revoked_at = now() WHERE name = $1", vec![name.clone().into()]))
                .await?;
            actor
                .record(&txn, "operator.revoke", name, Some(reason), serde_json::json!({"role": role, "scope": scope}))
                .await?;
            txn.commit().await?;
            writeln!(out, "operator {name} revoked")?;
        }
        OperatorsCmd::Whoami => {
            let scope = match &actor.agencies {
                None => "all agencies".to_string(),
                Some(a) => a.iter().cloned().collect::<Vec<_>>().join(", "),
            };
            writeln!(
                out,
                "{} ({}{}), scope: {scope}",
                actor.name,
                actor.role.as_str(),
                if actor.open { ", open local mode: no operators configured" } else { "" }
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
