//! Table and property tests built from the sample reference data in `deploy/reference/`.

use chrono::{DateTime, TimeZone, Utc};
use feepay_domain::ids::PersonalId;
use feepay_domain::numbering::{check_chain, ChainLink, ReceiptNumber, GENESIS_HASH};
use feepay_domain::payment::{decide, Decision, PaidLine, Payer, Payment, Rejection};
use feepay_domain::receipt::xmldsig::{self, SignError, SignatureAlgorithm, Signer};
use feepay_domain::receipt::{
    document, document_hash, generate_lookup_code, AgencyInfo, PayerInfo, PaymentMethod, ReceiptContent, VerifyError,
};
use feepay_domain::reference::{FeeKind, ReferenceData};
use feepay_domain::waiver::{Category, Channel, LineQuery, RuleSet};
use feepay_domain::Vnd;
use proptest::prelude::*;

const AGENCIES: &str = include_str!("../../../deploy/reference/agencies.toml");
const FEES: &str = include_str!("../../../deploy/reference/fees.toml");
const WAIVERS: &str = include_str!("../../../deploy/reference/waivers.toml");

fn load() -> (ReferenceData, RuleSet) {
    static LOADED: std::sync::OnceLock<(ReferenceData, RuleSet)> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let reference = ReferenceData::parse("agencies.toml", AGENCIES, "fees.toml", FEES)
                .expect("sample reference data is valid");
            let rules = RuleSet::parse("waivers.toml", WAIVERS, &reference).expect("sample rules are valid");
            (reference, rules)
        })
        .clone()
}

/// Midnight-precise instants in GMT+7.
fn gmt7(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    feepay_domain::numbering::gmt7().with_ymd_and_hms(y, m, d, h, min, s).unwrap().with_timezone(&Utc)
}

fn due(
    agency: &str,
    fee: &str,
    qty: u32,
    channel: Channel,
    cats: &[Category],
    at: DateTime<Utc>,
) -> (i64, Option<String>) {
    due_as(agency, fee, qty, channel, cats, 0, at)
}

fn due_as(
    agency: &str,
    fee: &str,
    qty: u32,
    channel: Channel,
    cats: &[Category],
    identity_level: u8,
    at: DateTime<Utc>,
) -> (i64, Option<String>) {
    let (reference, rules) = load();
    let fee = &reference.fees[fee];
    let q = LineQuery {
        agency,
        procedure: "1.000000",
        fee,
        quantity: qty,
        channel,
        paid_online: true,
        categories: cats,
        identity_level,
        citizen: true,
        at,
    };
    let a = rules.assess_line(&reference, &q).unwrap();
    (a.due.dong(), a.applied.map(|r| r.rule_id))
}

#[test]
fn circular_64_halves_listed_fees_until_the_end_of_2026() {
    use Channel::*;
    let now = gmt7(2026, 11, 28, 9, 0, 0);
    assert_eq!(due("BN.TTPVHCC", "LP-CANCUOC-DOI", 1, Counter, &[], now), (25_000, Some("tt64-2025-cancuoc".into())));
    assert_eq!(due("BN.TTPVHCC", "LP-CANCUOC-LAI", 1, FullyOnline, &[], now).0, 35_000);
    assert_eq!(due("HP.HAIDUONG", "LP-DKDN", 1, Counter, &[], now), (25_000, Some("tt64-2025-dkdn".into())));
    // First and last second of the window, in GMT+7.
    assert_eq!(due("BN.TTPVHCC", "LP-CANCUOC-DOI", 1, Counter, &[], gmt7(2025, 6, 30, 23, 59, 59)).0, 50_000);
    assert_eq!(due("BN.TTPVHCC", "LP-CANCUOC-DOI", 1, Counter, &[], gmt7(2025, 7, 1, 0, 0, 0)).0, 25_000);
    assert_eq!(due("BN.TTPVHCC", "LP-CANCUOC-DOI", 1, Counter, &[], gmt7(2026, 12, 31, 23, 59, 59)).0, 25_000);
    assert_eq!(due("BN.TTPVHCC", "LP-CANCUOC-DOI", 1, Counter, &[], gmt7(2027, 1, 1, 0, 0, 0)).0, 50_000);
    // Not on the list: the full rate.
    assert_eq!(due("BN.TTPVHCC", "LP-GPLX", 1, FullyOnline, &[], now), (135_000, None));
}

