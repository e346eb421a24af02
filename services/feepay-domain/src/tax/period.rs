//! Reporting periods of the usage report BC26/BLĐT (quarters or months).

use chrono::{Datelike, NaiveDate};

/// A reporting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Quarter { year: i32, quarter: u32 },
    Month { year: i32, month: u32 },
}

impl Period {
    /// The period of this kind that ended last before `today` (GMT+7 date).
    pub fn last_closed(quarterly: bool, today: NaiveDate) -> Period {
        let (y, m) = (today.year(), today.month());
        if quarterly {
            let q = (m - 1) / 3 + 1;
            if q == 1 {
                Period::Quarter { year: y - 1, quarter: 4 }
            } else {
                Period::Quarter { year: y, quarter: q - 1 }
            }
        } else if m == 1 {
            Period::Month { year: y - 1, month: 12 }
        } else {
            Period::Month { year: y, month: m - 1 }
        }
    }

    /// Parses `2026-Q3` or `2026-09`.
    pub fn parse(s: &str) -> Option<Period> {
        let (y, rest) = s.split_once('-')?;
        let year: i32 = y.parse().ok()?;
        if let Some(q) = rest.strip_prefix('Q') {
            let quarter: u32 = q.parse().ok()?;
            (1..=4).contains(&quarter).then_some(Period::Quarter { year, quarter })
        } else {
            let month: u32 = rest.parse().ok()?;
            (1..=12).contains(&month).then_some(Period::Month { year, month })
        }
    }

    /// First and last day.
    pub fn days(self) -> (NaiveDate, NaiveDate) {
        let (y, first_month, months) = match self {
            Period::Quarter { year, quarter } => (year, (quarter - 1) * 3 + 1, 3),
            Period::Month { year, month } => (year, month, 1),
        };
        let from = NaiveDate::from_ymd_opt(y, first_month, 1).expect("valid period");
        let next = if first_month + months > 12 {
            NaiveDate::from_ymd_opt(y + 1, first_month + months - 12, 1)
        } else {
            NaiveDate::from_ymd_opt(y, first_month + months, 1)
        }
        .expect("valid period");
        (from, next.pred_opt().expect("a day before"))
    }

    pub fn year(self) -> i32 {
        match self {
            Period::Quarter { year, .. } | Period::Month { year, .. } => year,
        }
    }

    /// `Q` for a quarter, `T` (tháng) for a month.
    pub(super) fn kind_code(self) -> &'static str {
        match self {
            Period::Quarter { .. } => "Q",
            Period::Month { .. } => "T",
        }
    }

    /// The period as the form writes it: `3/2026`.
    pub(super) fn number_text(self) -> String {
        match self {
            Period::Quarter { year, quarter } => format!("{quarter}/{year}"),
            Period::Month { year, month } => format!("{month}/{year}"),
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Period::Quarter { year, quarter } => write!(f, "{year}-Q{quarter}"),
            Period::Month { year, month } => write!(f, "{year}-{month:02}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_close_and_span_their_days() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(Period::last_closed(true, d("2026-11-28")), Period::Quarter { year: 2026, quarter: 3 });
        assert_eq!(Period::last_closed(true, d("2026-02-01")), Period::Quarter { year: 2025, quarter: 4 });
        assert_eq!(Period::last_closed(false, d("2026-01-15")), Period::Month { year: 2025, month: 12 });
        assert_eq!(Period::Quarter { year: 2026, quarter: 4 }.days(), (d("2026-10-01"), d("2026-12-31")));
        assert_eq!(Period::Month { year: 2024, month: 2 }.days(), (d("2024-02-01"), d("2024-02-29")));
        assert_eq!(Period::parse("2026-Q3"), Some(Period::Quarter { year: 2026, quarter: 3 }));
        assert_eq!(Period::parse("2026-09"), Some(Period::Month { year: 2026, month: 9 }));
        assert_eq!(Period::parse("2026-Q5"), None);
        assert_eq!(Period::Quarter { year: 2026, quarter: 3 }.to_string(), "2026-Q3");
    }
}
