//! Composing emails from receipt events: Vietnamese templates (files an agency can override
//! without recompiling), an HTML part with a plain-text alternative, the signed receipt
//! attached, and a QR code of the lookup link.
//!
//! Everything that came from a payer is escaped in HTML by the template engine and never
//! reaches a header except the recipient's display name, which lettre encodes (RFC 2047)
//! after control characters are removed.

use feepay_domain::money::grouped_text;
use feepay_domain::receipt::datetime_gmt7;
use feepay_proto::v1;
use feepay_runtime::convert::from_ts;
use feepay_runtime::ids::event;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use minijinja::{Environment, Value as V};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The kinds of notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ReceiptIssued,
    ReceiptCancelled,
    WaiverNotice,
    /// An error on a receipt notified without reissue (Circular 91/2026/TT-BTC Art. 20.1).
    ReceiptNotice,
    RefundRecorded,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::ReceiptIssued => "receipt_issued",
            Kind::ReceiptCancelled => "receipt_cancelled",
            Kind::WaiverNotice => "waiver_notice",
            Kind::ReceiptNotice => "receipt_notice",
            Kind::RefundRecorded => "refund_recorded",
        }
    }
    pub fn from_code(s: &str) -> Option<Kind> {
        match s {
            "receipt_issued" => Some(Kind::ReceiptIssued),
            "receipt_cancelled" => Some(Kind::ReceiptCancelled),
            "waiver_notice" => Some(Kind::WaiverNotice),
            "receipt_notice" => Some(Kind::ReceiptNotice),
            "refund_recorded" => Some(Kind::RefundRecorded),
            _ => None,
        }
    }
    pub fn pb(self) -> v1::NotificationKind {
        match self {
            Kind::ReceiptIssued => v1::NotificationKind::ReceiptIssued,
            Kind::ReceiptCancelled => v1::NotificationKind::ReceiptCancelled,
            Kind::WaiverNotice => v1::NotificationKind::WaiverNotice,
            Kind::ReceiptNotice => v1::NotificationKind::ReceiptNotice,
            Kind::RefundRecorded => v1::NotificationKind::RefundRecorded,
        }
    }
}

