//! How a refund falls on a payment's receipts: which receipts it touches, what it gives back
//! on each and what remains.
//!
//! Since 1 July 2026 a refund of a fee rightly collected leaves its receipts as they are: a
//! receipt records the collection as it happened (Decree 254/2026/NĐ-CP Art. 23.2: "Nội
//! dung trên biên lai phải đúng với nội dung nghiệp vụ kinh tế phát sinh"), Circular
//! 91/2026/TT-BTC Art. 20 corrects receipts only for errors (by notice or replacement) and
//! has no cancellation, and no receipt adjustment exists for receipts (Art. 10's adjusting
//! invoices are for invoices). The refund is recorded against the receipts it falls on
//! ([`Allocation::refunded`]); the money goes back under the rules on refunds of budget
//! revenue (the tax administration law's refund procedure: its forms were not read here,
//! see deploy/reference/UNCONFIRMED.md). Before 1 July 2026 a touched receipt was cancelled
//! and, for a partial refund, replaced for what remained ([`Allocation::remaining`]).

use crate::money::Vnd;
use crate::waiver::LineAssessment;
use std::collections::BTreeSet;

/// The refund's effect on a payment's valid receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// For each receipt (same order as given), its lines after the refund; a line refunded
    /// in full is gone.
    pub remaining: Vec<Vec<LineAssessment>>,
    /// Receipts the refund touches (indices).
    pub touched: BTreeSet<usize>,
    /// For each receipt, what the refund gives back on it, per fee code (in line order).
    pub refunded: Vec<Vec<(String, Vnd)>>,
}

impl Allocation {
    /// The amount left on a touched receipt (0: cancelled without replacement).
    pub fn left_on(&self, receipt: usize) -> Vnd {
        self.remaining[receipt].iter().map(|l| l.due).sum()
    }
}

/// A refund asks for more on a fee than was collected on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refund of {amount} đồng on fee {fee} exceeds what was collected on it by {excess} đồng")]
pub struct OverRefund {
    pub fee: String,
    pub amount: Vnd,
    pub excess: Vnd,
}

