//! `receiptctl`: the operators' command line.
//!
//! Exit codes: 0 success, 1 operational error (database unreachable, ...), 2 invalid
//! input (bad reference files, unknown agency, ...), 3 a check found a defect (audit).

#![allow(clippy::print_stdout)]

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use feepay_domain::numbering::{check_chain, gmt7, ChainLink};
use feepay_domain::receipt::{datetime_gmt7, public_key_from_hex, verify_document};
use feepay_domain::waiver::{Category, Channel, LineQuery};
use feepay_runtime::refdata::{self, ReferenceFiles};
use feepay_runtime::settings::DatabaseSettings;
use feepay_runtime::sql::stmt;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

pub mod demo;
pub mod table;

/// Operator command line of feepay: reference data, keys, waivers, receipts and audits.
#[derive(Debug, Parser)]
#[command(name = "receiptctl", version, about, long_about = None)]
pub struct Cli {
    /// Who is acting (recorded in the audit log).
    #[arg(long, global = true, env = "FEEPAY_OPERATOR", default_value = "operator")]
    pub operator: String,
    /// PostgreSQL URL.
    #[arg(
        long,
        global = true,
        env = "FEEPAY_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/feepay",
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
    /// Agency signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Waiver rules in force.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// What a dossier would cost: every line with its waiver and legal basis.
    Assess(AssessArgs),
    /// Receipts: search and show.
    #[command(subcommand)]
    Receipts(ReceiptsCmd),
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
pub enum KeysCmd {
    /// Generate a signing key for each agency with a receipt series (local use).
    Generate {
        #[arg(long, env = "FEEPAY_KEYS_DIR", default_value = ".local/keys")]
        dir: PathBuf,
        #[arg(long, default_value = "deploy/reference")]
        reference: PathBuf,
        /// Key id suffix, e.g. the year.
        #[arg(long, default_value_t = chrono::Utc::now().with_timezone(&gmt7()).format("%Y").to_string())]
        suffix: String,
    },
    /// Print the public keys (agency, key id, Ed25519 public key in hex).
    Public {
        #[arg(long, env = "FEEPAY_KEYS_DIR", default_value = ".local/keys")]
        dir: PathBuf,
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
    #[arg(long, env = "FEEPAY_KEYS_DIR", default_value = ".local/keys")]
    pub keys: PathBuf,
}

async fn db(url: &str) -> anyhow::Result<DatabaseConnection> {
    let s = DatabaseSettings { url: feepay_runtime::settings::Secret::new(url), ..DatabaseSettings::from_env()? };
    let db = feepay_runtime::db::connect(&s).await.context("connecting to PostgreSQL (FEEPAY_DATABASE_URL)")?;
    feepay_runtime::db::migrate(&db).await.context("applying migrations")?;
    Ok(db)
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
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = &mut std::io::stdout().lock();
    match cli.command {
        Command::Migrate => {
            db(&cli.database_url).await?;
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
            let db = db(&cli.database_url).await?;
            let (version, changed) = refdata::store(&db, &files, &cli.operator).await?;
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
        Command::Keys(KeysCmd::Generate { dir, reference, suffix }) => {
            let files = ReferenceFiles::read_dir(&reference)?;
            let (r, _) = files.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let made = feepay_issuer::keys::generate_missing(&dir, &r, &suffix)?;
            for (path, key) in &made {
                writeln!(out, "{}  {}  {}", path.display(), key.key_id, key.public_hex())?;
            }
            let made = made.len();
            writeln!(out, "{made} key(s) generated in {}", dir.display())?;
        }
        Command::Keys(KeysCmd::Public { dir }) => {
            let ring = feepay_issuer::keys::Keyring::load_dir(&dir)?;
            let rows: Vec<Vec<String>> =
                ring.public_keys().into_iter().map(|(a, id, pk)| vec![a, id, "Ed25519".into(), pk]).collect();
            table::print(out, &["AGENCY", "KEY ID", "ALGORITHM", "PUBLIC KEY (HEX)"], &rows)?;
        }
        Command::Rules(RulesCmd::List { agency, date }) => {
            let db = db(&cli.database_url).await?;
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
            let db = db(&cli.database_url).await?;
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
            let db = db(&cli.database_url).await?;
            let mut sql = String::from(
                "SELECT r.agency_code, r.template, r.symbol, r.number, r.status, r.total, r.issued_at, r.payment_id, p.dossier_code, r.lookup_code \
                 FROM receipts r JOIN payments p USING (payment_id) WHERE true",
            );
            let mut v: Vec<sea_orm::Value> = Vec::new();
            let add = |cond: &str, val: sea_orm::Value, v: &mut Vec<sea_orm::Value>, sql: &mut String| {
                v.push(val);
                sql.push_str(&cond.replace("$?", &format!("${}", v.len())));
            };
            if let Some(a) = agency {
                add(" AND r.agency_code = $?", a.into(), &mut v, &mut sql);
            }
            if let Some(p) = payment {
                add(" AND r.payment_id = $?", p.into(), &mut v, &mut sql);
            }
            if let Some(d) = dossier {
                add(" AND p.dossier_code = $?", d.into(), &mut v, &mut sql);
            }
            if let Some(f) = from {
                add(
                    " AND (r.issued_at AT TIME ZONE '+07') >= $?",
                    f.and_hms_opt(0, 0, 0).expect("midnight").into(),
                    &mut v,
                    &mut sql,
                );
            }
            if let Some(t) = to {
                add(
                    " AND (r.issued_at AT TIME ZONE '+07') < $?",
                    t.succ_opt().unwrap_or(t).and_hms_opt(0, 0, 0).expect("midnight").into(),
                    &mut v,
                    &mut sql,
                );
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
            let db = db(&cli.database_url).await?;
            let row = db
                .query_one(stmt(
                    "SELECT document, status, cancel_reason, cancelled_at FROM receipts WHERE lookup_code = $1 OR receipt_id::text = $1",
                    vec![id.clone().into()],
                ))
                .await?;
            let Some(row) = row else {
                eprintln!("no receipt with lookup code or id {id}");
                return Ok(ExitCode::from(2));
            };
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
        Command::Audit(a) => return audit(out, &cli.database_url, a).await,
        Command::Deliveries(DeliveriesCmd::List { status, agency, limit }) => {
            let db = db(&cli.database_url).await?;
            if !["queued", "sent", "failed", "skipped"].contains(&status.as_str()) {
                eprintln!("status must be queued, sent, failed or skipped");
                return Ok(ExitCode::from(2));
            }
            let rows = db
                .query_all(stmt(
                    "SELECT d.notification_id, d.kind, d.agency_code, d.payment_id, d.recipient, d.attempts, d.last_error, d.created_at \
                     FROM deliveries d WHERE d.status = $1 AND ($2::TEXT IS NULL OR d.agency_code = $2) ORDER BY d.created_at DESC LIMIT $3",
                    vec![status.clone().into(), agency.into(), limit.into()],
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
            let db = db(&cli.database_url).await?;
            let rows = db
                .query_all(stmt(
                    "SELECT d.notification_id, d.status, d.recipient FROM deliveries d LEFT JOIN receipts r ON r.receipt_id::TEXT = d.receipt_id \
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
            if !yes {
                eprint!("resend {} email(s)? type yes to confirm: ", ids.len());
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if answer.trim() != "yes" {
                    eprintln!("nothing changed");
                    return Ok(ExitCode::from(2));
                }
            }
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            txn.execute(stmt(
                "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = now(), last_error = NULL WHERE notification_id = ANY($1)",
                vec![ids.clone().into()],
            ))
            .await?;
            txn.execute(stmt(
                "INSERT INTO audit_log (actor, action, target, reason, details) VALUES ($1, 'delivery.resend', $2, $3, $4)",
                vec![cli.operator.clone().into(), id.clone().into(), reason.into(), serde_json::json!({ "notifications": ids }).into()],
            ))
            .await?;
            txn.commit().await?;
            writeln!(out, "queued; the notifier sends within seconds")?;
        }
        Command::Demo { smtp_web } => {
            let db = db(&cli.database_url).await?;
            demo::run(out, &db, &smtp_web).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(out: &mut impl Write, url: &str, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let db = db(url).await?;
    let ring = feepay_issuer::keys::Keyring::load_dir(&a.keys)?;
    let keys: Vec<(String, String)> = ring.public_keys().into_iter().map(|(_, id, pk)| (id, pk)).collect();
    let key_for = |id: &str| keys.iter().find(|(k, _)| k == id).and_then(|(_, pk)| public_key_from_hex(pk).ok());
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
        match verify_document(&doc, key_for) {
            Ok(v) => {
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
