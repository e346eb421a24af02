use super::*;

const AGENCIES: &str = r#"
[[form]]
template = "EBL01"
kind = 1
name = "Biên lai thu phí, lệ phí không có mệnh giá"
symbol = "{yy}T"
transmission = "usage_report"
errors = "cancel_or_replace"
basis = "Thông tư 32/2025/TT-BTC"
valid_from = "2025-06-01"
valid_until = "2026-06-30"

[[form]]
template = "EBL01"
kind = 1
name = "Biên lai thu phí, lệ phí không có mệnh giá"
symbol = "{yy}T{letters}"
letters = { alphabet = "ABCDEGHKLMNPQRSTUVXY", min = 2, max = 2 }
transmission = "daily_summary"
errors = "notify_or_replace"
registration_required = true
basis = "Thông tư 91/2026/TT-BTC"
valid_from = "2026-07-01"

[[agency]]
code = "BN"
name = "Trung tâm Phục vụ hành chính công thành phố Bắc Ninh"
former_names = [{ name = "Trung tâm Phục vụ hành chính công tỉnh Bắc Ninh", until = "2026-09-19" }]
tax_code = "0100100079"
address = "Bắc Ninh"
collects_for = [{ principal = "BN-CA", fees = ["LP-HC"], template = "EBL01", letters = "CA", numbers = { from = 500000, to = 599999 }, notified_on = "2026-06-20", valid_from = "2026-07-01", basis = "Văn bản ủy nhiệm số 1" }]

[[agency]]
code = "BN-TH"
name = "UBND phường Tiền Hải"
tax_code = "0100100079"
address = "Bắc Ninh"
parent = "BN"

[[agency]]
code = "BN-CA"
name = "Công an"
tax_code = "0100100079"
address = "Bắc Ninh"
parent = "BN"

[[series]]
agency = "BN"
form = "EBL01"
letters = "AA"
kinds = ["phi", "le_phi"]

[[series]]
agency = "BN-CA"
form = "EBL01"
letters = "CA"
kinds = ["le_phi"]
"#;
const FEES: &str = r#"
[[fee]]
code = "LP-HOTICH"
name = "Lệ phí hộ tịch"
kind = "le_phi"
base_amount = 8000
authority = "HDND-BN"
basis = "Nghị quyết HĐND"
valid_from = "2025-07-01"

[[fee]]
code = "LP-HC"
name = "Lệ phí hộ chiếu"
kind = "le_phi"
base_amount = 200000
authority = "BTC"
basis = "Thông tư"
valid_from = "2025-07-01"
collector = "BN-CA"
"#;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[test]
fn parses_a_valid_tree() {
    let data = ReferenceData::parse("a.toml", AGENCIES, "f.toml", FEES).unwrap();
    assert!(data.is_within("BN-TH", "BN"));
    assert!(!data.is_within("BN", "BN-TH"));
    let s = data.series_for("BN", FeeKind::LePhi).unwrap();
    assert_eq!(s.symbol_on(d("2026-06-30")).as_deref(), Some("26T"), "Circular 32's symbol until 30 June 2026");
    assert_eq!(s.symbol_on(d("2026-07-01")).as_deref(), Some("26TAA"), "Circular 91's from 1 July 2026");
    assert_eq!(s.symbol_on(d("2027-01-01")).as_deref(), Some("27TAA"));
    assert_eq!(s.form_on(d("2026-07-01")).unwrap().kind, 1);
    assert!(data.series_for("BN-TH", FeeKind::LePhi).is_none());
    assert_eq!(data.subtree("BN").len(), 3);
    let police = data.series_named("BN-CA", "EBL01", "CA").unwrap();
    assert_eq!(police.range_for(Some("BN")), Some(NumberRange { from: 500000, to: 599999 }));
    assert_eq!(police.own_range(), Some(NumberRange { from: 1, to: 499999 }));
    assert_eq!(police.range_for(Some("BN-TH")), None);
    let bn = &data.agencies["BN"];
    assert_eq!(bn.name_on(d("2026-09-19")), "Trung tâm Phục vụ hành chính công tỉnh Bắc Ninh");
    assert_eq!(bn.name_on(d("2026-09-20")), "Trung tâm Phục vụ hành chính công thành phố Bắc Ninh");
    assert_eq!(
        data.series_of_receipt("BN", "EBL01", "26T", d("2026-05-02")).map(|s| s.letters.as_str()),
        Some("AA"),
        "a receipt of the old shape still finds its series"
    );
}

#[test]
fn number_ranges_count_what_is_left() {
    let r = NumberRange { from: 500, to: 502 };
    assert_eq!(r.next_after(0).unwrap().value(), 500);
    assert_eq!(r.next_after(501).unwrap().value(), 502);
    assert!(r.next_after(502).is_none());
    assert_eq!(r.left_after(0), 3);
    assert_eq!(r.left_after(501), 1);
    assert_eq!(NumberRange::WHOLE.next_after(0).unwrap().value(), 1);
    assert!(r.overlaps(&NumberRange { from: 502, to: 600 }));
    assert!(!r.overlaps(&NumberRange { from: 503, to: 600 }));
}

