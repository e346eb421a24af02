//! `receiptctl tax`: the documents for the tax authority. The issuer signs the daily
//! summaries (01/TH-BLĐT), notices of receipts issued in error (04/SS-CTĐT) and the usage
//! reports of periods before 1 July 2026 (BC26/BLĐT); this tool lists them, shows and
//! exports them to files for the centre's submission channel, and drafts the registration
//! 01/ĐKTĐ-CTĐT from the reference data and the registered certificates.

use crate::access::{Actor, Role};
use crate::table;
use anyhow::Context;
use clap::Subcommand;
use feepay_domain::numbering::date_gmt7;
use feepay_domain::receipt::{datetime_gmt7, AgencyInfo};
use feepay_domain::tax::{DeclaredCertificate, DeclaredDelegation, RegisteredForm, Registration, Submission};
use feepay_runtime::tax_documents::{self, Kind};
use sea_orm::DatabaseConnection;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// 01/TH-BLĐT.
    DailySummary,
    /// 04/SS-CTĐT.
    ErrorNotice,
    /// BC26/BLĐT.
    UsageReport,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::DailySummary => Kind::DailySummary,
            KindArg::UsageReport => Kind::UsageReport,
            KindArg::ErrorNotice => Kind::ErrorNotice,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TaxCmd {
    /// Signed documents, newest first.
    List {
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        #[arg(long)]
        agency: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// One document's signed XML, byte for byte.
    Show { id: uuid::Uuid },
    /// Write documents to files (`<form>-<agency>-<period or receipt>.xml`) for submission.
    Export {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        #[arg(long)]
        agency: Option<String>,
    },
    /// Draft the registration 01/ĐKTĐ-CTĐT of an agency (its forms and symbols, the
    /// transmission on 01/TH-BLĐT, certificates and delegations given or received), to sign
    /// and submit on the tax authority's portal.
    Registration {
        #[arg(long)]
        agency: String,
        /// 1: first registration, 2: change of information.
        #[arg(long, default_value_t = 1)]
        action: u8,
        /// Contact person printed on the form.
        #[arg(long, default_value = "")]
        contact: String,
        /// Contact phone printed on the form.
        #[arg(long, default_value = "")]
        phone: String,
        /// Contact email printed on the form.
        #[arg(long, default_value = "")]
        email: String,
    },
}

fn file_name(d: &tax_documents::TaxDocument) -> String {
    let kind = Kind::from_code(&d.kind).map_or("document", |k| match k {
        Kind::UsageReport => "BC26-BLDT",
        Kind::ErrorNotice => "04-SS-CTDT",
        Kind::DailySummary => "01-TH-BLDT",
    });
    let what = match (d.period.clone(), d.sequence) {
        (Some(p), Some(n)) => format!("{p}-{n}"),
        (Some(p), None) => p,
        (None, _) => d.document_id.to_string(),
    };
    format!("{kind}-{}-{what}.xml", d.agency_code)
}

pub async fn run(
    out: &mut impl Write,
    db: &DatabaseConnection,
    actor: &Actor,
    cmd: TaxCmd,
) -> anyhow::Result<ExitCode> {
    match cmd {
        TaxCmd::List { kind, agency, limit } => {
            actor.require(Role::Auditor, "read documents for the tax authority")?;
            let docs = tax_documents::list(db, kind.map(Into::into), agency.as_deref(), limit).await?;
            let rows: Vec<Vec<String>> = docs
                .iter()
                .filter(|d| actor.covers(&d.agency_code))
                .map(|d| {
                    vec![
                        d.document_id.to_string(),
                        Kind::from_code(&d.kind).map_or(d.kind.clone(), |k| k.form().to_string()),
                        d.agency_code.clone(),
                        match (&d.period, d.sequence, d.receipt_id) {
                            (Some(p), Some(n), _) => format!("{p} #{n}"),
                            (Some(p), None, _) => p.clone(),
                            (None, _, Some(r)) => format!("receipt {r}"),
                            _ => String::new(),
                        },
                        datetime_gmt7(d.created_at),
                    ]
                })
                .collect();
            table::print(out, &["ID", "FORM", "AGENCY", "PERIOD / RECEIPT", "SIGNED (GMT+7)"], &rows)?;
            writeln!(out, "{} document(s)", rows.len())?;
        }
        TaxCmd::Show { id } => {
            actor.require(Role::Auditor, "read documents for the tax authority")?;
            match tax_documents::get(db, id).await? {
                Some(d) if actor.covers(&d.agency_code) => write!(out, "{}", d.document)?,
                _ => {
                    eprintln!("no document {id} (in your scope)");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        TaxCmd::Export { dir, kind, agency } => {
            actor.require(Role::Operator, "export documents for the tax authority")?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let docs = tax_documents::list(db, kind.map(Into::into), agency.as_deref(), 100_000).await?;
            let mut n = 0;
            for d in docs.iter().filter(|d| actor.covers(&d.agency_code)) {
                let path = dir.join(file_name(d));
                std::fs::write(&path, &d.document).with_context(|| format!("writing {}", path.display()))?;
                n += 1;
            }
            writeln!(out, "{n} document(s) written to {}", dir.display())?;
        }
        TaxCmd::Registration { agency, action, contact, phone, email } => {
            actor.require(Role::Operator, "draft the registration")?;
            actor.check_agency(&agency)?;
            let loaded = feepay_runtime::refdata::load_latest(db)
                .await?
                .context("no reference data loaded: run `receiptctl reference load`")?;
            let r = &loaded.reference;
            let Some(a) = r.agencies.get(&agency) else {
                eprintln!("agency {agency} is not in reference version {}", loaded.version);
                return Ok(ExitCode::from(2));
            };
            let info = |a: &feepay_domain::reference::Agency| AgencyInfo {
                code: a.code.clone(),
                name: a.name.clone(),
                tax_code: a.tax_code.clone(),
                address: a.address.clone(),
            };
            let now = crate::session::now();
            let today = date_gmt7(now);
            // The forms as they are in force today, with this year's symbols.
            let forms: Vec<RegisteredForm> = r
                .series
                .iter()
                .filter(|s| s.agency == agency)
                .filter_map(|s| Some((s.form_on(today)?, s.symbol_on(today)?)))
                .map(|(f, symbol)| RegisteredForm {
                    kind: f.kind,
                    name: f.name.clone(),
                    template: f.template.clone(),
                    symbol,
                })
                .collect();
            let daily = r
                .series
                .iter()
                .filter(|s| s.agency == agency)
                .filter_map(|s| s.form_on(today))
                .any(|f| f.transmission == feepay_domain::forms::Transmission::DailySummary);
            let certificates: Vec<DeclaredCertificate> = feepay_runtime::pki::registry::list(db)
                .await?
                .into_iter()
                .filter(|c| c.agency_code == agency && c.not_after > now)
                .map(|c| DeclaredCertificate {
                    issuer: c.issuer,
                    serial: c.serial,
                    valid_from: date_gmt7(c.not_before),
                    valid_until: date_gmt7(c.not_after),
                    action: 1,
                })
                .collect();
            // Delegations this agency gives (desks that issue its receipts) and receives.
            let declared = |delegating: bool, counterpart: AgencyInfo, m: &feepay_domain::reference::Mandate| {
                let series = r.series_named(&m.principal, &m.template, &m.letters);
                DeclaredDelegation {
                    delegating,
                    counterpart,
                    receipt_name: series.and_then(|s| s.form_on(today)).map(|f| f.name.clone()).unwrap_or_default(),
                    template: m.template.clone(),
                    symbol: series.and_then(|s| s.symbol_on(today)).unwrap_or_default(),
                    purpose: format!(
                        "{}; số từ {:07} đến {:07}; {}",
                        m.fees.join(", "),
                        m.numbers.from,
                        m.numbers.to,
                        m.basis
                    ),
                    valid_from: m.valid_from,
                    valid_until: m.valid_until,
                    payment: "Theo thỏa thuận giữa hai bên".to_string(),
                }
            };
            let mut delegations: Vec<DeclaredDelegation> = r
                .agencies
                .values()
                .flat_map(|d| d.collects_for.iter().map(move |m| (d, m)))
                .filter(|(_, m)| m.principal == agency)
                .map(|(d, m)| declared(true, info(d), m))
                .collect();
            for m in &a.collects_for {
                if let Some(p) = r.agencies.get(&m.principal) {
                    delegations.push(declared(false, info(p), m));
                }
            }
            if forms.is_empty() {
                eprintln!("agency {agency} has no receipt series: nothing to register");
                return Ok(ExitCode::from(2));
            }
            if certificates.is_empty() {
                eprintln!(
                    "warning: no valid certificate of {agency} is registered yet (the issuer registers those it loads)"
                );
            }
            let draft = Registration {
                collector: info(a),
                tax_office: a.tax_office(r).cloned().unwrap_or_default(),
                place: a.place(),
                action,
                contact_name: contact,
                contact_phone: phone,
                contact_email: email,
                forms,
                submission: Submission { service_provider: true, daily_summary: daily, ..Default::default() },
                certificates,
                delegations,
                created_on: today,
            };
            write!(out, "{}", draft.draft_xml())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