/// A notification to send, decoded from its event.
#[derive(Debug, Clone)]
pub enum Event {
    Issued(v1::ReceiptIssued),
    Cancelled(v1::ReceiptCancelled),
    Waiver(v1::WaiverNotice),
    Notice(v1::ReceiptErrorNotified),
    Refund(v1::RefundRecorded),
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self {
            Event::Issued(_) => Kind::ReceiptIssued,
            Event::Cancelled(_) => Kind::ReceiptCancelled,
            Event::Waiver(_) => Kind::WaiverNotice,
            Event::Notice(_) => Kind::ReceiptNotice,
            Event::Refund(_) => Kind::RefundRecorded,
        }
    }

    fn receipt(&self) -> Option<&v1::Receipt> {
        match self {
            Event::Issued(e) => e.receipt.as_ref(),
            Event::Cancelled(e) => e.receipt.as_ref(),
            Event::Notice(e) => e.receipt.as_ref(),
            Event::Waiver(_) | Event::Refund(_) => None,
        }
    }

    pub fn payer(&self) -> Option<&v1::Payer> {
        match self {
            Event::Waiver(w) => w.payer.as_ref(),
            Event::Refund(r) => r.payer.as_ref(),
            // The payer is written to as the notice says they are.
            Event::Notice(n) => n.corrected_payer.as_ref(),
            _ => self.receipt().and_then(|r| r.payer.as_ref()),
        }
    }

    pub fn agency(&self) -> Option<&v1::Agency> {
        match self {
            Event::Waiver(w) => w.agency.as_ref(),
            Event::Refund(r) => r.agency.as_ref(),
            _ => self.receipt().and_then(|r| r.agency.as_ref()),
        }
    }

    pub fn payment_id(&self) -> String {
        match self {
            Event::Waiver(w) => w.payment_id.clone(),
            Event::Refund(r) => r.payment_id.clone(),
            _ => self.receipt().map(|r| r.payment_id.clone()).unwrap_or_default(),
        }
    }

    pub fn receipt_id(&self) -> Option<String> {
        self.receipt().map(|r| r.receipt_id.clone())
    }

    /// The stable id of the notification: one per receipt event.
    pub fn notification_id(&self) -> String {
        match self {
            Event::Issued(e) => {
                event::receipt_issued(e.receipt.as_ref().map(|r| r.receipt_id.as_str()).unwrap_or_default())
            }
            Event::Cancelled(e) => {
                event::receipt_cancelled(e.receipt.as_ref().map(|r| r.receipt_id.as_str()).unwrap_or_default())
            }
            Event::Waiver(w) => event::waiver_notice(&w.payment_id),
            Event::Notice(n) => event::receipt_error_notified(&n.notice_id),
            Event::Refund(r) => event::refund_recorded(&r.refund_id),
        }
    }

    /// Payment time for latency figures, when the event carries it.
    pub fn issued_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.receipt().and_then(|r| from_ts(r.issued_at.as_ref()))
    }

    pub fn encode(&self) -> Vec<u8> {
        use prost::Message as _;
        match self {
            Event::Issued(e) => e.encode_to_vec(),
            Event::Cancelled(e) => e.encode_to_vec(),
            Event::Waiver(e) => e.encode_to_vec(),
            Event::Notice(e) => e.encode_to_vec(),
            Event::Refund(e) => e.encode_to_vec(),
        }
    }

    pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Event, prost::DecodeError> {
        use prost::Message as _;
        Ok(match kind {
            Kind::ReceiptIssued => Event::Issued(v1::ReceiptIssued::decode(bytes)?),
            Kind::ReceiptCancelled => Event::Cancelled(v1::ReceiptCancelled::decode(bytes)?),
            Kind::WaiverNotice => Event::Waiver(v1::WaiverNotice::decode(bytes)?),
            Kind::ReceiptNotice => Event::Notice(v1::ReceiptErrorNotified::decode(bytes)?),
            Kind::RefundRecorded => Event::Refund(v1::RefundRecorded::decode(bytes)?),
        })
    }
}

/// Templates: built-in Vietnamese defaults, overridable per deployment and per agency.
///
/// Lookup order for `receipt_issued.html`: `<dir>/<AGENCY>/receipt_issued.html`, then
/// `<dir>/receipt_issued.html`, then the built-in copy of `deploy/templates/email/`.
#[derive(Debug)]
pub struct Templates {
    dir: Option<PathBuf>,
    /// Compiled templates per agency, reloaded from the files every [`TEMPLATE_RELOAD`].
    cache:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, std::sync::Arc<Environment<'static>>)>>,
}

/// How long compiled templates are kept before the files are read again.
pub const TEMPLATE_RELOAD: std::time::Duration = std::time::Duration::from_secs(30);

const BUILTIN: &[(&str, &str)] = &[
    ("receipt_issued.subject.txt", include_str!("../../../deploy/templates/email/receipt_issued.subject.txt")),
    ("receipt_issued.txt", include_str!("../../../deploy/templates/email/receipt_issued.txt")),
    ("receipt_issued.html", include_str!("../../../deploy/templates/email/receipt_issued.html")),
    ("receipt_cancelled.subject.txt", include_str!("../../../deploy/templates/email/receipt_cancelled.subject.txt")),
    ("receipt_cancelled.txt", include_str!("../../../deploy/templates/email/receipt_cancelled.txt")),
    ("receipt_cancelled.html", include_str!("../../../deploy/templates/email/receipt_cancelled.html")),
    ("waiver_notice.subject.txt", include_str!("../../../deploy/templates/email/waiver_notice.subject.txt")),
    ("waiver_notice.txt", include_str!("../../../deploy/templates/email/waiver_notice.txt")),
    ("waiver_notice.html", include_str!("../../../deploy/templates/email/waiver_notice.html")),
    ("receipt_notice.subject.txt", include_str!("../../../deploy/templates/email/receipt_notice.subject.txt")),
    ("receipt_notice.txt", include_str!("../../../deploy/templates/email/receipt_notice.txt")),
    ("receipt_notice.html", include_str!("../../../deploy/templates/email/receipt_notice.html")),
    ("refund_recorded.subject.txt", include_str!("../../../deploy/templates/email/refund_recorded.subject.txt")),
    ("refund_recorded.txt", include_str!("../../../deploy/templates/email/refund_recorded.txt")),
    ("refund_recorded.html", include_str!("../../../deploy/templates/email/refund_recorded.html")),
];

