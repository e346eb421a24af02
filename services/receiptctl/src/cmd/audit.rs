//! `receiptctl audit`: walk a series and check numbering, chain and signatures.

use crate::session::{session, Conn};
use crate::tables::receipts;
use crate::AuditArgs;
use feepay_domain::numbering::{check_chain, ChainLink};
use feepay_domain::receipt::datetime_gmt7;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    actor.check_agency(&a.agency)?;
    actor
        .record(&db, "series.audit", &format!("{} {} {}", a.agency, a.template, a.symbol), None, serde_json::json!({}))
        .await?;
    return audit(out, &db, a).await;
}

async fn audit(out: &mut impl Write, db: &DatabaseConnection, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let trust = feepay_runtime::pki::TrustAnchors::load(&a.trust_anchors).map_err(anyhow::Error::msg)?;
    // Layout 1.0 receipts name an Ed25519 key registered in the database.
    let legacy = feepay_runtime::signing_keys::load(db).await?;
    let legacy_key = |id: &str| legacy.iter().find(|k| k.key_id == id).and_then(|k| k.verifying_key());
    let mut signers: std::collections::BTreeMap<String, (String, usize)> = Default::default();
    use receipts::Column as C;
    let rows: Vec<(i32, String, String)> = receipts::Entity::find()
        .select_only()
        .columns([C::Number, C::Document, C::DocumentHash])
        .filter(C::AgencyCode.eq(a.agency.as_str()))
        .filter(C::Template.eq(a.template.as_str()))
        .filter(C::Symbol.eq(a.symbol.as_str()))
        .order_by_asc(C::Number)
        .into_tuple()
        .all(db)
        .await?;
    let total = rows.len();
    let mut links = Vec::with_capacity(total);
    for (i, (number, doc, stored_hash)) in rows.into_iter().enumerate() {
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