#[test]
fn circular_63_online_rates_and_their_window() {
    use Channel::*;
    let in_force = gmt7(2024, 5, 1, 9, 0, 0);
    assert_eq!(
        due("BN.TTPVHCC", "LP-GPLX", 1, FullyOnline, &[], in_force),
        (115_000, Some("tt63-2023-gplx-online".into()))
    );
    assert_eq!(due("BN.TTPVHCC", "LP-GPLX", 1, Counter, &[], in_force).0, 135_000);
    assert_eq!(due("BN.TTPVHCC", "LP-HOCHIEU-CAPMOI", 1, FullyOnline, &[], in_force).0, 180_000);
    assert_eq!(due("BN.TTPVHCC", "LP-HOCHIEU-CAPLAI", 1, PartlyOnline, &[], in_force).0, 360_000);
    // First and last second of the window, in GMT+7.
    assert_eq!(due("BN.TTPVHCC", "LP-GPLX", 1, FullyOnline, &[], gmt7(2023, 11, 30, 23, 59, 59)).0, 135_000);
    assert_eq!(due("BN.TTPVHCC", "LP-GPLX", 1, FullyOnline, &[], gmt7(2023, 12, 1, 0, 0, 0)).0, 115_000);
    assert_eq!(due("BN.TTPVHCC", "LP-GPLX", 1, FullyOnline, &[], gmt7(2025, 12, 31, 23, 59, 59)).0, 115_000);
    assert_eq!(due("BN.TTPVHCC", "LP-GPLX", 1, FullyOnline, &[], gmt7(2026, 1, 1, 0, 0, 0)).0, 135_000);
    // 2026-01-01 00:00 GMT+7 is still 2025-12-31 in UTC: the window is judged in GMT+7.
    assert_eq!(gmt7(2026, 1, 1, 0, 0, 0).date_naive().to_string(), "2025-12-31");
}

#[test]
fn hai_duong_50_percent_online_until_the_province_merged() {
    use Channel::*;
    let gpxd = |at| due("HD.TTPVHCC", "HD-LP-GPXD", 1, FullyOnline, &[], at);
    assert_eq!(gpxd(gmt7(2023, 7, 31, 23, 59, 59)).0, 75_000, "before NQ 06/2023");
    assert_eq!(gpxd(gmt7(2023, 8, 1, 0, 0, 0)), (37_500, Some("hd-nq06-2023-online-50".into())));
    assert_eq!(gpxd(gmt7(2025, 6, 30, 23, 59, 59)).0, 37_500);
    // At the counter the full rate applies.
    assert_eq!(due("HD.TTPVHCC", "HD-LP-GPXD", 1, Counter, &[], gmt7(2024, 1, 5, 8, 0, 0)).0, 75_000);
}

#[test]
fn certification_of_copies_is_tiered_per_page_with_a_cap() {
    use Channel::*;
    let at = gmt7(2026, 11, 28, 9, 0, 0);
    let pages = |n| due("BN.KINHBAC", "P-CHUNGTHUC", n, Counter, &[], at).0;
    assert_eq!(pages(1), 2_000);
    assert_eq!(pages(2), 4_000);
    assert_eq!(pages(3), 5_000, "1 000 đ from the third page");
    assert_eq!(pages(10), 12_000);
    assert_eq!(pages(198), 200_000);
    assert_eq!(pages(500), 200_000, "at most 200 000 đ per copy");
}

#[test]
fn civil_status_exemption_covers_registration_not_extract_copies() {
    use Channel::*;
    let at = gmt7(2026, 3, 1, 8, 0, 0);
    assert_eq!(
        due("HP.HAIDUONG", "HP-LP-HOTICH-CAICHINH", 1, FullyOnline, &[Category::PoorHousehold], at),
        (0, Some("luat-hotich-2014-doi-tuong".into()))
    );
    assert_eq!(due("BN.KINHBAC", "BN-LP-HOTICH-CAICHINH", 1, Counter, &[Category::PersonWithDisabilities], at).0, 0);
    assert_eq!(due("BN.KINHBAC", "BN-LP-HOTICH-CAICHINH", 1, Counter, &[Category::NearPoorHousehold], at).0, 28_000);
    // Extract copies are a phí the law does not exempt: 8 000 đ a copy, for anyone.
    assert_eq!(due("BN.KINHBAC", "P-HOTICH-TRICHLUC", 3, Counter, &[Category::PoorHousehold], at), (24_000, None));
}

