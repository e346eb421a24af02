//! HTML pages (Vietnamese, printable) and the public JSON form of a receipt.

use crate::store::StoredReceipt;
use crate::verify::Verdict;
use base64::Engine;
use chrono::{Datelike, Timelike};
use feepay_domain::money::grouped_text;
use feepay_domain::numbering::gmt7;
use feepay_proto::v1;
use minijinja::{context, Environment, Value};
use serde::Serialize;

/// The templates, compiled once.
pub struct Pages {
    env: Environment<'static>,
}

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

/// The receipt as the public may see it, with a lookup code: no email, no beneficiary
/// categories, and every identifier of the payer (personal ID, passport number, tax code,
/// which for an individual is the personal ID) partly masked. The signed document keeps
/// them in full, as the law requires on the receipt itself, and is given only with a
/// second factor ([`second_factor_matches`]).
pub fn public_receipt(r: &v1::Receipt) -> serde_json::Value {
    let mut shown = r.clone();
    if let Some(p) = shown.payer.as_mut() {
        p.email.clear();
        p.categories.clear();
        if !p.personal_id.is_empty() {
            p.personal_id = feepay_domain::ids::mask(&p.personal_id);
        }
        if !p.passport_number.is_empty() {
            p.passport_number = feepay_domain::ids::mask(&p.passport_number);
        }
        if !p.tax_code.is_empty() {
            p.tax_code = feepay_domain::ids::mask(&p.tax_code);
        }
    }
    let mut v = serde_json::to_value(&shown).unwrap_or_default();
    if let Some(p) = v.get_mut("payer").and_then(|p| p.as_object_mut()) {
        p.remove("email");
        p.remove("categories");
    }
    v
}

/// JSON answer of `GET /api/v1/receipts/{code}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptView {
    /// `issued`; `replaced` by a receipt that names it (Circular 91/2026/TT-BTC Art. 20.2);
    /// or `cancelled` under the rules before 1 July 2026.
    #[schema(value_type = String, example = "issued")]
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<Replacement>,
    /// Errors notified on the receipt without reissuing it (Art. 20.1): the receipt stands.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<NoticeView>,
    /// Refunds recorded against the receipt (it stays as issued).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<RefundView>,
    /// feepay.v1.Receipt in canonical protobuf JSON (see proto/feepay/v1/receipts.proto)
    /// without the payer's email and beneficiary categories.
    #[schema(value_type = Object)]
    pub receipt: serde_json::Value,
    pub document_url: String,
}

/// An error notified on the receipt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoticeView {
    /// What was wrong.
    pub reason: String,
    /// The payer's name as it should read.
    pub payer_name: String,
    /// The payer's address as it should read.
    pub payer_address: String,
    pub notified_at: String,
}

/// A refund recorded against the receipt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundView {
    /// Whole đồng given back on this receipt.
    pub amount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
}

/// The receipt that replaces this one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replacement {
    pub number: String,
    pub symbol: String,
    /// Link to the replacing receipt's page (same payer, same payment).
    pub url: String,
}

#[derive(Serialize)]
struct Line {
    name: String,
    kind: &'static str,
    quantity: u32,
    base: String,
    reduction: String,
    due: String,
    waiver: Option<Waiver>,
}

#[derive(Serialize)]
struct Waiver {
    document: String,
    body: String,
    description: String,
}

