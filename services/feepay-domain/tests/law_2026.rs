//! Table tests of the law in force in late 2026, each case from the article it names, over
//! the sample reference data in `deploy/reference/`. Instants are GMT+7.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use feepay_domain::forms::{ErrorRule, Transmission};
use feepay_domain::numbering::date_gmt7;
use feepay_domain::reference::ReferenceData;
use feepay_domain::waiver::{Channel, LineQuery, RuleSet};

const AGENCIES: &str = include_str!("../../../deploy/reference/agencies.toml");
const FEES: &str = include_str!("../../../deploy/reference/fees.toml");
const WAIVERS: &str = include_str!("../../../deploy/reference/waivers.toml");

fn load() -> (ReferenceData, RuleSet) {
    let reference = ReferenceData::parse("agencies.toml", AGENCIES, "fees.toml", FEES).expect("valid");
    let rules = RuleSet::parse("waivers.toml", WAIVERS, &reference).expect("valid");
    (reference, rules)
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    feepay_domain::numbering::gmt7().with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// What a payer owes for one unit of `fee` at `agency` at the instant, and the rule applied.
fn due(
    agency: &str,
    fee: &str,
    channel: Channel,
    level: u8,
    citizen: bool,
    when: DateTime<Utc>,
) -> (i64, Option<String>) {
    let (reference, rules) = load();
    let q = LineQuery {
        agency,
        procedure: "1.000000",
        fee: &reference.fees[fee],
        quantity: 1,
        channel,
        paid_online: true,
        categories: &[],
        identity_level: level,
        citizen,
        at: when,
    };
    let a = rules.assess_line(&reference, &q).unwrap();
    (a.due.dong(), a.applied.map(|r| r.rule_id))
}

/// Circular 91/2026/TT-BTC Appendix II.2.b: from 1 July 2026 every symbol is two digits of
/// the year, T, and two of the twenty letters; before, the symbol of Circular 32 (26T).
#[test]
fn every_series_gets_the_symbol_of_circular_91_from_1_july_2026() {
    let (reference, _) = load();
    let letters = "ABCDEGHKLMNPQRSTUVXY";
    for s in &reference.series {
        let agency = &reference.agencies[&s.agency];
        if agency.exists_on(day(2026, 7, 1)) {
            let symbol = s.symbol_on(day(2026, 7, 1)).expect("a form in force");
            let c: Vec<char> = symbol.chars().collect();
            assert_eq!(c.len(), 5, "{symbol}");
            assert_eq!((&symbol[..3], letters.contains(c[3]), letters.contains(c[4])), ("26T", true, true), "{symbol}");
        }
        assert_eq!(s.symbol_on(day(2026, 6, 30)).as_deref(), Some("26T"), "{} before 1 July 2026", s.agency);
    }
    let f = reference.form_on("EBL01", day(2026, 7, 1)).unwrap();
    assert_eq!(
        (f.transmission, f.errors, f.registration_required),
        (Transmission::DailySummary, ErrorRule::NotifyOrReplace, true)
    );
    let old = reference.form_on("EBL01", day(2026, 6, 30)).unwrap();
    assert_eq!((old.transmission, old.errors), (Transmission::UsageReport, ErrorRule::CancelOrReplace));
    assert_eq!(reference.form_on("EBL02", day(2026, 7, 1)).unwrap().kind, 2);
}

/// Decree 254/2026/NĐ-CP Art. 23.2.c: numbering restarts on 1 January, with the new year's
/// symbol; the instant is read in GMT+7.
#[test]
fn the_year_and_its_symbol_turn_at_midnight_in_vietnam() {
    let (reference, _) = load();
    let s = reference.series_named("BN.TTPVHCC", "EBL01", "AA").unwrap();
    let last = date_gmt7(at(2026, 12, 31, 23, 59));
    let first = date_gmt7(at(2027, 1, 1, 0, 1));
    assert_eq!(s.symbol_on(last).as_deref(), Some("26TAA"));
    assert_eq!(s.symbol_on(first).as_deref(), Some("27TAA"));
    // 31 December 2026 17:00 UTC is already 1 January 2027 in Hà Nội.
    assert_eq!(date_gmt7(Utc.with_ymd_and_hms(2026, 12, 31, 17, 0, 0).unwrap()), day(2027, 1, 1));
}

/// Circular 64/2025/TT-BTC halves passports until 31 December 2026 and ends by itself at
/// midnight GMT+7; Circular 117/2026/TT-BTC (15 August 2026 – 28 February 2027) exempts a
/// citizen with a level-2 identity account, and its Art. 2.2 gives the highest incentive.
#[test]
fn passports_under_circulars_64_and_117_at_their_edges() {
    let passport = "LP-HOCHIEU-CAPMOI";
    let counter = Channel::Counter;
    assert_eq!(
        due("BN.TTPVHCC", passport, counter, 1, true, at(2026, 12, 31, 23, 59)),
        (100_000, Some("tt64-2025-hochieu".into()))
    );
    assert_eq!(due("BN.TTPVHCC", passport, counter, 1, true, at(2027, 1, 1, 0, 1)), (200_000, None));
    // Level 2: the exemption prevails over the 50% on both sides of midnight.
    assert_eq!(
        due("BN.TTPVHCC", passport, counter, 2, true, at(2026, 12, 31, 23, 59)),
        (0, Some("tt117-2026-hochieu".into()))
    );
    assert_eq!(
        due("BN.TTPVHCC", passport, counter, 2, true, at(2027, 1, 1, 0, 1)),
        (0, Some("tt117-2026-hochieu".into()))
    );
    // Circular 117's window, both ends inclusive.
    assert_eq!(
        due("BN.TTPVHCC", passport, counter, 2, true, at(2026, 8, 14, 23, 59)).1.as_deref(),
        Some("tt64-2025-hochieu")
    );
    assert_eq!(due("BN.TTPVHCC", passport, counter, 2, true, at(2026, 8, 15, 0, 0)).0, 0);
    assert_eq!(due("BN.TTPVHCC", passport, counter, 2, true, at(2027, 2, 28, 23, 59)).0, 0);
    assert_eq!(due("BN.TTPVHCC", passport, counter, 2, true, at(2027, 3, 1, 0, 0)), (200_000, None));
    // Only Vietnamese citizens (Art. 1): a payer identified by a passport pays.
    assert_eq!(
        due("BN.TTPVHCC", passport, counter, 2, false, at(2026, 12, 2, 9, 0)).1.as_deref(),
        Some("tt64-2025-hochieu")
    );
}

/// Circular 117/2026/TT-BTC Art. 1.2–1.6: the other fees it waives for a level-2 citizen.
#[test]
fn circular_117_waives_its_list_for_level_2_citizens() {
    let when = at(2026, 12, 2, 9, 0);
    for (fee, rule) in [
        ("LP-CANCUOC-DOI", "tt117-2026-cancuoc"),
        ("LP-CANCUOC-LAI", "tt117-2026-cancuoc"),
        ("P-LLTP", "tt117-2026-lltp"),
        ("LP-GPLX-DOI", "tt117-2026-gplx"),
        ("P-HOTICH-TRICHLUC", "tt117-2026-hotich"),
    ] {
        assert_eq!(due("BN.TTPVHCC", fee, Channel::FullyOnline, 2, true, when), (0, Some(rule.into())), "{fee}");
        assert_ne!(due("BN.TTPVHCC", fee, Channel::FullyOnline, 1, true, when).1.as_deref(), Some(rule), "{fee}");
    }
    // A first driving licence is not an exchange or reissue (Art. 1.6).
    assert_eq!(due("BN.TTPVHCC", "LP-GPLX", Channel::FullyOnline, 2, true, when), (135_000, None));
}

/// Hải Phòng Resolution 23/2026/NQ-HĐND: 0 đồng online from 8 August 2026; before it, in the
/// former Hải Dương area, Resolution 07/2025/NQ-HĐND (repealed by Art. 3.2).
#[test]
fn hai_phong_resolution_23_from_8_august_2026() {
    let online = Channel::FullyOnline;
    assert_eq!(due("HP.HONGBANG", "HP-LP-GPXD", online, 0, true, at(2026, 8, 7, 23, 59)), (75_000, None));
    assert_eq!(
        due("HP.HONGBANG", "HP-LP-GPXD", online, 0, true, at(2026, 8, 8, 0, 0)),
        (0, Some("hp-nq23-2026-online-0".into()))
    );
    assert_eq!(due("HP.HONGBANG", "HP-LP-GPXD", Channel::PartlyOnline, 0, true, at(2026, 12, 2, 9, 0)).0, 0);
    assert_eq!(due("HP.HONGBANG", "HP-LP-GPXD", Channel::Counter, 0, true, at(2026, 12, 2, 9, 0)), (75_000, None));
    assert_eq!(
        due("HP.HAIDUONG", "HP-LP-GPXD", online, 0, true, at(2026, 8, 7, 23, 59)),
        (0, Some("hd-nq07-2025-online-0".into()))
    );
    assert_eq!(
        due("HP.HAIDUONG", "HP-LP-GPXD", online, 0, true, at(2026, 8, 8, 0, 0)),
        (0, Some("hp-nq23-2026-online-0".into()))
    );
    // Business registration of households is not in Resolution 23's list.
    assert_eq!(due("HP.HONGBANG", "HP-LP-DKKD-HKD", online, 0, true, at(2026, 12, 2, 9, 0)), (100_000, None));
}

/// Agencies' names are dated: Bắc Ninh became a centrally governed city on 20 September 2026.
#[test]
fn names_are_those_of_the_day() {
    let (reference, _) = load();
    let centre = &reference.agencies["BN.TTPVHCC"];
    assert_eq!(centre.name_on(day(2026, 9, 19)), "Trung tâm Phục vụ hành chính công tỉnh Bắc Ninh");
    assert_eq!(centre.name_on(day(2026, 9, 20)), "Trung tâm Phục vụ hành chính công thành phố Bắc Ninh");
}
