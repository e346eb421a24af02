//! Every JSON example in proto/README.md decodes into its message with the canonical JSON
//! mapping, so integrators can paste them as they are.

use feepay_proto::v1;

fn check<T: serde::de::DeserializeOwned>(name: &str, json: &str) {
    if let Err(e) = serde_json::from_str::<T>(json) {
        panic!("proto/README.md example of {name} does not decode: {e}\n{json}");
    }
}

#[test]
fn readme_examples_decode() {
    let readme = include_str!("../../../proto/README.md");
    let mut checked = 0;
    for section in readme.split("\n### ").skip(1) {
        let name = section.split_whitespace().next().unwrap_or_default();
        let Some(start) = section.find("```json\n") else { continue };
        let body = &section[start + 8..];
        let json = &body[..body.find("```").expect("closed code block")];
        match name {
            "PaymentSucceeded" => check::<v1::PaymentSucceeded>(name, json),
            "PaymentRefunded" => check::<v1::PaymentRefunded>(name, json),
            "FeeAssessmentRequested" => check::<v1::FeeAssessmentRequested>(name, json),
            "FeeAssessed" => check::<v1::FeeAssessed>(name, json),
            "PaymentRejected" => check::<v1::PaymentRejected>(name, json),
            "ReceiptIssued" => check::<v1::ReceiptIssued>(name, json),
            "ReceiptCancelled" => check::<v1::ReceiptCancelled>(name, json),
            "ReceiptErrorNotified" => check::<v1::ReceiptErrorNotified>(name, json),
            "RefundRecorded" => check::<v1::RefundRecorded>(name, json),
            "WaiverNotice" => check::<v1::WaiverNotice>(name, json),
            "NotificationSent" => check::<v1::NotificationSent>(name, json),
            "NotificationFailed" => check::<v1::NotificationFailed>(name, json),
            "DeadLetter" => check::<v1::DeadLetter>(name, json),
            "TaxDocumentIssued" => check::<v1::TaxDocumentIssued>(name, json),
            other => panic!("proto/README.md has an example of {other}, which no test decodes"),
        }
        checked += 1;
    }
    assert_eq!(checked, 14, "one example per event");
}

#[test]
fn unknown_json_fields_are_refused() {
    // A misspelt field in an integrator's event is an error (dead-lettered with the field
    // named), not silently ignored.
    let err = serde_json::from_str::<v1::PaymentRefunded>(r#"{"refundId": "RF1", "paymentIdd": "PG1"}"#).unwrap_err();
    assert!(err.to_string().contains("paymentIdd"), "{err}");
}