impl Pages {
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, text) in [
            ("layout.html", include_str!("../templates/layout.html")),
            ("index.html", include_str!("../templates/index.html")),
            ("receipt.html", include_str!("../templates/receipt.html")),
            ("not_found.html", include_str!("../templates/not_found.html")),
            ("verify.html", include_str!("../templates/verify.html")),
            ("limited.html", include_str!("../templates/limited.html")),
        ] {
            env.add_template(name, text).expect("built-in templates are valid");
        }
        Pages { env }
    }

    fn render(&self, name: &str, ctx: Value) -> String {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(template = name, error = %e, "page template failed");
                "<!DOCTYPE html><html lang=\"vi\"><meta charset=\"utf-8\"><p>Lỗi hệ thống. Vui lòng thử lại sau.</p></html>"
                    .to_string()
            }
        }
    }

    pub fn index(&self) -> String {
        self.render("index.html", context! {})
    }

    pub fn not_found(&self) -> String {
        self.render("not_found.html", context! {})
    }

    pub fn limited(&self, retry_after: u64) -> String {
        self.render("limited.html", context! { retry_after })
    }

    pub fn verdict(&self, v: &Verdict) -> String {
        self.render("verify.html", context! { v => Value::from_serialize(v) })
    }

    /// The printable receipt page. `page_url` is what the QR code encodes.
    pub fn receipt(&self, s: &StoredReceipt, view: &ReceiptView, page_url: &str) -> String {
        let r = &s.receipt;
        let at = s.issued_at.with_timezone(&gmt7());
        let lines: Vec<Line> = r
            .lines
            .iter()
            .map(|l| Line {
                name: l.fee_name.clone(),
                kind: if l.kind == v1::FeeKind::Phi as i32 { "Phí" } else { "Lệ phí" },
                quantity: l.quantity,
                base: grouped_text(&l.base_amount),
                reduction: l.waiver.as_ref().map(|w| grouped_text(&w.reduction)).unwrap_or_else(|| "0".into()),
                due: grouped_text(&l.amount_due),
                waiver: l.waiver.as_ref().map(|w| Waiver {
                    document: w.document_number.clone(),
                    body: w.issuing_body.clone(),
                    description: w.description.clone(),
                }),
            })
            .collect();
        let qr = feepay_runtime::qr::qr_png(page_url);
        let local = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&gmt7()).format("%d/%m/%Y %H:%M").to_string();
        // Only a receipt of the rules before 1 July 2026 can have been cancelled.
        let cancelled = s.cancelled.then(|| {
            context! {
                at => s.cancelled_at.map(local),
                reason => s.cancel_reason.clone(),
            }
        });
        let replaced = (s.status == "replaced").then(|| context! { at => s.replaced_at.map(local) });
        // The replaced receipt as the signed document names it (layout 1.0 documents kept
        // it only in their XML).
        let replaces = match &r.replaces {
            Some(x) => Some(context! {
                number => x.number.clone(),
                symbol => x.receipt_symbol.clone(),
                date => chrono::NaiveDate::parse_from_str(&x.issued_on, "%Y-%m-%d").ok().map(|d| d.format("%d/%m/%Y").to_string()),
            }),
            None if !r.replaces_receipt_id.is_empty() => {
                let doc = &s.document;
                let part = doc.find("<BLThayThe>").map(|i| &doc[i..]).unwrap_or_default();
                let field = |n: &str| {
                    part.find(&format!("<{n}>"))
                        .and_then(|i| part[i + n.len() + 2..].split('<').next())
                        .unwrap_or_default()
                        .to_string()
                };
                Some(context! { number => field("SHDon"), symbol => field("KHHDon") })
            }
            None => None,
        };
        let method = feepay_runtime::convert::payment_method(r.payment_method, true).vi();
        self.render(
            "receipt.html",
            context! {
                r => Value::from_serialize(&view.receipt),
                lines => Value::from_serialize(&lines),
                total => grouped_text(&r.total),
                issued => context! {
                    day => format!("{:02}", at.day()),
                    month => format!("{:02}", at.month()),
                    year => at.year(),
                    time => format!("{:02}:{:02}", at.hour(), at.minute()),
                },
                cancelled,
                replaced,
                replaced_by => view.replaced_by.as_ref().map(Value::from_serialize),
                notices => Value::from_serialize(&view.notices),
                refunds => Value::from_serialize(&view.refunds),
                replaces,
                payment_method => method,
                qr_base64 => base64::engine::general_purpose::STANDARD.encode(qr),
                document_url => view.document_url.clone(),
            },
        )
    }
}

/// Whether `given` is what the payer knows besides the lookup code: the last 6 characters
/// of their personal ID, passport number or tax code, or the dossier code. Compared in
/// constant time; spaces, hyphens and case do not count.
pub fn second_factor_matches(r: &v1::Receipt, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let norm = |s: &str| -> Vec<u8> {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .flat_map(char::to_uppercase)
            .collect::<String>()
            .into_bytes()
    };
    let given = norm(given);
    if given.len() < 6 {
        return false;
    }
    let mut ok = subtle::Choice::from(0u8);
    if let Some(p) = &r.payer {
        for id in [&p.personal_id, &p.passport_number, &p.tax_code] {
            let id = norm(id);
            if id.len() >= 6 && given.len() == 6 {
                ok |= id[id.len() - 6..].ct_eq(&given);
            }
        }
    }
    let dossier = norm(&r.dossier_code);
    if !dossier.is_empty() && dossier.len() == given.len() {
        ok |= dossier.ct_eq(&given);
    }
    ok.into()
}

#[cfg(test)]
mod second_factor_tests {
    use super::*;

    #[test]
    fn the_last_six_of_an_identifier_or_the_dossier_code_open_the_document() {
        let r = v1::Receipt {
            dossier_code: "000.00.27.H03-260101-0001".into(),
            payer: Some(v1::Payer {
                personal_id: "027190001234".into(),
                tax_code: "0100109106".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(second_factor_matches(&r, "001234"));
        assert!(second_factor_matches(&r, " 109106 "));
        assert!(second_factor_matches(&r, "000.00.27.h03-260101-0001"));
        assert!(!second_factor_matches(&r, "1234"), "too short");
        assert!(!second_factor_matches(&r, "001235"));
        assert!(!second_factor_matches(&r, "027190001234"), "the whole ID is not what is asked");
        assert!(!second_factor_matches(&v1::Receipt::default(), "000000"));
    }
}