#[test]
fn a_rule_can_require_a_level_2_identity_account() {
    let (reference, _) = load();
    let text = format!(
        "{WAIVERS}\n[[rule]]\nid = \"vneid-2\"\ndocument_number = \"01/2026/TT-X\"\nissuing_body = \"Bộ Tài chính\"\n\
         signed_on = \"2026-01-01\"\ndescription = \"Miễn khi dùng tài khoản định danh mức 2\"\nvalid_from = \"2026-01-01\"\n\
         priority = 30\nscope = {{ fee_codes = [\"LP-GPLX\"] }}\nconditions = {{ identity_level_min = 2 }}\n\
         effect = {{ kind = \"exempt\" }}\n"
    );
    let rules = RuleSet::parse("waivers.toml", &text, &reference).unwrap();
    let fee = &reference.fees["LP-GPLX"];
    let at = gmt7(2026, 11, 28, 9, 0, 0);
    let assess = |identity_level| {
        let q = LineQuery {
            agency: "BN.TTPVHCC",
            procedure: "1.000000",
            fee,
            quantity: 1,
            channel: Channel::FullyOnline,
            paid_online: true,
            categories: &[],
            identity_level,
            citizen: true,
            at,
        };
        rules.assess_line(&reference, &q).unwrap()
    };
    assert_eq!(assess(2).due.dong(), 0);
    let level1 = assess(1);
    assert_eq!(level1.due.dong(), 135_000);
    assert!(
        level1.explain().contains("requires an identity account of level 2 (the payer's: 1)"),
        "{}",
        level1.explain()
    );
}

#[test]
fn every_decision_is_explained() {
    let (reference, rules) = load();
    let fee = &reference.fees["LP-CANCUOC-DOI"];
    let q = LineQuery {
        agency: "BN.TTPVHCC",
        procedure: "1.000000",
        fee,
        quantity: 1,
        channel: Channel::FullyOnline,
        paid_online: true,
        categories: &[],
        identity_level: 0,
        citizen: true,
        at: gmt7(2027, 1, 2, 8, 0, 0),
    };
    let text = rules.assess_line(&reference, &q).unwrap().explain();
    assert!(text.contains("tt64-2025-cancuoc does not apply (not in force at that date)"), "{text}");
    let q = LineQuery { at: gmt7(2026, 7, 1, 8, 0, 0), ..q };
    let text = rules.assess_line(&reference, &q).unwrap().explain();
    assert!(text.contains("tt64-2025-cancuoc matches (due 25.000 đ)"), "{text}");
    assert!(text.contains("applied tt64-2025-cancuoc"), "{text}");
}

