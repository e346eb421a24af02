//! `receiptctl certificates`: the registered signing certificates and the revocation list.
//! A revocation is recorded by the database function `feepay_revoke_certificate`
//! ([`registry::revoke`]), which checks the login's role and scope and writes the audit row
//! in the same statement.

use crate::access::{self, Role};
use crate::session::{confirm, session, Conn};
use crate::table;
use crate::CertificatesCmd;
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::pki::registry::{self, RevokeOutcome, REVOCATION_REASONS};
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: CertificatesCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    match cmd {
        CertificatesCmd::List => {
            let revoked = registry::revocations(&db).await?;
            let rows: Vec<Vec<String>> = registry::list(&db)
                .await?
                .into_iter()
                .filter(|c| actor.covers(&c.agency_code))
                .map(|c| {
                    let state = match revoked.get(&c.fingerprint) {
                        Some(r) => format!("revoked from {} ({})", datetime_gmt7(r.revoked_at), r.reason),
                        None if c.not_after < crate::session::now() => "expired".into(),
                        None => "in use or usable".into(),
                    };
                    vec![
                        c.agency_code,
                        c.serial,
                        format!("{} – {}", datetime_gmt7(c.not_before), datetime_gmt7(c.not_after)),
                        state,
                        c.fingerprint,
                    ]
                })
                .collect();
            table::print(out, &["AGENCY", "SERIAL", "VALID (GMT+7)", "STATE", "FINGERPRINT"], &rows)?;
            writeln!(out, "{} certificate(s)", rows.len())?;
            Ok(ExitCode::SUCCESS)
        }
        CertificatesCmd::Revoke { fingerprint, reason, since, note, yes } => {
            actor.require(Role::Admin, "revoke a certificate")?;
            if !REVOCATION_REASONS.contains(&reason.as_str()) {
                anyhow::bail!("--reason {reason:?} is none of {}", REVOCATION_REASONS.join(", "));
            }
            let cert = registry::get(&db, &fingerprint)
                .await?
                .filter(|c| actor.covers(&c.agency_code))
                .ok_or_else(|| access::Denied(format!("certificate {fingerprint} is not registered in your scope")))?;
            writeln!(
                out,
                "revoke certificate {} of {} ({}), issued by {}, from {}: {reason}",
                cert.serial,
                cert.agency_code,
                cert.subject,
                cert.issuer,
                since.map_or("now".to_string(), |t| format!("{} (GMT+7)", datetime_gmt7(t)))
            )?;
            if !yes && !confirm("revoke it? this cannot be undone")? {
                return Ok(ExitCode::from(2));
            }
            match registry::revoke(&db, &fingerprint, since, &reason, &note, &actor.name).await? {
                RevokeOutcome::Revoked { receipts_after } => {
                    writeln!(out, "revoked; the issuer signs nothing more with it from its next batch on")?;
                    match receipts_after {
                        0 => writeln!(out, "no receipt was signed with it from the revocation time on")?,
                        n => writeln!(
                            out,
                            "{n} receipt(s) were signed with it from the revocation time on: the lookup service no \
                             longer accepts them; find them with `receiptctl receipts search` and replace them"
                        )?,
                    }
                    Ok(ExitCode::SUCCESS)
                }
                RevokeOutcome::AlreadyRevoked => {
                    eprintln!("certificate {fingerprint} is revoked already");
                    Ok(ExitCode::from(2))
                }
                RevokeOutcome::Unknown => {
                    Err(access::Denied(format!("certificate {fingerprint} is not registered in your scope")).into())
                }
            }
        }
    }
}