/// Allocates a refund over the payment's receipts (each a list of collected lines).
/// `refund` lists `(fee code, amount)`; empty means the whole payment. Each fee's amount is
/// taken from its lines in receipt order, then line order.
pub fn allocate(receipts: &[Vec<LineAssessment>], refund: &[(String, Vnd)]) -> Result<Allocation, OverRefund> {
    let mut remaining: Vec<Vec<LineAssessment>> = receipts.to_vec();
    let mut touched = BTreeSet::new();
    let mut refunded: Vec<Vec<(String, Vnd)>> = vec![Vec::new(); receipts.len()];
    let give_back = |refunded: &mut Vec<Vec<(String, Vnd)>>, ri: usize, fee: &str, amount: Vnd| match refunded[ri]
        .iter_mut()
        .find(|(f, _)| f == fee)
    {
        Some((_, a)) => *a = *a + amount,
        None => refunded[ri].push((fee.to_string(), amount)),
    };
    if refund.is_empty() {
        touched.extend(0..receipts.len());
        for (ri, lines) in remaining.iter_mut().enumerate() {
            for l in lines.iter() {
                give_back(&mut refunded, ri, &l.fee_code, l.due);
            }
            lines.clear();
        }
        return Ok(Allocation { remaining, touched, refunded });
    }
    for (fee, amount) in refund {
        let mut left = *amount;
        for (ri, lines) in remaining.iter_mut().enumerate() {
            for l in lines.iter_mut().filter(|l| &l.fee_code == fee) {
                let take = if l.due < left { l.due } else { left };
                if take > Vnd::ZERO {
                    l.due = l.due - take;
                    left = left - take;
                    touched.insert(ri);
                    give_back(&mut refunded, ri, fee, take);
                }
            }
        }
        if left > Vnd::ZERO {
            return Err(OverRefund { fee: fee.clone(), amount: *amount, excess: left });
        }
    }
    for lines in remaining.iter_mut() {
        lines.retain(|l| l.due > Vnd::ZERO);
    }
    Ok(Allocation { remaining, touched, refunded })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::FeeKind;
    use proptest::prelude::*;

    fn line(fee: &str, due: i64) -> LineAssessment {
        LineAssessment {
            fee_code: fee.into(),
            fee_name: fee.into(),
            kind: FeeKind::LePhi,
            quantity: 1,
            base: Vnd::new(due).unwrap(),
            due: Vnd::new(due).unwrap(),
            applied: None,
            candidates: Vec::new(),
        }
    }

    #[test]
    fn a_whole_refund_cancels_every_receipt() {
        let a = allocate(&[vec![line("A", 100)], vec![line("B", 50)]], &[]).unwrap();
        assert_eq!(a.touched, BTreeSet::from([0, 1]));
        assert_eq!(a.left_on(0), Vnd::ZERO);
        assert_eq!(a.left_on(1), Vnd::ZERO);
    }

    #[test]
    fn a_partial_refund_leaves_the_rest() {
        let r = [vec![line("A", 100), line("B", 30)], vec![line("C", 50)]];
        let a = allocate(&r, &[("A".into(), Vnd::new(40).unwrap())]).unwrap();
        assert_eq!(a.touched, BTreeSet::from([0]));
        assert_eq!(a.left_on(0), Vnd::new(90).unwrap());
        assert_eq!(a.remaining[1], r[1]);
        let full = allocate(&r, &[("A".into(), Vnd::new(100).unwrap())]).unwrap();
        assert_eq!(full.remaining[0], vec![line("B", 30)], "a line refunded in full is gone");
    }

    #[test]
    fn more_than_collected_is_refused() {
        let e = allocate(&[vec![line("A", 100)]], &[("A".into(), Vnd::new(150).unwrap())]).unwrap_err();
        assert_eq!(e.excess, Vnd::new(50).unwrap());
        assert!(allocate(&[vec![line("A", 100)]], &[("X".into(), Vnd::new(1).unwrap())]).is_err());
    }

    proptest! {
        /// Money is conserved: what remains plus what was refunded is what was collected,
        /// nothing goes negative, and only receipts that lost something are touched.
        #[test]
        fn refunds_conserve_money(
            dues in proptest::collection::vec(proptest::collection::vec((0usize..3, 1i64..1_000_000), 1..4), 1..4),
            asks in proptest::collection::vec((0usize..3, 1i64..1_500_000), 0..4),
        ) {
            let fees = ["A", "B", "C"];
            let receipts: Vec<Vec<LineAssessment>> =
                dues.iter().map(|r| r.iter().map(|(f, d)| line(fees[*f], *d)).collect()).collect();
            let refund: Vec<(String, Vnd)> = asks.iter().map(|(f, a)| (fees[*f].to_string(), Vnd::new(*a).unwrap())).collect();
            let before: i64 = receipts.iter().flatten().map(|l| l.due.dong()).sum();
            match allocate(&receipts, &refund) {
                Ok(a) => {
                    let after: i64 = a.remaining.iter().flatten().map(|l| l.due.dong()).sum();
                    let asked: i64 = if refund.is_empty() { before } else { refund.iter().map(|(_, v)| v.dong()).sum() };
                    prop_assert_eq!(before - after, asked);
                    prop_assert!(a.remaining.iter().flatten().all(|l| l.due > Vnd::ZERO));
                    for (i, r) in receipts.iter().enumerate() {
                        let lost = r.iter().map(|l| l.due.dong()).sum::<i64>() != a.left_on(i).dong();
                        prop_assert_eq!(lost, a.touched.contains(&i));
                        // What is given back on a receipt is what it lost.
                        let given: i64 = a.refunded[i].iter().map(|(_, v)| v.dong()).sum();
                        prop_assert_eq!(given, r.iter().map(|l| l.due.dong()).sum::<i64>() - a.left_on(i).dong());
                    }
                }
                Err(e) => {
                    let collected: i64 = receipts.iter().flatten().filter(|l| l.fee_code == e.fee).map(|l| l.due.dong()).sum();
                    let asked: i64 = refund.iter().filter(|(f, _)| *f == e.fee).map(|(_, v)| v.dong()).sum();
                    prop_assert!(asked > collected, "refused although {} of {} was asked", asked, collected);
                }
            }
        }
    }
}