#[test]
fn bad_rule_files_are_refused_with_file_line_and_reason() {
    let (reference, _) = load();
    let cases: &[(&str, &str)] = &[
        ("percent = 50 }\n\n[[rule]]\nid = \"tt64-2025-dkdn\"", "percent = 150 }\n\n[[rule]]\nid = \"tt64-2025-dkdn\""),
        ("percent = 10", "percent = -5"),
        (
            "valid_until = \"2025-06-30\"\npriority = 10\nscope = { agencies = [\"HD\"]",
            "valid_until = \"2022-06-30\"\npriority = 10\nscope = { agencies = [\"HD\"]",
        ),
        ("amount = 115000", "amount = 150000"),
    ];
    // Line of a rule's `[[rule]]` header in the sample file.
    let at = |id: &str| {
        let idx = WAIVERS.find(&format!("id = \"{id}\"")).unwrap();
        WAIVERS[..idx].lines().count()
    };
    let expected = [
        format!("waivers.toml:{}: rule tt64-2025-cancuoc: percent_off must be more than 0 and at most 100, got 150", at("tt64-2025-cancuoc")),
        format!("waivers.toml:{}: rule tt63-2023-hochieu-online: percent_off must be more than 0 and at most 100, got -5", at("tt63-2023-hochieu-online")),
        format!("waivers.toml:{}: rule hd-nq06-2023-online-50: window ends (2022-06-30) before it starts (2023-08-01)", at("hd-nq06-2023-online-50")),
        format!("waivers.toml:{}: rule tt63-2023-gplx-online: set_amount 150000 is above the base amount 135000 of fee LP-GPLX", at("tt63-2023-gplx-online")),
    ];
    for ((from, to), want) in cases.iter().zip(expected) {
        assert!(WAIVERS.contains(from), "{from}");
        let err = RuleSet::parse("waivers.toml", &WAIVERS.replacen(from, to, 1), &reference).unwrap_err().to_string();
        assert!(err.contains(&want), "expected {want:?} in:\n{err}");
    }
    // Two rules of the same priority that could apply to the same fee on the same day.
    let overlapping = WAIVERS.replacen(
        "scope = { fee_codes = [\"LP-DKDN\"] }",
        "scope = { fee_codes = [\"LP-DKDN\", \"LP-CANCUOC-DOI\"] }",
        1,
    );
    let err = RuleSet::parse("waivers.toml", &overlapping, &reference).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "waivers.toml:{}: rule tt64-2025-dkdn: ambiguous overlap with rule tt64-2025-cancuoc (line {})",
            at("tt64-2025-dkdn"),
            at("tt64-2025-cancuoc")
        )),
        "{err}"
    );
    let err = RuleSet::parse("w.toml", "[[rule]]\nid = 3\n", &reference).unwrap_err().to_string();
    assert!(err.starts_with("w.toml:2: "), "{err}");
}

fn payer(categories: Vec<Category>) -> Payer {
    Payer {
        full_name: "Nguyễn Thị Hương".into(),
        personal_id: Some(PersonalId::parse("027190001234").unwrap()),
        tax_code: None,
        email: Some("huong@example.vn".into()),
        address: "Phường Kinh Bắc, thành phố Bắc Ninh".into(),
        categories,
        passport: None,
        identity_level: 0,
    }
}

fn payment(
    agency: &str,
    lines: Vec<(&str, FeeKind, u32, i64)>,
    channel: Channel,
    categories: Vec<Category>,
) -> Payment {
    let lines: Vec<PaidLine> = lines
        .into_iter()
        .map(|(f, k, q, a)| PaidLine { fee_code: f.into(), kind: k, quantity: q, amount: Vnd::new(a).unwrap() })
        .collect();
    Payment {
        payment_id: "PG-1".into(),
        dossier_code: "H09.01-260101-0001".into(),
        procedure_code: "1.000000".into(),
        agency_code: agency.into(),
        channel,
        payer: payer(categories),
        total_paid: lines.iter().map(|l| l.amount).sum(),
        lines,
        paid_at: gmt7(2026, 11, 26, 9, 30, 0),
        provider: "VNPAY".into(),
        provider_reference: "VNP-1".into(),
        paid_online: true,
        assessment_id: None,
        assessed_at: None,
        payment_method: PaymentMethod::NationalPlatform,
    }
}

