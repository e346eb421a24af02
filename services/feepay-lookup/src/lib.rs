//! feepay-lookup: lets anyone holding a receipt look it up and verify it.
//!
//! Read-only over the receipts and the registered public keys. Pages are in Vietnamese and
//! printable; the JSON API and the documents are described in `openapi.json`.

pub mod app;
pub mod limit;
pub mod page;
pub mod store;
pub mod verify;
