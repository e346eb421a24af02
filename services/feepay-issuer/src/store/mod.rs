//! The tables the issuer owns, as sea-orm entities: it alone writes them (the roles of
//! migration 0010 say so too). Other processes read receipts through read models of their
//! own (the lookup's `store`, receiptctl's `read`), which name only the columns they show.
//!
//! Hand-written SQL is left only where sea-orm has no form for it, each with its reason:
//! the counters' `FOR UPDATE` in key order (`numbering`) and the self-check's join.

pub mod counters;
pub mod notices;
pub mod payments;
pub mod receipts;
pub mod refunds;
