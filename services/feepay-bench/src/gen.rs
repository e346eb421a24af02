//! Realistic payment events: Vietnamese payers, every agency with a series, fees of both
//! kinds, some waived (beneficiary exemptions, online cuts), a few invalid.

use chrono::Utc;
use feepay_domain::reference::{FeeKind, ReferenceData};
use feepay_domain::waiver::{Category, Channel, LineQuery, RuleSet};
use feepay_proto::{v1, Message};
use feepay_runtime::convert::{category_pb, channel_pb, fee_kind_pb, ts};
use feepay_runtime::envelope::{self, BodyFormat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::OwnedHeaders;

const SURNAMES: &[&str] = &[
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương",
    "Lý",
];
const MIDDLE: &[&str] = &["Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quốc", "Thu", "Hoàng", "Xuân", "Kim"];
const GIVEN: &[&str] = &[
    "An", "Bình", "Cường", "Dung", "Đạt", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa", "Huy", "Khánh", "Lan", "Linh",
    "Long", "Mai", "Nam", "Ngân", "Phúc", "Quang", "Tâm", "Thảo", "Trang", "Tuấn", "Vy", "Yến",
];
const STREETS: &[&str] =
    &["Nguyễn Đăng Đạo", "Lý Thái Tổ", "Trần Hưng Đạo", "Ngô Gia Tự", "Hai Bà Trưng", "Lê Thánh Tông"];

pub struct Generator {
    rng: StdRng,
    run: String,
    n: u64,
    reference: ReferenceData,
    rules: RuleSet,
    agencies: Vec<String>,
    issued: Vec<(String, Vec<(String, i64)>)>,
}

impl Generator {
    pub fn new(reference: &ReferenceData, rules: &RuleSet, run: &str) -> Self {
        // Agencies with a series that exist today (not a unit merged away in 2025).
        let today = feepay_domain::numbering::date_gmt7(crate::wall_clock());
        let mut agencies: Vec<String> = reference
            .series
            .iter()
            .filter(|s| reference.agencies.get(&s.agency).is_some_and(|a| a.exists_on(today)))
            .map(|s| s.agency.clone())
            .collect();
        agencies.dedup();
        Generator {
            rng: StdRng::seed_from_u64(20261126),
            run: run.replace('-', ""),
            n: 0,
            reference: reference.clone(),
            rules: rules.clone(),
            agencies,
            issued: Vec::new(),
        }
    }

    fn pick<'a>(&mut self, v: &'a [&'a str]) -> &'a str {
        v[self.rng.gen_range(0..v.len())]
    }

    /// The next event: (key, body, headers, valid).
    pub fn next(&mut self, invalid_pct: u32) -> (String, Vec<u8>, OwnedHeaders, bool) {
        self.n += 1;
        let id = format!("PB{}{:08}", self.run, self.n);
        let now = crate::wall_clock();
        if self.rng.gen_range(0..100) < invalid_pct {
            let body = match self.n % 3 {
                0 => b"\x08\x96\x01garbage".to_vec(),
                1 => {
                    let mut p = self.payment(&id, now);
                    p.payer.as_mut().expect("payer").personal_id = "12345".into();
                    p.encode_to_vec()
                }
                _ => {
                    let mut p = self.payment(&id, now);
                    p.total_paid = "-1".into();
                    p.encode_to_vec()
                }
            };
            let h = envelope::headers_for::<v1::PaymentSucceeded>(&id, "/feepay/bench", now, BodyFormat::Protobuf);
            return (id, body, h, false);
        }
        let p = self.payment(&id, now);
        let format = if self.n.is_multiple_of(10) { BodyFormat::Json } else { BodyFormat::Protobuf };
        let body = envelope::encode_body(&p, format);
        let h = envelope::headers_for::<v1::PaymentSucceeded>(&id, "/feepay/bench", now, format);
        if p.lines.iter().any(|l| l.amount != "0") && self.issued.len() < 1_000_000 {
            self.issued.push((
                id.clone(),
                p.lines.iter().map(|l| (l.fee_code.clone(), l.amount.parse().unwrap_or(0))).collect(),
            ));
        }
        (id, body, h, true)
    }

    fn payment(&mut self, id: &str, now: chrono::DateTime<Utc>) -> v1::PaymentSucceeded {
        let agency = self.agencies[self.rng.gen_range(0..self.agencies.len())].clone();
        let kinds: Vec<FeeKind> =
            self.reference.series.iter().filter(|s| s.agency == agency).flat_map(|s| s.kinds.clone()).collect();
        // Fees this agency may take today: in force, and its own or under a mandate.
        let today = feepay_domain::numbering::date_gmt7(now);
        let a = &self.reference.agencies[&agency];
        let fees: Vec<String> = self
            .reference
            .fees
            .values()
            .filter(|f| f.in_force_on(today))
            .filter(|f| match &f.collector {
                None => kinds.contains(&f.kind),
                Some(c) if *c == agency => kinds.contains(&f.kind),
                Some(c) => {
                    a.collects_for.iter().any(|m| m.principal == *c && m.fees.contains(&f.code) && m.in_force_on(today))
                }
            })
            .map(|f| f.code.clone())
            .collect();
        let channel = [Channel::FullyOnline, Channel::PartlyOnline, Channel::Counter][self.rng.gen_range(0..3)];
        let categories: Vec<Category> =
            if self.rng.gen_range(0..10) == 0 { vec![Category::PoorHousehold] } else { vec![] };
        let nlines = if self.rng.gen_range(0..4) == 0 { 2 } else { 1 };
        let mut lines = Vec::new();
        for _ in 0..nlines {
            let code = fees[self.rng.gen_range(0..fees.len())].clone();
            let fee = &self.reference.fees[&code];
            let qty =
                if code.contains("CHUNGTHUC") || code.contains("TRICHLUC") { self.rng.gen_range(1..6) } else { 1 };
            let q = LineQuery {
                agency: &agency,
                procedure: "1.000001",
                fee,
                quantity: qty,
                channel,
                paid_online: channel != Channel::Counter,
                categories: &categories,
                identity_level: 0,
                citizen: true,
                at: now,
            };
            let due = self.rules.assess_line(&self.reference, &q).map(|a| a.due.dong()).unwrap_or(0);
            lines.push(v1::PaidLine {
                fee_code: code,
                kind: fee_kind_pb(fee.kind) as i32,
                quantity: qty,
                amount: due.to_string(),
            });
        }
        let total: i64 = lines.iter().map(|l| l.amount.parse::<i64>().unwrap_or(0)).sum();
        let name = format!("{} {} {}", self.pick(SURNAMES), self.pick(MIDDLE), self.pick(GIVEN));
        let street = self.pick(STREETS);
        let house = self.rng.gen_range(1..300);
        // Province of birth registration, then sex and century (0 man, 1 woman, born in
        // the 1900s), year of birth, serial.
        let cccd = format!(
            "{}{}{:02}{:06}",
            self.pick(&feepay_domain::ids::PROVINCE_CODES),
            self.rng.gen_range(0..2),
            self.rng.gen_range(50..99),
            self.rng.gen_range(0..1_000_000)
        );
        v1::PaymentSucceeded {
            payment_id: id.to_string(),
            dossier_code: format!("{}-{}", agency.replace('.', "-"), &id[id.len() - 8..]),
            procedure_code: "1.000001".into(),
            agency_code: agency,
            channel: channel_pb(channel) as i32,
            payer: Some(v1::Payer {
                full_name: name,
                personal_id: cccd,
                tax_code: String::new(),
                email: format!("nguoinop{}@example.vn", self.n),
                address: format!("Số {house} đường {street}"),
                categories: categories.iter().map(|c| category_pb(*c) as i32).collect(),
                passport_number: String::new(),
                identity_level: 0,
            }),
            lines,
            total_paid: total.to_string(),
            currency: "VND".into(),
            paid_at: Some(ts(now)),
            provider: ["VNPAY", "NAPAS", "MOMO", "VIETTELMONEY"][(self.n % 4) as usize].into(),
            provider_reference: format!("FT{id}"),
            paid_online: channel != Channel::Counter,
            assessment_id: String::new(),
            assessed_at: None,
            payment_method: if channel == Channel::Counter {
                v1::PaymentMethod::Card
            } else {
                v1::PaymentMethod::NationalPlatform
            } as i32,
        }
    }

    /// Refunds for `pct` percent of the payments that got a receipt: half full, half partial.
    pub fn refunds(&mut self, pct: u32) -> Vec<v1::PaymentRefunded> {
        let mut out = Vec::new();
        let issued = std::mem::take(&mut self.issued);
        for (i, (payment_id, lines)) in issued.iter().enumerate() {
            if (i as u32 * 100 / issued.len().max(1) as u32) >= pct {
                break;
            }
            let partial = i % 2 == 1 && lines.iter().any(|(_, a)| *a > 1);
            let refund_lines = if partial {
                let (code, amount) = lines.iter().find(|(_, a)| *a > 1).expect("checked");
                vec![v1::RefundedLine { fee_code: code.clone(), amount: (amount / 2).to_string() }]
            } else {
                vec![]
            };
            out.push(v1::PaymentRefunded {
                refund_id: format!("RF{payment_id}"),
                payment_id: payment_id.clone(),
                lines: refund_lines,
                reason: "Hoàn trả theo yêu cầu của người nộp".into(),
                refunded_at: Some(ts(crate::wall_clock())),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event meant to be valid passes the issuer's own edge checks and gets a receipt
    /// (or a waiver notice), so the bench measures receipts, not dead letters or rejections.
    #[test]
    fn valid_events_parse_at_the_edge() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/reference");
        let files = feepay_runtime::refdata::ReferenceFiles::read_dir(&dir).unwrap();
        let (reference, rules) = files.parse().unwrap();
        let mut g = Generator::new(&reference, &rules, "test");
        for _ in 0..2000 {
            let (_, body, headers, valid) = g.next(0);
            assert!(valid);
            let content_type = if body.first() == Some(&b'{') { "application/json" } else { "application/protobuf" };
            let p: v1::PaymentSucceeded = envelope::decode_body(Some(content_type), &body).unwrap();
            drop(headers);
            match feepay_runtime::convert::parse_payment(&p) {
                Ok(feepay_runtime::convert::ParsedPayment::Valid(payment)) => {
                    if let feepay_domain::payment::Decision::Reject { reason, detail } =
                        feepay_domain::payment::decide(&reference, &rules, &payment)
                    {
                        panic!("{}: {detail}: {p:?}", reason.code())
                    }
                }
                Ok(other) => panic!("over a limit: {other:?}"),
                Err(e) => panic!("{e}: {p:?}"),
            }
        }
    }
}