#[test]
fn delegations_follow_decree_254_article_25() {
    let parse = |a: &str| ReferenceData::parse("a.toml", a, "f.toml", FEES).map(|_| ()).unwrap_err().to_string();
    let late = AGENCIES.replace("notified_on = \"2026-06-20\"", "notified_on = \"2026-06-29\"");
    assert!(parse(&late).contains("at least 3 days before the delegate issues (Decree 254/2026/NĐ-CP Art. 25.1)"));
    let identity =
        AGENCIES.replace("fees = [\"LP-HC\"], template", "fees = [\"LP-HC\"], mode = \"identity\", template");
    assert!(parse(&identity).contains("`mode` is gone"));
    let whole = AGENCIES.replace("numbers = { from = 500000, to = 599999 }", "numbers = { from = 0, to = 5 }");
    assert!(parse(&whole).contains("numbers must run from 1"));
    let other_series = AGENCIES.replace("letters = \"CA\", numbers", "letters = \"CB\", numbers");
    assert!(parse(&other_series).contains("names series EBL01 CB of BN-CA, which is not defined"));
    let second = AGENCIES.replace(
        "parent = \"BN\"\n\n[[agency]]\ncode = \"BN-CA\"",
        "parent = \"BN\"\ncollects_for = [{ principal = \"BN-CA\", fees = [\"LP-HC\"], template = \"EBL01\", letters = \"CA\", numbers = { from = 599000, to = 700000 }, notified_on = \"2026-06-20\", valid_from = \"2026-07-01\", basis = \"x\" }]\n\n[[agency]]\ncode = \"BN-CA\"",
    );
    assert!(parse(&second).contains("overlap those delegated to BN"), "{}", parse(&second));
}

#[test]
fn reports_every_error_with_file_and_line() {
    let bad = AGENCIES
        .replace("parent = \"BN\"\n\n[[agency]]\ncode = \"BN-CA\"", "parent = \"XX\"\n\n[[agency]]\ncode = \"BN-CA\"")
        .replace("letters = \"AA\"", "letters = \"AF\"")
        .replace("symbol = \"{yy}T\"", "symbol = \"T{yy}x\"");
    let errs = ReferenceData::parse("a.toml", &bad, "f.toml", &FEES.replace("8000", "-5")).unwrap_err();
    let text = errs.to_string();
    assert!(text.contains("a.toml:33: agency BN-TH: parent XX is not defined"), "{text}");
    assert!(
        text.contains("a.toml:2: form EBL01: symbol rule \"T{yy}x\": \"x\" may only hold A-Z, 0-9 and -"),
        "{text}"
    );
    assert!(
        text.contains(
            "a.toml:47: series of BN: form EBL01 from 2026-07-01 ({yy}T{letters}): letters \"AF\": 'F' is not one of"
        ),
        "{text}"
    );
    assert!(text.contains("f.toml:2: fee LP-HOTICH: base amount: amount \"-5\" is negative"), "{text}");
    let overlap = AGENCIES.replace("valid_until = \"2026-06-30\"", "valid_until = \"2026-07-01\"");
    let text = ReferenceData::parse("a.toml", &overlap, "f.toml", FEES).unwrap_err().to_string();
    assert!(text.contains("the version from 2026-07-01 overlaps the one from 2025-06-01"), "{text}");
    let tiers = FEES.replace("base_amount = 8000", "base_amount = 8000\ntiers = [{ from = 1, amount = 1 }]\ncap = 10");
    let text = ReferenceData::parse("a.toml", AGENCIES, "f.toml", &tiers).unwrap_err().to_string();
    assert!(text.contains("fee LP-HOTICH: tiers must start after unit 1 and rise (tier from 1)"), "{text}");
    assert!(text.contains("fee LP-HOTICH: cap 10 is below the base amount 8000"), "{text}");
    let collector =
        FEES.replace("valid_from = \"2025-07-01\"\n\n", "collector = \"CA\"\nvalid_from = \"2025-07-01\"\n\n");
    let text = ReferenceData::parse("a.toml", AGENCIES, "f.toml", &collector).unwrap_err().to_string();
    assert!(text.contains("f.toml:2: fee LP-HOTICH: collector CA is not defined"), "{text}");
}

#[test]
fn syntax_errors_name_their_line() {
    let errs = ReferenceData::parse("a.toml", "[[agency]]\ncode = \n", "f.toml", "").unwrap_err();
    assert_eq!(errs.0[0].file, "a.toml");
    assert_eq!(errs.0[0].line, 2);
}