impl Templates {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Templates { dir, cache: Default::default() }
    }

    fn source(&self, agency: &str, name: &str) -> Result<String, ComposeError> {
        if let Some(dir) = &self.dir {
            for p in [dir.join(agency).join(name), dir.join(name)] {
                if p.is_file() {
                    return std::fs::read_to_string(&p)
                        .map_err(|e| ComposeError::Template(format!("{}: {e}", p.display())));
                }
            }
        }
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.to_string())
            .ok_or_else(|| ComposeError::Template(format!("no template {name}")))
    }

    /// Every template of an agency, compiled; cached and refreshed from the files.
    fn environment(&self, agency: &str) -> Result<std::sync::Arc<Environment<'static>>, ComposeError> {
        let mut cache = self.cache.lock().expect("template cache lock");
        if let Some((at, env)) = cache.get(agency) {
            if at.elapsed() < TEMPLATE_RELOAD {
                return Ok(env.clone());
            }
        }
        let mut env = Environment::new();
        // Auto-escaping follows the name: .html is escaped for HTML, .txt is not.
        for (name, _) in BUILTIN {
            env.add_template_owned(name.to_string(), self.source(agency, name)?)
                .map_err(|e| ComposeError::Template(format!("{name}: {e}")))?;
        }
        let env = std::sync::Arc::new(env);
        cache.insert(agency.to_string(), (std::time::Instant::now(), env.clone()));
        Ok(env)
    }

    fn render(&self, agency: &str, name: &str, ctx: &minijinja::Value) -> Result<String, ComposeError> {
        let env = self.environment(agency)?;
        let t = env.get_template(name).map_err(|e| ComposeError::Template(e.to_string()))?;
        t.render(ctx.clone()).map_err(|e| ComposeError::Template(format!("{name}: {e}")))
    }
}

/// Why an email cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid mailbox: {0}")]
    InvalidMailbox(String),
    #[error("template: {0}")]
    Template(String),
    #[error("event is missing {0}")]
    Incomplete(&'static str),
}

/// Where emails come from and where links point.
#[derive(Debug, Clone)]
pub struct Branding {
    /// Default sender when an agency has none.
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// Lookup link prefix; the lookup code is appended.
    pub lookup_base_url: String,
    /// Right-hand side of Message-IDs.
    pub message_id_domain: String,
}

