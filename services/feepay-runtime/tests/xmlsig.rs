//! Receipts signed with XML signatures under test-CA certificates: our own verifier and the
//! canonical form agree with what was written; tampering is detected.

use chrono::{Duration, TimeZone, Utc};
use feepay_domain::money::Vnd;
use feepay_domain::numbering::{ReceiptNumber, GENESIS_HASH};
use feepay_domain::receipt::{AgencyInfo, PayerInfo, PaymentMethod, ReceiptContent, VerifyError};
use feepay_domain::reference::FeeKind;
use feepay_domain::waiver::{AppliedRule, LineAssessment};
use feepay_runtime::pki::signers::SoftSigner;
use feepay_runtime::pki::testca::{self, Subject, TestCa};
use feepay_runtime::pki::verify::verify_receipt;
use feepay_runtime::pki::TrustAnchors;

fn content() -> ReceiptContent {
    let vnd = |n| Vnd::new(n).unwrap();
    ReceiptContent {
        receipt_id: "1db0060c-2f61-544e-ba10-5edc0e68080e".into(),
        payment_id: "PG2026112600001".into(),
        title: "Biên lai thu phí, lệ phí không có mệnh giá".into(),
        agency: AgencyInfo {
            code: "BN.TTPVHCC".into(),
            name: "Trung tâm Phục vụ hành chính công thành phố Bắc Ninh".into(),
            tax_code: "2300290832".into(),
            address: "Số 11 đường Lý Thái Tổ, phường Kinh Bắc, thành phố Bắc Ninh".into(),
        },
        template: "1".into(),
        symbol: "26T".into(),
        number: ReceiptNumber::new(42).unwrap(),
        payer: PayerInfo {
            full_name: "Nguyễn Văn \"An\" & <Cô> Bình".into(),
            personal_id: "027190001234".into(),
            tax_code: String::new(),
            passport: String::new(),
            address: "Số 5 đường Nguyễn Đăng Đạo, phường Kinh Bắc".into(),
        },
        dossier_code: "H09.22-261126-0001".into(),
        procedure_code: "1.002809".into(),
        lines: vec![LineAssessment {
            fee_code: "LP-GPLX".into(),
            fee_name: "Lệ phí cấp giấy phép lái xe".into(),
            kind: FeeKind::LePhi,
            quantity: 1,
            base: vnd(135_000),
            due: vnd(67_500),
            applied: Some(AppliedRule {
                rule_id: "tt64-2025".into(),
                document_number: "64/2025/TT-BTC".into(),
                issuing_body: "Bộ Tài chính".into(),
                description: "Giảm 50%".into(),
                reduction: vnd(67_500),
            }),
            candidates: vec![],
        }],
        total: vnd(67_500),
        payment_method: PaymentMethod::NationalPlatform,
        provider: "VNPAY".into(),
        provider_reference: "FT26330123456".into(),
        issued_at: Utc.with_ymd_and_hms(2026, 11, 26, 2, 30, 1).unwrap(),
        lookup_code: "DADZ-RF3N-CT9K-2M4P".into(),
        previous_hash: GENESIS_HASH.into(),
        replaces: None,
        delegate: None,
    }
}

fn setup(ec: bool) -> (TestCa, SoftSigner, TrustAnchors) {
    let now = feepay_runtime::clock::Clock::now(&feepay_runtime::clock::SystemClock);
    let ca = TestCa::create("feepay test CA", now - Duration::days(400), now + Duration::days(3650)).unwrap();
    let key = if ec { testca::ec_key().unwrap() } else { testca::rsa_key().unwrap() };
    let public = openssl::pkey::PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap();
    let subject = Subject {
        name: "Trung tâm Phục vụ hành chính công thành phố Bắc Ninh".into(),
        tax_code: "2300290832".into(),
        province: Some("Bắc Ninh".into()),
    };
    let cert = ca.issue(&public, &subject, now - Duration::days(365), now + Duration::days(365)).unwrap();
    let signer = SoftSigner::new(key, vec![cert.to_der().unwrap(), ca.cert.to_der().unwrap()]).unwrap();
    let trust = TrustAnchors::from_pem(&ca.cert.to_pem().unwrap()).unwrap();
    (ca, signer, trust)
}

#[test]
fn a_signed_receipt_verifies_and_its_data_part_is_canonical() {
    for ec in [false, true] {
        let (_ca, signer, trust) = setup(ec);
        let c = content();
        let sealed = c.seal(&signer).unwrap();
        let v =
            verify_receipt(&sealed.document, &trust, |_| None).unwrap_or_else(|e| panic!("{e}\n{}", sealed.document));
        assert_eq!(v.document.number, "0000042");
        assert_eq!(v.document.symbol, "26T");
        assert_eq!(v.document.agency_code, "BN.TTPVHCC");
        assert_eq!(v.document.previous_hash, GENESIS_HASH);
        assert_eq!(v.signer.as_ref().unwrap().tax_code.as_deref(), Some("2300290832"));
        // The canonical form of the data part is what was written (and digested).
        let doc = roxmltree::Document::parse(&sealed.document).unwrap();
        let data = doc.root_element().first_element_child().unwrap();
        let canonical =
            feepay_domain::receipt::c14n::canonicalize(data, feepay_domain::receipt::c14n::Method::Inclusive, None);
        assert_eq!(String::from_utf8(canonical).unwrap(), c.data_xml());
    }
}

