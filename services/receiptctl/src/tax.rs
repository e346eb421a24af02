//! `receiptctl tax`: the documents for the tax authority. The issuer signs usage reports
//! (BC26/BLĐT) and notices of receipts issued in error (04/SS-CTĐT); this tool lists them,
//! shows and exports them to files for the centre's submission channel, and drafts the
//! registration 01/ĐKTĐ-CTĐT from the reference data and the registered certificates.

use crate::access::{Actor, Role};
use crate::table;
use anyhow::Context;
use clap::Subcommand;
use feepay_domain::numbering::date_gmt7;
use feepay_domain::receipt::{datetime_gmt7, AgencyInfo};
use feepay_domain::reference::MandateMode;
use feepay_domain::tax::{DeclaredCertificate, DeclaredDelegation, RegisteredForm, Registration};
use feepay_runtime::tax_documents::{self, Kind};
use sea_orm::DatabaseConnection;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// BC26/BLĐT.
    UsageReport,
    /// 04/SS-CTĐT.
    ErrorNotice,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
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
    /// Draft the registration 01/ĐKTĐ-CTĐT of an agency (its forms, certificates and
    /// delegations), to sign and submit on the tax authority's portal.
    Registration {
        #[arg(long)]
        agency: String,
        /// 1: first registration, 2: change of information.
        #[arg(long, default_value_t = 1)]
        action: u8,
        /// Contact email printed on the form.
        #[arg(long, default_value = "")]
        email: String,
    },
}

fn file_name(d: &tax_documents::TaxDocument) -> String {
    let kind =
        Kind::from_code(&d.kind)
            .map_or("document", |k| if k == Kind::UsageReport { "BC26-BLDT" } else { "04-SS-CTDT" });
    let what = d.period.clone().or_else(|| d.receipt_id.map(|r| r.to_string())).unwrap_or_default();
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
                        d.period.clone().or_else(|| d.receipt_id.map(|r| format!("receipt {r}"))).unwrap_or_default(),
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
        TaxCmd::Registration { agency, action, email } => {
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
            let forms: Vec<RegisteredForm> = r
                .series
                .iter()
                .filter(|s| s.agency == agency)
                .filter_map(|s| r.forms.get(&s.template))
                .map(|f| RegisteredForm {
                    kind: f.kind,
                    name: f.name.clone(),
                    template: f.template.clone(),
                    symbol_rule: f.symbol.as_str().to_string(),
                })
                .collect();
            let now = crate::session::now();
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
            // Desks issuing under this agency's delegation.
            let delegations: Vec<DeclaredDelegation> = r
                .agencies
                .values()
                .flat_map(|d| d.collects_for.iter().map(move |m| (d, m)))
                .filter(|(_, m)| m.principal == agency && m.mode == MandateMode::Delegation)
                .map(|(d, m)| DeclaredDelegation { delegate: info(d), fees: m.fees.clone(), basis: m.basis.clone() })
                .collect();
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
                contact_email: email,
                forms,
                certificates,
                delegations,
                created_on: date_gmt7(now),
            };
            write!(out, "{}", draft.draft_xml())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