/// Per-agency sender from the reference data.
#[derive(Debug, Clone, Default)]
pub struct AgencySender {
    pub from: Option<String>,
    pub reply_to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct LineCtx {
    fee_name: String,
    kind: String,
    quantity: u32,
    base: String,
    reduction: String,
    due: String,
    waiver: bool,
    waiver_document: String,
    waiver_description: String,
}

fn lines_ctx(lines: &[v1::AssessedLine]) -> Vec<LineCtx> {
    lines
        .iter()
        .map(|l| LineCtx {
            fee_name: l.fee_name.clone(),
            kind: if l.kind == v1::FeeKind::Phi as i32 { "Phí".into() } else { "Lệ phí".into() },
            quantity: l.quantity,
            base: grouped_text(&l.base_amount),
            reduction: l.waiver.as_ref().map(|w| grouped_text(&w.reduction)).unwrap_or_default(),
            due: grouped_text(&l.amount_due),
            waiver: l.waiver.is_some(),
            waiver_document: l.waiver.as_ref().map(|w| w.document_number.clone()).unwrap_or_default(),
            waiver_description: l.waiver.as_ref().map(|w| w.description.clone()).unwrap_or_default(),
        })
        .collect()
}

/// Removes characters that have no place in a display name or a header.
pub fn clean_header_text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Parses the payer's address; a value that is not a single valid mailbox is refused.
pub fn recipient(p: &v1::Payer) -> Result<Option<Mailbox>, ComposeError> {
    let email = p.email.trim();
    if email.is_empty() {
        return Ok(None);
    }
    if email.chars().any(|c| c.is_control() || c.is_whitespace() || c == ',' || c == '<' || c == '>') {
        return Err(ComposeError::InvalidMailbox("the address contains spaces, line breaks or separators".into()));
    }
    let address: lettre::Address =
        email.parse().map_err(|e: lettre::address::AddressError| ComposeError::InvalidMailbox(e.to_string()))?;
    Ok(Some(Mailbox::new(Some(clean_header_text(&p.full_name)), address)))
}

/// Stable Message-ID of a notification.
pub fn message_id(notification_id: &str, domain: &str) -> String {
    let local: String = notification_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '.' })
        .collect();
    format!("<{local}@{domain}>")
}

use feepay_runtime::qr::qr_png;

