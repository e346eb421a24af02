//! Amounts in Vietnamese words, accounting convention (số tiền bằng chữ).
//!
//! Groups of three digits named nghìn, triệu, tỷ, then repeating (nghìn tỷ, triệu tỷ);
//! "mốt" for a final 1 after a tens digit of 2 or more; "lăm" for a final 5 after any tens
//! digit; "mười" for 10–19; "linh" when the tens digit is 0 and the unit is not; inner
//! groups keep "không trăm"; the first letter is capitalised and the text ends in "đồng".

use crate::money::Vnd;

const DIGITS: [&str; 10] = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"];

/// `Vnd(135_000)` → `"Một trăm ba mươi lăm nghìn đồng"`; zero is `"Không đồng"`.
pub fn amount_in_words(amount: Vnd) -> String {
    let mut text = number_in_words(amount.dong().unsigned_abs());
    text.push_str(" đồng");
    capitalise(&text)
}

/// Lower-case words for a whole number, without the currency.
pub fn number_in_words(n: u64) -> String {
    if n == 0 {
        return DIGITS[0].to_string();
    }
    // Split into groups of three digits, least significant first.
    let mut groups = Vec::new();
    let mut rest = n;
    while rest > 0 {
        groups.push((rest % 1000) as u16);
        rest /= 1000;
    }
    let mut parts: Vec<String> = Vec::new();
    let top = groups.len() - 1;
    for (idx, &g) in groups.iter().enumerate().rev() {
        if g == 0 {
            // Every group carries its full scale ("nghìn tỷ", "tỷ tỷ"), so a zero group is silent.
            continue;
        }
        let full = idx != top; // inner groups read all three digits
        parts.push(group_words(g, full));
        let unit = group_unit(idx);
        if !unit.is_empty() {
            parts.push(unit.to_string());
        }
    }
    parts.join(" ")
}

fn group_unit(idx: usize) -> String {
    if idx == 0 {
        return String::new();
    }
    let base = match idx % 3 {
        1 => "nghìn",
        2 => "triệu",
        _ => "tỷ",
    };
    let mut unit = base.to_string();
    // Every completed block of three groups adds a "tỷ".
    let ty_count = if idx.is_multiple_of(3) { idx / 3 - 1 } else { idx / 3 };
    for _ in 0..ty_count {
        unit.push_str(" tỷ");
    }
    unit
}

fn group_words(g: u16, full: bool) -> String {
    let h = (g / 100) as usize;
    let t = ((g / 10) % 10) as usize;
    let u = (g % 10) as usize;
    let mut w: Vec<&str> = Vec::new();
    if full || h > 0 {
        w.push(DIGITS[h]);
        w.push("trăm");
    }
    match t {
        0 => {
            if u > 0 && (full || h > 0) {
                w.push("linh");
            }
            if u > 0 {
                w.push(DIGITS[u]);
            }
        }
        1 => {
            w.push("mười");
            match u {
                0 => {}
                5 => w.push("lăm"),
                _ => w.push(DIGITS[u]),
            }
        }
        _ => {
            w.push(DIGITS[t]);
            w.push("mươi");
            match u {
                0 => {}
                1 => w.push("mốt"),
                5 => w.push("lăm"),
                _ => w.push(DIGITS[u]),
            }
        }
    }
    w.join(" ")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(n: i64) -> String {
        amount_in_words(Vnd::new(n).unwrap())
    }

    #[test]
    fn reads_receipt_amounts_by_the_accounting_convention() {
        assert_eq!(w(0), "Không đồng");
        assert_eq!(w(5), "Năm đồng");
        assert_eq!(w(10), "Mười đồng");
        assert_eq!(w(15), "Mười lăm đồng");
        assert_eq!(w(21), "Hai mươi mốt đồng");
        assert_eq!(w(25), "Hai mươi lăm đồng");
        assert_eq!(w(11), "Mười một đồng");
        assert_eq!(w(105), "Một trăm linh năm đồng");
        assert_eq!(w(110), "Một trăm mười đồng");
        assert_eq!(w(1_001), "Một nghìn không trăm linh một đồng");
        assert_eq!(w(1_010), "Một nghìn không trăm mười đồng");
        assert_eq!(w(135_000), "Một trăm ba mươi lăm nghìn đồng");
        assert_eq!(w(115_000), "Một trăm mười lăm nghìn đồng");
        assert_eq!(w(50_000), "Năm mươi nghìn đồng");
        assert_eq!(w(1_000_000), "Một triệu đồng");
        assert_eq!(w(1_200_500), "Một triệu hai trăm nghìn năm trăm đồng");
        assert_eq!(w(2_000_015), "Hai triệu không trăm mười lăm đồng");
        assert_eq!(w(1_000_000_000), "Một tỷ đồng");
        assert_eq!(w(1_000_000_000_000), "Một nghìn tỷ đồng");
        assert_eq!(w(1_000_000_000_000_000), "Một triệu tỷ đồng");
        assert_eq!(w(5_000_000_001), "Năm tỷ không trăm linh một đồng");
    }

    #[test]
    fn big_numbers_keep_every_ty() {
        assert_eq!(number_in_words(1_000_000_000_000_000_000), "một tỷ tỷ");
        assert_eq!(number_in_words(2_000_000_000_000_000_005), "hai tỷ tỷ không trăm linh năm");
    }

    /// Parses words back into a number: an independent reading used to check the writer.
    fn parse_back(text: &str) -> u64 {
        let body = text.strip_suffix(" đồng").expect("ends in đồng").to_lowercase();
        let words: Vec<&str> = body.split(' ').collect();
        let digit = |s: &str| -> Option<u64> {
            match s {
                "không" => Some(0),
                "một" | "mốt" => Some(1),
                "hai" => Some(2),
                "ba" => Some(3),
                "bốn" => Some(4),
                "năm" | "lăm" => Some(5),
                "sáu" => Some(6),
                "bảy" => Some(7),
                "tám" => Some(8),
                "chín" => Some(9),
                _ => None,
            }
        };
        let scale = |s: &str| -> Option<u64> {
            match s {
                "nghìn" => Some(1_000),
                "triệu" => Some(1_000_000),
                "tỷ" => Some(1_000_000_000),
                _ => None,
            }
        };
        let (mut total, mut group, mut last) = (0u64, 0u64, 0u64);
        let mut i = 0;
        while i < words.len() {
            let word = words[i];
            if let Some(d) = digit(word) {
                group += d;
                last = d;
            } else if word == "trăm" {
                group += last * 99;
            } else if word == "mươi" {
                group += last * 9;
            } else if word == "mười" {
                group += 10;
            } else if word == "linh" {
            } else if let Some(mut s) = scale(word) {
                while let Some(next) = words.get(i + 1).and_then(|w| scale(w)) {
                    s *= next;
                    i += 1;
                }
                total += group * s;
                group = 0;
            } else {
                panic!("unexpected word {word:?} in {text:?}");
            }
            i += 1;
        }
        total + group
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn words_read_back_to_the_same_amount(n in 0i64..=1_000_000_000_000_000) {
            let text = w(n);
            prop_assert!(text.ends_with(" đồng"));
            prop_assert!(text.chars().next().unwrap().is_uppercase());
            prop_assert!(!text.contains("mười năm"), "{}", text);
            prop_assert!(!text.contains("  "));
            prop_assert_eq!(parse_back(&text), n as u64, "{}", text);
        }
    }
}