#[test]
fn tampering_is_detected() {
    let (_ca, signer, trust) = setup(false);
    let sealed = content().seal(&signer).unwrap();
    let d = &sealed.document;
    let altered = d.replacen("<TgTien>67500</TgTien>", "<TgTien>6750</TgTien>", 1);
    assert!(matches!(verify_receipt(&altered, &trust, |_| None), Err(VerifyError::Digest(_))));
    let time = d.replacen(
        "<SigningTime>2026-11-26T09:30:01</SigningTime>",
        "<SigningTime>2026-11-26T09:30:02</SigningTime>",
        1,
    );
    assert!(matches!(verify_receipt(&time, &trust, |_| None), Err(VerifyError::Digest(_))));
    // Another certificate from the same CA cannot take the signature over.
    let (_, other, _) = setup(false);
    let other_doc = content().seal(&other).unwrap().document;
    let cert = |doc: &str| {
        doc.split("<X509Certificate>").nth(1).unwrap().split("</X509Certificate>").next().unwrap().to_string()
    };
    let swapped = d.replacen(&cert(d), &cert(&other_doc), 1);
    assert!(matches!(verify_receipt(&swapped, &trust, |_| None), Err(VerifyError::BadSignature)));
    // Wrapping: the signed data moved aside and a forged data part put in its place.
    let data_start = d.find("<DLBLai").unwrap();
    let data_end = d.find("</DLBLai>").unwrap() + "</DLBLai>".len();
    let signed = &d[data_start..data_end];
    let forged = signed.replace("<TgTien>67500</TgTien>", "<TgTien>1</TgTien>").replace("Id=\"data\"", "Id=\"forged\"");
    let wrapped = d.replacen(signed, &format!("{forged}<Extra>{signed}</Extra>"), 1);
    assert!(verify_receipt(&wrapped, &trust, |_| None).is_err());
    let twice = d.replacen(signed, &format!("{signed}{signed}"), 1);
    assert!(matches!(verify_receipt(&twice, &trust, |_| None), Err(VerifyError::Malformed(_))));
    // An untrusted CA.
    let (_, stranger, _) = setup(false);
    let foreign = content().seal(&stranger).unwrap().document;
    assert!(matches!(verify_receipt(&foreign, &trust, |_| None), Err(VerifyError::Certificate(_))));
}

#[test]
fn under_a_delegation_the_delegate_signs_and_the_collector_is_named() {
    let now = feepay_runtime::clock::Clock::now(&feepay_runtime::clock::SystemClock);
    let ca = TestCa::create("feepay test CA", now - Duration::days(400), now + Duration::days(3650)).unwrap();
    let trust = TrustAnchors::from_pem(&ca.cert.to_pem().unwrap()).unwrap();
    let key = testca::rsa_key().unwrap();
    let public = openssl::pkey::PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap();
    // The desk's certificate (its own tax code), not the collector's.
    let desk = Subject {
        name: "Trung tâm Phục vụ hành chính công thành phố Bắc Ninh".into(),
        tax_code: "2300290832".into(),
        province: None,
    };
    let cert = ca.issue(&public, &desk, now - Duration::days(365), now + Duration::days(365)).unwrap();
    let signer = SoftSigner::new(key, vec![cert.to_der().unwrap()]).unwrap();
    let mut c = content();
    c.agency = AgencyInfo {
        code: "BN.STP".into(),
        name: "Sở Tư pháp thành phố Bắc Ninh".into(),
        tax_code: "2300119183".into(),
        address: "Thành phố Bắc Ninh".into(),
    };
    // Without a delegation the desk's certificate cannot sign for the department.
    let undelegated = c.seal(&signer).unwrap();
    let e = verify_receipt(&undelegated.document, &trust, |_| None).unwrap_err();
    assert!(e.to_string().contains("is for tax code 2300290832, not for the collector's 2300119183"), "{e}");
    c.delegate = Some(AgencyInfo {
        code: "BN.TTPVHCC".into(),
        name: desk.name.clone(),
        tax_code: desk.tax_code.clone(),
        address: "Thành phố Bắc Ninh".into(),
    });
    let sealed = c.seal(&signer).unwrap();
    assert!(sealed.document.contains("<TTruong>UyNhiem.MST</TTruong><KDLieu>string</KDLieu><DLieu>2300290832</DLieu>"));
    let v = verify_receipt(&sealed.document, &trust, |_| None).unwrap();
    assert_eq!(
        (v.document.agency_tax_code.as_str(), v.document.signer_tax_code.as_str()),
        ("2300119183", "2300290832")
    );
}