/// Builds the email of a notification. `None` when the payer gave no address.
pub fn compose(
    event: &Event,
    templates: &Templates,
    branding: &Branding,
    sender: &AgencySender,
) -> Result<Option<(Message, String)>, ComposeError> {
    let payer = event.payer().ok_or(ComposeError::Incomplete("payer"))?;
    let Some(to) = recipient(payer)? else {
        return Ok(None);
    };
    let agency = event.agency().ok_or(ComposeError::Incomplete("agency"))?;
    let from = sender.from.as_deref().and_then(|f| f.parse::<Mailbox>().ok()).unwrap_or_else(|| branding.from.clone());
    let reply_to =
        sender.reply_to.as_deref().and_then(|r| r.parse::<Mailbox>().ok()).or_else(|| branding.reply_to.clone());
    let kind = event.kind();
    let mid = message_id(&event.notification_id(), &branding.message_id_domain);
    let (ctx, attachment, qr) = match event {
        Event::Issued(e) => {
            let r = e.receipt.as_ref().ok_or(ComposeError::Incomplete("receipt"))?;
            let lookup_url = format!("{}{}", branding.lookup_base_url, r.lookup_code);
            let ctx = minijinja::context! {
                receipt => V::from_serialize(r), agency => V::from_serialize(agency), payer => V::from_serialize(payer), lines => V::from_serialize(lines_ctx(&r.lines)),
                total => grouped_text(&r.total), issued_at => from_ts(r.issued_at.as_ref()).map(datetime_gmt7).unwrap_or_default().replace('T', " "),
                lookup_url => lookup_url.clone(),
                // Layout 1.0 receipts carried a bare key signature, not a digital signature.
                digitally_signed => e.signed_document.contains("http://www.w3.org/2000/09/xmldsig#"),
            };
            let name =
                format!("bien-lai-{}-{}-{}.xml", r.template_symbol, r.receipt_symbol, r.number).replace('/', "-");
            (ctx, Some((name, e.signed_document.clone())), Some(qr_png(&lookup_url)))
        }
        Event::Cancelled(e) => {
            let r = e.receipt.as_ref().ok_or(ComposeError::Incomplete("receipt"))?;
            let ctx = minijinja::context! {
                receipt => V::from_serialize(r), agency => V::from_serialize(agency), payer => V::from_serialize(payer), total => grouped_text(&r.total), reason => e.reason.clone(),
                cancelled_at => from_ts(e.cancelled_at.as_ref()).map(datetime_gmt7).unwrap_or_default().replace('T', " "),
                replaced => !e.replaced_by_receipt_id.is_empty(),
                lookup_url => format!("{}{}", branding.lookup_base_url, r.lookup_code),
            };
            (ctx, None, None)
        }
        Event::Waiver(w) => {
            let ctx = minijinja::context! { agency => V::from_serialize(agency), payer => V::from_serialize(payer), dossier_code => w.dossier_code.clone(), lines => V::from_serialize(lines_ctx(&w.lines)) };
            (ctx, None, None)
        }
        Event::Notice(n) => {
            let r = n.receipt.as_ref().ok_or(ComposeError::Incomplete("receipt"))?;
            let ctx = minijinja::context! {
                receipt => V::from_serialize(r), agency => V::from_serialize(agency), payer => V::from_serialize(payer),
                corrected => V::from_serialize(payer), total => grouped_text(&r.total), reason => n.reason.clone(),
                issued_on => from_ts(r.issued_at.as_ref()).map(feepay_domain::receipt::date_gmt7).unwrap_or_default(),
                lookup_url => format!("{}{}", branding.lookup_base_url, r.lookup_code),
            };
            (ctx, None, None)
        }
        Event::Refund(f) => {
            #[derive(Serialize)]
            struct OnReceipt {
                number: String,
                template: String,
                symbol: String,
                issued_on: String,
                amount: String,
            }
            let receipts: Vec<OnReceipt> = f
                .receipts
                .iter()
                .map(|o| {
                    let r = o.receipt.clone().unwrap_or_default();
                    let amount: i64 = o.lines.iter().filter_map(|l| l.amount.parse::<i64>().ok()).sum();
                    OnReceipt {
                        number: r.number,
                        template: r.template_symbol,
                        symbol: r.receipt_symbol,
                        issued_on: r.issued_on,
                        amount: grouped_text(&amount.to_string()),
                    }
                })
                .collect();
            let ctx = minijinja::context! {
                agency => V::from_serialize(agency), payer => V::from_serialize(payer), total => grouped_text(&f.total),
                reason => f.reason.clone(), receipts => V::from_serialize(receipts),
                recorded_at => from_ts(f.recorded_at.as_ref()).map(datetime_gmt7).unwrap_or_default().replace('T', " "),
            };
            (ctx, None, None)
        }
    };
    let subject =
        clean_header_text(templates.render(&agency.code, &format!("{}.subject.txt", kind.code()), &ctx)?.trim());
    let text = templates.render(&agency.code, &format!("{}.txt", kind.code()), &ctx)?;
    let html = templates.render(&agency.code, &format!("{}.html", kind.code()), &ctx)?;

    let alternative = MultiPart::alternative().singlepart(SinglePart::plain(text)).singlepart(SinglePart::html(html));
    let body = match qr.filter(|q| !q.is_empty()) {
        Some(png) => MultiPart::related().multipart(alternative).singlepart(
            Attachment::new_inline("qr-tra-cuu".into()).body(png, ContentType::parse("image/png").expect("valid")),
        ),
        None => MultiPart::mixed().multipart(alternative),
    };
    let body = match attachment {
        Some((name, xml)) => MultiPart::mixed().multipart(body).singlepart(
            Attachment::new(name)
                .body(xml.into_bytes(), ContentType::parse("application/xml; charset=utf-8").expect("valid")),
        ),
        None => body,
    };
    let mut builder = Message::builder().from(from).to(to).subject(subject).message_id(Some(mid.clone()));
    if let Some(r) = reply_to {
        builder = builder.reply_to(r);
    }
    let mut msg = builder.multipart(body).map_err(|e| ComposeError::InvalidMailbox(e.to_string()))?;
    msg.headers_mut()
        .insert_raw(HeaderValue::new(HeaderName::new_from_ascii_str("X-Feepay-Notification"), event.notification_id()));
    Ok(Some((msg, mid)))
}

/// Whether a template directory override exists.
pub fn templates_dir(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    (!path.is_empty() && p.is_dir()).then(|| p.to_path_buf())
}