#[test]
fn phi_and_le_phi_get_separate_receipts_of_the_same_series() {
    let (reference, rules) = load();
    let p = payment(
        "BN.TTPVHCC",
        vec![("BN-P-THAMDINH-GCN", FeeKind::Phi, 1, 500_000), ("BN-LP-GCN", FeeKind::LePhi, 1, 100_000)],
        Channel::Counter,
        vec![],
    );
    match decide(&reference, &rules, &p) {
        Decision::Issue { receipts, waived } => {
            assert!(waived.is_empty());
            assert_eq!(receipts.len(), 2);
            assert_eq!((receipts[0].kind, receipts[0].total.dong()), (FeeKind::Phi, 500_000));
            assert_eq!((receipts[1].kind, receipts[1].total.dong()), (FeeKind::LePhi, 100_000));
            assert_eq!(receipts[0].series, receipts[1].series);
            let s = &receipts[0].series;
            let on = feepay_domain::numbering::date_gmt7(p.paid_at);
            assert_eq!(
                (s.agency.as_str(), s.template.as_str(), s.symbol_on(on).unwrap().as_str()),
                ("BN.TTPVHCC", "EBL01", "26TAA")
            );
            assert_eq!(
                s.form_on(on).unwrap().name,
                "Biên lai thu phí, lệ phí không có mệnh giá",
                "the name the decree gives the form"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fee_another_body_collects_is_issued_only_under_its_delegation() {
    let (reference, rules) = load();
    // The police's passport fee paid at the centre's desk (halved by Circular 64/2025): the
    // police's series, the desk as delegate in its range (Decree 254/2026/NĐ-CP Art. 25).
    let p = payment("BN.TTPVHCC", vec![("LP-HOCHIEU-CAPMOI", FeeKind::LePhi, 1, 100_000)], Channel::Counter, vec![]);
    let Decision::Issue { receipts, .. } = decide(&reference, &rules, &p) else { panic!() };
    assert_eq!((receipts[0].series.agency.as_str(), receipts[0].delegate.as_deref()), ("BN.CA", Some("BN.TTPVHCC")));
    assert_eq!(receipts[0].signer(), "BN.TTPVHCC");
    assert_eq!((receipts[0].range.from, receipts[0].range.to), (500_000, 999_999));
    // The police's criminal-record fee and its passport fee share the police's series; the
    // phí and the lệ phí get separate receipts.
    let p = payment(
        "BN.TTPVHCC",
        vec![("P-LLTP", FeeKind::Phi, 1, 200_000), ("LP-HOCHIEU-CAPMOI", FeeKind::LePhi, 1, 100_000)],
        Channel::Counter,
        vec![],
    );
    let Decision::Issue { receipts, .. } = decide(&reference, &rules, &p) else { panic!() };
    assert_eq!(receipts.len(), 2);
    assert!(receipts.iter().all(|r| r.series.agency == "BN.CA" && r.delegate.as_deref() == Some("BN.TTPVHCC")));
    // The police itself numbers below the delegated range.
    let p = payment("BN.CA", vec![("P-LLTP", FeeKind::Phi, 1, 200_000)], Channel::Counter, vec![]);
    let Decision::Issue { receipts, .. } = decide(&reference, &rules, &p) else { panic!() };
    assert_eq!((receipts[0].delegate.as_deref(), receipts[0].range.from, receipts[0].range.to), (None, 1, 499_999));
    // A commune has no delegation for the police's fees.
    let p = payment("BN.KINHBAC", vec![("LP-HOCHIEU-CAPMOI", FeeKind::LePhi, 1, 100_000)], Channel::Counter, vec![]);
    match decide(&reference, &rules, &p) {
        Decision::Reject { reason, detail } => {
            assert_eq!(reason, Rejection::NotCollector);
            assert_eq!(detail, "fee LP-HOCHIEU-CAPMOI is collected by BN.CA; agency BN.KINHBAC has no registered delegation to issue its receipts (collects_for)");
        }
        other => panic!("{other:?}"),
    }
    // Before the delegation's first day the desk cannot issue the police's receipts.
    let mut p = payment("BN.TTPVHCC", vec![("P-LLTP", FeeKind::Phi, 1, 200_000)], Channel::Counter, vec![]);
    p.paid_at = gmt7(2026, 6, 30, 10, 0, 0);
    match decide(&reference, &rules, &p) {
        Decision::Reject { reason, detail } => {
            assert_eq!(reason, Rejection::NotCollector);
            assert!(detail.contains("is in force from 2026-07-01"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejections_say_precisely_why() {
    let (reference, rules) = load();
    let reason = |p: &Payment| match decide(&reference, &rules, p) {
        Decision::Reject { reason, detail } => (reason, detail),
        other => panic!("{other:?}"),
    };
    let ok = payment("BN.TTPVHCC", vec![("LP-GPLX", FeeKind::LePhi, 1, 135_000)], Channel::FullyOnline, vec![]);
    assert!(matches!(decide(&reference, &rules, &ok), Decision::Issue { .. }));

    let mut p = ok.clone();
    p.lines[0].amount = Vnd::new(115_000).unwrap();
    p.total_paid = p.lines[0].amount;
    let (r, d) = reason(&p);
    assert_eq!(r, Rejection::AmountMismatch);
    assert_eq!(d, "lines[0]: fee LP-GPLX paid 115000 đồng but 135000 đồng is due (no waiver applies)");
    // The same amount assessed while Circular 63 was in force is right.
    p.assessed_at = Some(gmt7(2025, 12, 31, 16, 0, 0));
    assert!(matches!(decide(&reference, &rules, &p), Decision::Issue { .. }));

    let mut p = ok.clone();
    p.agency_code = "XX".into();
    assert_eq!(reason(&p).0, Rejection::UnknownAgency);
    let mut p = ok.clone();
    p.lines[0].fee_code = "NOPE".into();
    assert_eq!(reason(&p).0, Rejection::UnknownFee);
    let mut p = ok.clone();
    p.lines[0].kind = FeeKind::Phi;
    assert_eq!(reason(&p).0, Rejection::KindMismatch);
    let mut p = payment("BN", vec![("P-HOTICH-TRICHLUC", FeeKind::Phi, 1, 8_000)], Channel::Counter, vec![]);
    assert_eq!(
        reason(&p),
        (Rejection::NoSeries, "agency BN has no receipt series for phi (fee P-HOTICH-TRICHLUC)".into())
    );
    p.agency_code = "HD.TTPVHCC".into(); // merged into Hải Phòng on 1 July 2025
    let (r, d) = reason(&p);
    assert_eq!(r, Rejection::UnknownAgency);
    assert!(d.contains("ceased to exist on 2025-06-30"), "{d}");
    // A Hải Dương fee after the merger is no longer in force.
    let mut p = payment("HP.HAIDUONG", vec![("HD-LP-GPXD", FeeKind::LePhi, 1, 75_000)], Channel::Counter, vec![]);
    let (r, d) = reason(&p);
    assert_eq!(r, Rejection::UnknownFee);
    assert!(d.contains("is not in force on 2026-11-26"), "{d}");
    p.lines[0].fee_code = "HP-LP-GPXD".into();
    assert!(matches!(decide(&reference, &rules, &p), Decision::Issue { .. }));
    let mut p = ok;
    p.total_paid = Vnd::new(1).unwrap();
    assert_eq!(reason(&p).0, Rejection::AmountMismatch);
}

#[test]
fn a_fully_waived_payment_uses_no_receipt_number() {
    let (reference, rules) = load();
    let p = payment(
        "BN.KINHBAC",
        vec![("BN-LP-HOTICH-CAICHINH", FeeKind::LePhi, 1, 0)],
        Channel::Counter,
        vec![Category::PoorHousehold],
    );
    match decide(&reference, &rules, &p) {
        Decision::FullyWaived { waived } => {
            assert_eq!(waived[0].base.dong(), 28_000);
            assert_eq!(waived[0].applied.as_ref().unwrap().document_number, "60/2014/QH13");
        }
        other => panic!("{other:?}"),
    }
}

fn arb_category() -> impl Strategy<Value = Category> {
    proptest::sample::select(Category::ALL.to_vec())
}

fn arb_channel() -> impl Strategy<Value = Channel> {
    proptest::sample::select(Channel::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn waivers_stay_within_bounds_are_stable_and_favour_better_conditions(
        fee_idx in 0usize..16,
        agency_idx in 0usize..9,
        qty in 1u32..20,
        channel in arb_channel(),
        cats in proptest::collection::vec(arb_category(), 0..3),
        extra in arb_category(),
        days in 0i64..(365 * 4),
        paid_online in any::<bool>(),
    ) {
        let (reference, rules) = load();
        let fee = reference.fees.values().nth(fee_idx % reference.fees.len()).unwrap();
        let agency = reference.agencies.keys().nth(agency_idx % reference.agencies.len()).unwrap();
        let at = gmt7(2023, 1, 1, 12, 0, 0) + chrono::Duration::days(days);
        let q = LineQuery {
            agency,
            procedure: "1.000000",
            fee,
            quantity: qty,
            channel,
            paid_online,
            categories: &cats,
            identity_level: 0,
            citizen: true,
            at,
        };
        let a = rules.assess_line(&reference, &q).unwrap();
        prop_assert!(a.due <= a.base);
        prop_assert_eq!(a.base.dong(), fee.base_amount.dong() * i64::from(qty));
        prop_assert_eq!(a.applied.is_some(), a.due < a.base);
        if let Some(w) = &a.applied { prop_assert_eq!(w.reduction, a.base - a.due); }
        // Assessing again gives the same answer.
        prop_assert_eq!(&rules.assess_line(&reference, &q).unwrap(), &a);
        // One more beneficiary category never costs more.
        let mut more = cats.clone();
        more.push(extra);
        let q2 = LineQuery { categories: &more, ..q.clone() };
        prop_assert!(rules.assess_line(&reference, &q2).unwrap().due <= a.due);
        // Online never costs more than at the counter, with the sample rules.
        let online = LineQuery { channel: Channel::FullyOnline, ..q.clone() };
        let counter = LineQuery { channel: Channel::Counter, ..q.clone() };
        prop_assert!(rules.assess_line(&reference, &online).unwrap().due <= rules.assess_line(&reference, &counter).unwrap().due);
    }

    #[test]
    fn percentage_cuts_round_per_mode_and_stay_whole(base in 0i64..10_000_000, pct in 1u32..=100) {
        use feepay_domain::waiver::{Effect, Rounding, WaiverRule};
        let (_, rules) = load();
        let mut rule: WaiverRule = rules.rules[0].clone();
        rule.effect = Effect::PercentOff(pct.into());
        let b = Vnd::new(base).unwrap();
        let down = rule.due(b, 1, Rounding::Down);
        let up = rule.due(b, 1, Rounding::Up);
        let half = rule.due(b, 1, Rounding::HalfUp);
        prop_assert!(down <= half && half <= up && up <= b);
        prop_assert!(up.dong() - down.dong() <= 1);
        // Exact value times 100 lies between down and up.
        let exact100 = base * i64::from(100 - pct);
        prop_assert!(down.dong() * 100 <= exact100 && exact100 <= up.dong() * 100);
    }
}

fn date_of_issue() -> chrono::NaiveDate {
    feepay_domain::numbering::date_gmt7(gmt7(2026, 11, 26, 9, 30, 5))
}

fn content(number: u32, previous_hash: &str) -> ReceiptContent {
    let (reference, rules) = load();
    let p = payment("BN.TTPVHCC", vec![("LP-GPLX", FeeKind::LePhi, 1, 135_000)], Channel::Counter, vec![]);
    let Decision::Issue { receipts, .. } = decide(&reference, &rules, &p) else { panic!() };
    let a = &reference.agencies["BN.TTPVHCC"];
    ReceiptContent {
        receipt_id: format!("r-{number}"),
        payment_id: p.payment_id.clone(),
        title: receipts[0].series.form_on(date_of_issue()).unwrap().name.clone(),
        agency: AgencyInfo {
            code: a.code.clone(),
            name: a.name.clone(),
            tax_code: a.tax_code.clone(),
            address: a.address.clone(),
        },
        template: "EBL01".into(),
        symbol: "26TAA".into(),
        number: ReceiptNumber::new(number).unwrap(),
        payer: PayerInfo {
            full_name: "Nguyễn <Thị> & \"Hương\"\r\nBcc: x@y".into(),
            personal_id: "027190001234".into(),
            tax_code: String::new(),
            passport: String::new(),
            address: "Bắc Ninh".into(),
        },
        dossier_code: p.dossier_code.clone(),
        procedure_code: p.procedure_code.clone(),
        lines: receipts[0].lines.clone(),
        total: receipts[0].total,
        provider: "VNPAY".into(),
        provider_reference: "VNP-1".into(),
        payment_method: PaymentMethod::NationalPlatform,
        issued_at: gmt7(2026, 11, 26, 9, 30, 5),
        lookup_code: generate_lookup_code(&mut rand::thread_rng()),
        previous_hash: previous_hash.into(),
        replaces: None,
        delegate: None,
    }
}

/// A stand-in for a key: the domain lays out and digests the document; the signature
/// value's arithmetic and the certificate are the services' (tested there and by xmlsec1).
struct FakeSigner {
    cert: Vec<Vec<u8>>,
}

impl Signer for FakeSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::RsaSha256
    }
    fn certificates(&self) -> &[Vec<u8>] {
        &self.cert
    }
    fn subject(&self) -> &str {
        "CN=Trung tâm Phục vụ hành chính công thành phố Bắc Ninh,UID=MST:2300325950"
    }
    fn fingerprint(&self) -> &str {
        "ab12"
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(data.iter().rev().take(32).copied().collect())
    }
}

#[test]
fn sealed_receipts_chain_and_their_digests_catch_tampering() {
    let key = FakeSigner { cert: vec![b"not a real certificate".to_vec()] };
    let first = content(1, GENESIS_HASH).seal(&key).unwrap();
    let second = content(2, &first.document_hash).seal(&key).unwrap();
    assert!(first.document.contains("<NLap>2026-11-26</NLap>"), "date of issue (GMT+7)");
    assert!(first.document.contains("<TgTienBChu>Một trăm ba mươi lăm nghìn đồng</TgTienBChu>"));
    assert!(first.document.contains("Nguyễn &lt;Thị&gt; &amp; \"Hương\"  Bcc: x@y"), "escaped, no raw CR/LF");
    assert_eq!(first.key_id, "ab12");

    let read = |doc: &str| {
        let parsed = roxmltree::Document::parse(doc).unwrap();
        let checked = xmldsig::check(&parsed).unwrap();
        assert_eq!(checked.signing_time, "2026-11-26T09:30:05", "signing time in GMT+7");
        document::read_fields(checked.data, "ab12".into(), document_hash(doc))
    };
    let v1 = read(&first.document);
    let v2 = read(&second.document);
    assert_eq!((v1.number.as_str(), v2.number.as_str()), ("0000001", "0000002"));
    assert_eq!(v1.document_hash, first.document_hash);
    assert_eq!(v2.previous_hash, v1.document_hash);
    let links: Vec<ChainLink> = [v1, v2]
        .into_iter()
        .map(|v| ChainLink {
            number: v.number.parse().unwrap(),
            previous_hash: v.previous_hash,
            document_hash: v.document_hash,
        })
        .collect();
    assert_eq!(check_chain(&links), Ok(()));

    let tampered = first.document.replace("<TgTien>135000</TgTien>", "<TgTien>35000</TgTien>");
    assert_ne!(tampered, first.document);
    let parsed = roxmltree::Document::parse(&tampered).unwrap();
    assert!(matches!(xmldsig::check(&parsed), Err(VerifyError::Digest(_))));
    let parsed = roxmltree::Document::parse("<x/>").unwrap();
    assert!(matches!(xmldsig::check(&parsed), Err(VerifyError::Malformed(_))));
}

/// A document built to make verification expensive is refused before any digest: more
/// references, transforms, elements or depth than a receipt has.
#[test]
fn documents_beyond_a_receipts_shape_are_refused_before_any_digest() {
    let key = FakeSigner { cert: vec![b"not a real certificate".to_vec()] };
    let sealed = content(1, GENESIS_HASH).seal(&key).unwrap();
    let doc = &sealed.document;
    let refused = |d: &str, what: &str| {
        let parsed = roxmltree::Document::parse(d).unwrap_or_else(|e| panic!("{what}: {e}"));
        match xmldsig::check(&parsed) {
            Err(VerifyError::Malformed(m)) => m,
            other => panic!("{what}: {other:?}"),
        }
    };
    // Thousands of references to the data part: each would canonicalize the whole receipt.
    let one = &doc[doc.find("<Reference URI=\"#").unwrap()..doc.find("</Reference>").unwrap() + "</Reference>".len()];
    let flood = doc.replacen(one, &one.repeat(2600), 1);
    assert!(refused(&flood, "a flood of references").contains("elements"));
    let many = doc.replacen(one, &one.repeat(5), 1);
    assert!(refused(&many, "references").contains("references in SignedInfo"));
    // The same reference twice is refused too, even within the count.
    let twice = doc.replacen(one, &one.repeat(2), 1);
    assert!(refused(&twice, "twice").contains("referenced twice"));
    // Many transforms in one reference.
    let t = "<Transform Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\"></Transform>";
    let transforms = doc.replacen("<Transforms>", &format!("<Transforms>{}", t.repeat(50)), 1);
    assert!(refused(&transforms, "transforms").contains("transforms"));
    // Deep nesting and a flood of elements inside the data part.
    let deep = doc.replacen("</DLBLai>", &format!("{}{}</DLBLai>", "<a>".repeat(40), "</a>".repeat(40)), 1);
    assert!(refused(&deep, "depth").contains("deeper"));
    let wide = doc.replacen("</DLBLai>", &format!("{}</DLBLai>", "<a/>".repeat(20_000)), 1);
    assert!(refused(&wide, "elements").contains("elements"));
    // The receipt itself passes the shape check.
    xmldsig::check_shape(&roxmltree::Document::parse(doc).unwrap()).unwrap();
}
