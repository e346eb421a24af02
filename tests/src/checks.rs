//! Checks over everything a test's database holds.

use crate::*;

/// Walks every series of the database, each number range on its own (the collector's from 1,
/// a delegate's from the first of its range): consecutive numbers, hash chain, and every signature,
/// checked by the project's verifier and by `xmlsec1`, and every document against the
/// shipped XSD with `xmllint`.
pub async fn verify_all_series(db: &TestDb, _signers: &std::path::Path) -> usize {
    use sea_orm::ConnectionTrait;
    let trust = pki::trust();
    let series = db
        .db
        .query_all(feepay_runtime::sql::raw("SELECT DISTINCT agency_code, template, symbol, range_from FROM receipts"))
        .await
        .unwrap();
    let mut total = 0;
    let mut documents = Vec::new();
    for s in series {
        let (a, t, y, from): (String, String, String, i32) = (
            s.try_get("", "agency_code").unwrap(),
            s.try_get("", "template").unwrap(),
            s.try_get("", "symbol").unwrap(),
            s.try_get("", "range_from").unwrap(),
        );
        let rows = db
            .db
            .query_all(feepay_runtime::sql::stmt(
                "SELECT number, document FROM receipts WHERE agency_code = $1 AND template = $2 AND symbol = $3 \
                 AND range_from = $4 ORDER BY number",
                vec![a.clone().into(), t.clone().into(), y.clone().into(), from.into()],
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
        feepay_domain::numbering::check_chain_from(from as u32, &links)
            .unwrap_or_else(|d| panic!("{a} {t} {y} from {from}: {d}"));
        total += links.len();
    }
    // The independent tools judge every document: the signature and the schema.
    pki::xmlsec_verify_all(&documents).unwrap_or_else(|e| panic!("xmlsec1 rejects a receipt: {e}"));
    pki::xsd_validate_all(&documents).unwrap_or_else(|e| panic!("a receipt does not match the XSD: {e}"));
    total
}

/// A payment's receipts as (template, symbol, number, status), in the order issued.
pub async fn receipts_of(db: &TestDb, payment_id: &str) -> Vec<(String, String, i32, String)> {
    use sea_orm::ConnectionTrait;
    db.db
        .query_all(feepay_runtime::sql::stmt(
            "SELECT template, symbol, number, status FROM receipts WHERE payment_id = $1 ORDER BY issued_at, number",
            vec![payment_id.into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.try_get("", "template").unwrap(),
                r.try_get("", "symbol").unwrap(),
                r.try_get("", "number").unwrap(),
                r.try_get("", "status").unwrap(),
            )
        })
        .collect()
}
