//! Checks over everything a test's database holds.

use crate::*;

/// Walks every series of the database: numbers 1..n, hash chain, and every signature,
/// checked by the project's verifier and by `xmlsec1`, and every document against the
/// shipped XSD with `xmllint`.
pub async fn verify_all_series(db: &TestDb, _signers: &std::path::Path) -> usize {
    use sea_orm::ConnectionTrait;
    let trust = pki::trust();
    let series = db
        .db
        .query_all(feepay_runtime::sql::raw("SELECT DISTINCT agency_code, template, symbol FROM receipts"))
        .await
        .unwrap();
    let mut total = 0;
    let mut documents = Vec::new();
    for s in series {
        let (a, t, y): (String, String, String) = (
            s.try_get("", "agency_code").unwrap(),
            s.try_get("", "template").unwrap(),
            s.try_get("", "symbol").unwrap(),
        );
        let rows = db
            .db
            .query_all(feepay_runtime::sql::stmt(
                "SELECT number, document FROM receipts WHERE agency_code = $1 AND template = $2 AND symbol = $3 ORDER BY number",
                vec![a.clone().into(), t.clone().into(), y.clone().into()],
            ))
            .await
            .unwrap();
        let mut links = Vec::new();
        for r in rows {
            let doc: String = r.try_get("", "document").unwrap();
            let v = feepay_runtime::pki::verify::verify_receipt(&doc, &trust, |_| None)
                .unwrap_or_else(|e| panic!("{a} {t} {y}: {e}"))
                .document;
            documents.push(doc);
            links.push(feepay_domain::numbering::ChainLink {
                number: v.number.parse().unwrap(),
                previous_hash: v.previous_hash,
                document_hash: v.document_hash,
            });
        }
        feepay_domain::numbering::check_chain(&links).unwrap_or_else(|d| panic!("{a} {t} {y}: {d}"));
        total += links.len();
    }
    // The independent tools judge every document: the signature and the schema.
    pki::xmlsec_verify_all(&documents).unwrap_or_else(|e| panic!("xmlsec1 rejects a receipt: {e}"));
    pki::xsd_validate_all(&documents).unwrap_or_else(|e| panic!("a receipt does not match the XSD: {e}"));
    total
}
