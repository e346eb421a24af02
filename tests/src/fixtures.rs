//! Realistic payment events built on the sample reference data.

use chrono::{DateTime, Utc};
use feepay_proto::v1;
use feepay_runtime::convert::ts;

/// A payer with a valid personal ID.
pub fn payer(name: &str) -> v1::Payer {
    v1::Payer {
        full_name: name.to_string(),
        personal_id: "027190001234".into(),
        tax_code: String::new(),
        email: "nguoinop@example.vn".into(),
        address: "Số 5 đường Nguyễn Đăng Đạo, phường Kinh Bắc, thành phố Bắc Ninh".into(),
        categories: vec![],
        passport_number: String::new(),
        identity_level: 0,
    }
}

/// A line as paid.
pub fn line(fee: &str, kind: v1::FeeKind, quantity: u32, amount: i64) -> v1::PaidLine {
    v1::PaidLine { fee_code: fee.into(), kind: kind as i32, quantity, amount: amount.to_string() }
}

/// A payment at the Bắc Ninh centre: driving licence at the counter, 135 000 đ.
pub fn gplx_payment(id: &str, paid_at: DateTime<Utc>) -> v1::PaymentSucceeded {
    gplx_payment_to(id, "BN.TTPVHCC", paid_at)
}

/// The same driving-licence fee paid at the counter of `agency`.
pub fn gplx_payment_to(id: &str, agency: &str, paid_at: DateTime<Utc>) -> v1::PaymentSucceeded {
    payment(id, agency, v1::Channel::Counter, vec![line("LP-GPLX", v1::FeeKind::LePhi, 1, 135_000)], paid_at)
}

/// A payment with the given lines; total is their sum.
pub fn payment(
    id: &str,
    agency: &str,
    channel: v1::Channel,
    lines: Vec<v1::PaidLine>,
    paid_at: DateTime<Utc>,
) -> v1::PaymentSucceeded {
    let total: i64 = lines.iter().map(|l| l.amount.parse::<i64>().expect("whole")).sum();
    v1::PaymentSucceeded {
        payment_id: id.to_string(),
        dossier_code: format!("H09.22-{}", &id[id.len().saturating_sub(8)..]),
        procedure_code: "1.002804".into(),
        agency_code: agency.to_string(),
        channel: channel as i32,
        payer: Some(payer("Nguyễn Văn An")),
        lines,
        total_paid: total.to_string(),
        currency: "VND".into(),
        paid_at: Some(ts(paid_at)),
        provider: "VNPAY".into(),
        provider_reference: format!("VNP{id}"),
        paid_online: true,
        assessment_id: String::new(),
        assessed_at: None,
        payment_method: v1::PaymentMethod::NationalPlatform as i32,
    }
}

/// A refund of a whole payment, or of some lines.
pub fn refund(refund_id: &str, payment_id: &str, lines: Vec<(&str, i64)>, at: DateTime<Utc>) -> v1::PaymentRefunded {
    v1::PaymentRefunded {
        refund_id: refund_id.into(),
        payment_id: payment_id.into(),
        lines: lines.into_iter().map(|(f, a)| v1::RefundedLine { fee_code: f.into(), amount: a.to_string() }).collect(),
        reason: "Hồ sơ bị từ chối, hoàn trả lệ phí".into(),
        refunded_at: Some(ts(at)),
    }
}
