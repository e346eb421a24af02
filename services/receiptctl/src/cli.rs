//! The command line: every command, its arguments and their help texts.

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use feepay_runtime::settings::catalog;
use std::path::PathBuf;

use crate::{keys, tax};

/// Operator command line of feepay: reference data, keys, waivers, receipts and audits.
#[derive(Debug, Parser)]
#[command(name = "receiptctl", version, about, long_about = None)]
pub struct Cli {
    /// Who is acting when no operators are configured (open local mode); recorded in the
    /// audit log.
    #[arg(long, global = true, env = catalog::OPERATOR.name, default_value = catalog::OPERATOR.value())]
    pub operator: String,
    /// Operator token (required once operators are configured; see `receiptctl operators`).
    #[arg(long, global = true, env = catalog::OPERATOR_TOKEN.name, hide_env_values = true)]
    pub token: Option<String>,
    /// PostgreSQL URL.
    #[arg(
        long,
        global = true,
        env = catalog::DATABASE_URL.name,
        default_value = catalog::DATABASE_URL.value(),
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
    /// The certificates the issuer registered, and their revocation.
    #[command(subcommand)]
    Certificates(CertificatesCmd),
    /// Waiver rules in force.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// What a dossier would cost: every line with its waiver and legal basis.
    Assess(AssessArgs),
    /// Receipts: search, show, correct (notify an error or replace), transition of the old symbol.
    #[command(subcommand)]
    Receipts(ReceiptsCmd),
    /// Receipt series and the tax authority's acceptance of their registration.
    #[command(subcommand)]
    Series(SeriesCmd),
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
    /// Documents for the tax authority: the signed daily summaries (01/TH-BLĐT), notices of
    /// receipts issued in error (04/SS-CTĐT) and usage reports of periods before 1 July 2026
    /// (BC26/BLĐT), and the registration draft (01/ĐKTĐ-CTĐT).
    #[command(subcommand)]
    Tax(tax::TaxCmd),
    /// Operators of this tool: their role, agency scope and token.
    #[command(subcommand)]
    Operators(OperatorsCmd),
    /// Personal data past its purpose (README, "Personal data"): what is due, and erasing
    /// it (the daily job, run by a login of the feepay_retention group).
    #[command(subcommand)]
    Retention(RetentionCmd),
    /// Audit a series: numbering, hash chain and every signature.
    Audit(AuditArgs),
    /// Email deliveries: list them, resend a receipt's email.
    #[command(subcommand)]
    Deliveries(DeliveriesCmd),
    /// Every FEEPAY_* setting: its value here (secrets only as set or not), default and
    /// meaning; warns about FEEPAY_* variables that no setting reads.
    Settings {
        /// Print the README's configuration table instead.
        #[arg(long)]
        markdown: bool,
    },
    /// The broker: create the topics and grant each role's ACLs, or print them as Kafka's
    /// own commands.
    #[command(subcommand)]
    Broker(crate::cmd::broker::BrokerCmd),
    /// Publish a realistic demo day and print what became of it (used by `make run`).
    Demo {
        /// Web address of the SMTP sink.
        #[arg(long, env = catalog::DEMO_SMTP_WEB.name, default_value = catalog::DEMO_SMTP_WEB.value())]
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
    /// The payer is a foreigner (identified by a passport, not a Vietnamese personal ID).
    #[arg(long)]
    pub foreigner: bool,
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
    /// Correct a receipt issued in error: a wrong name, address or passport number is
    /// notified (04/SS-CTĐT, the payer is emailed, nothing is reissued); a wrong tax code or
    /// personal identification number gets a replacement receipt (Circular 91/2026/TT-BTC
    /// Art. 20). The issuer chooses from what changes.
    Correct {
        /// Receipt id or lookup code.
        id: String,
        /// What was wrong (printed on the notice and kept in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        payer: PayerFix,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Notify an error without reissuing (Art. 20.1): a wrong name, address, amount in
    /// words or other content, with the right tax code and amount.
    Notify {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        payer: PayerFix,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Replace a receipt issued in error (Art. 20.2): a new receipt naming it, with the
    /// corrected payer details if given.
    Replace {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        payer: PayerFix,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Cancel a receipt issued under the rules before 1 July 2026 while they applied (since
    /// then no receipt is cancelled: use correct, notify or replace).
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
    /// The receipts issued from 1 July 2026 with a symbol of the rules that ended (e.g.
    /// `26T`): replace each with a receipt of the collector's registered series (Circular
    /// 91/2026/TT-BTC Art. 20.2 and Art. 24.2). Lists them; `--apply` queues the replacements.
    Transition {
        #[arg(long)]
        agency: Option<String>,
        /// Queue the replacements (otherwise only list what would be replaced).
        #[arg(long)]
        apply: bool,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// The payer fields as they should read.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PayerFix {
    /// Corrected name of the payer.
    #[arg(long)]
    pub payer_name: Option<String>,
    /// Corrected personal identification number (12 digits; empty to remove).
    #[arg(long)]
    pub payer_id: Option<String>,
    /// Corrected tax code (empty to remove).
    #[arg(long)]
    pub payer_tax_code: Option<String>,
    /// Corrected passport number (empty to remove).
    #[arg(long)]
    pub payer_passport: Option<String>,
    /// Corrected address.
    #[arg(long)]
    pub payer_address: Option<String>,
}

impl From<PayerFix> for feepay_domain::correction::PayerCorrection {
    fn from(p: PayerFix) -> Self {
        feepay_domain::correction::PayerCorrection {
            full_name: p.payer_name,
            personal_id: p.payer_id,
            tax_code: p.payer_tax_code,
            passport: p.payer_passport,
            address: p.payer_address,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SeriesCmd {
    /// Every series in scope: its symbol on a day, delegated numbers, registration state.
    List {
        /// The day (YYYY-MM-DD, GMT+7; default today).
        #[arg(long)]
        date: Option<NaiveDate>,
    },
    /// Record the tax authority's acceptance of a series' registration (01/TB-ĐKĐT).
    Register {
        #[arg(long)]
        agency: String,
        #[arg(long, default_value = "EBL01")]
        template: String,
        /// The two letters of the symbol (e.g. AA for 26TAA).
        #[arg(long)]
        letters: String,
        /// Number and date of the acceptance notice 01/TB-ĐKĐT.
        #[arg(long)]
        notice: String,
        /// The day the registration was accepted (YYYY-MM-DD).
        #[arg(long)]
        accepted_on: NaiveDate,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertificatesCmd {
    /// Every certificate registered for signing (in your scope), revoked or not.
    List,
    /// Put a certificate on the revocation list (admin): the issuer signs nothing more with
    /// it from the next batch on, and the lookup service refuses its signatures from the
    /// revocation time on. Final: a revocation is never withdrawn.
    Revoke {
        /// Its SHA-256 fingerprint (`receiptctl certificates list`), the keyId of what it signed.
        fingerprint: String,
        /// RFC 5280 reason: unspecified, key_compromise, ca_compromise, affiliation_changed,
        /// superseded, cessation_of_operation, privilege_withdrawn.
        #[arg(long)]
        reason: String,
        /// From when its signatures are not accepted (RFC 3339; for a compromised key, when
        /// the compromise is known or suspected to have begun). Default: now.
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// What happened (audit log).
        #[arg(long)]
        note: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCmd {
    /// List the dead letters on record (the services write them to PostgreSQL), newest
    /// first: those of the agencies in your scope.
    List {
        /// Only those of one consumed topic, e.g. payments.succeeded.
        #[arg(long)]
        topic: Option<String>,
        /// Also those replayed already.
        #[arg(long)]
        all: bool,
    },
    /// Show one dead letter: reason, headers and the original event decoded when possible.
    Show {
        /// Its id, as listed.
        id: i64,
    },
    /// Hand a dead letter back to the service that recorded it, as it was or with a
    /// corrected body; that service applies it through its normal path, and only if the
    /// corrected body is the same event (same payment id, agency and amounts).
    Replay {
        /// Its id, as listed.
        id: i64,
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
        /// The PostgreSQL login the operator connects with (a member of `feepay_operator`):
        /// the database then holds that login to this operator's role and scope.
        #[arg(long)]
        db_login: Option<String>,
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
    #[arg(long, env = catalog::TRUST_ANCHORS.name, default_value = catalog::TRUST_ANCHORS.value())]
    pub trust_anchors: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum RetentionCmd {
    /// Count what is due for erasure now, per kind of personal data.
    Due,
    /// Erase what is due, and record the run in the audit log.
    Erase {
        #[arg(long, short = 'y')]
        yes: bool,
    },
}
