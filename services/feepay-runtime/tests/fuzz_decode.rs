//! Hostile bytes and hostile field values through the edge: decoding (protobuf and JSON)
//! and validation must answer Ok or a reason, never panic or hang. 20 000 + 20 000 + 5 000
//! generated inputs per run (`cargo test -p feepay-runtime --test fuzz_decode`).

use feepay_proto::v1;
use feepay_runtime::convert::{parse_payment, parse_refund, ParsedPayment};
use feepay_runtime::envelope::decode_body;
use proptest::prelude::*;

fn valid() -> v1::PaymentSucceeded {
    v1::PaymentSucceeded {
        payment_id: "PG-1".into(),
        dossier_code: "H09-1".into(),
        procedure_code: "1.002809".into(),
        agency_code: "BN.TTPVHCC".into(),
        channel: v1::Channel::Counter as i32,
        payer: Some(v1::Payer {
            full_name: "Nguyễn Văn An".into(),
            personal_id: "027090001234".into(),
            ..Default::default()
        }),
        lines: vec![v1::PaidLine {
            fee_code: "LP-GPLX".into(),
            kind: v1::FeeKind::LePhi as i32,
            quantity: 1,
            amount: "135000".into(),
        }],
        total_paid: "135000".into(),
        currency: "VND".into(),
        paid_at: Some(feepay_proto::timestamp(1_764_000_000, 0)),
        provider: "VNPAY".into(),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for ct in ["application/protobuf", "application/json", "text/plain"] {
            if let Ok(p) = decode_body::<v1::PaymentSucceeded>(Some(ct), &bytes) {
                let _ = parse_payment(&p);
            }
            if let Ok(r) = decode_body::<v1::PaymentRefunded>(Some(ct), &bytes) {
                let _ = parse_refund(&r);
            }
        }
    }

    #[test]
    fn arbitrary_field_values_are_validated_not_trusted(
        name in ".{0,400}",
        id in ".{0,20}",
        tax in ".{0,20}",
        amount in ".{0,40}",
        total in ".{0,40}",
        qty in any::<u32>(),
        channel in any::<i32>(),
        kind in any::<i32>(),
        seconds in any::<i64>(),
    ) {
        let mut p = valid();
        let payer = p.payer.as_mut().unwrap();
        payer.full_name = name.clone();
        payer.personal_id = id;
        payer.tax_code = tax;
        p.lines[0].amount = amount;
        p.lines[0].quantity = qty;
        p.lines[0].kind = kind;
        p.total_paid = total;
        p.channel = channel;
        p.paid_at = Some(feepay_proto::timestamp(seconds, 0));
        match parse_payment(&p) {
            Ok(ParsedPayment::Valid(ok)) => {
                // What passes is sane: whole amounts that add up, a name without control characters.
                prop_assert!(!ok.payer.full_name.chars().any(char::is_control));
                prop_assert_eq!(ok.lines.iter().map(|l| l.amount).sum::<feepay_domain::Vnd>(), ok.total_paid);
                prop_assert!(ok.lines.iter().all(|l| (1..=10_000).contains(&l.quantity)));
            }
            // Over a business limit: rejected with a detail naming the field, never silently.
            Ok(ParsedPayment::OverLimit(b)) => {
                prop_assert!(!b.detail.is_empty());
                prop_assert!(qty > 10_000 || b.detail.contains("characters") || b.detail.contains("10^15"), "{}", b.detail);
            }
            Err(e) => prop_assert!(!e.0.is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn json_with_hostile_values_never_panics(
        key in "[a-zA-Z]{1,12}",
        value in prop_oneof![".{0,50}".prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from), any::<f64>().prop_map(serde_json::Value::from)],
    ) {
        let mut doc = serde_json::to_value(valid()).unwrap();
        doc[key] = value;
        if let Ok(p) = decode_body::<v1::PaymentSucceeded>(Some("application/json"), doc.to_string().as_bytes()) {
            let _ = parse_payment(&p);
        }
    }
}

#[test]
fn bodies_above_one_mebibyte_are_refused_before_decoding() {
    let big = vec![b'a'; (1 << 20) + 1];
    let e = decode_body::<v1::PaymentSucceeded>(Some("application/json"), &big).unwrap_err();
    assert_eq!(e.code, "too_large");
}
