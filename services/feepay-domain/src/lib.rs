//! The rules of feepay, with no I/O: money in whole đồng, amounts in Vietnamese words,
//! identifiers, reference data, fee waivers, the issuing decision, receipt numbering and
//! the signed receipt document.
//!
//! Nothing here touches the network, the database or the clock: services pass time, data
//! and randomness in. Everything is deterministic and unit-tested.

mod canonical;
pub mod correction;
pub mod forms;
pub mod ids;
pub mod money;
pub mod numbering;
pub mod payment;
pub mod receipt;
pub mod reference;
pub mod refund;
pub mod tax;
pub mod waiver;
pub mod words;

pub use money::Vnd;
