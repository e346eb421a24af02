//! feepay-lookup: lets anyone holding a receipt look it up and verify it.
//!
//! Read-only over the receipts and the registered public keys. Pages are in Vietnamese and
//! printable; the JSON API and the documents are described by the OpenAPI document that
//! `api` generates from its handlers (served at `/openapi.json`, copied in `openapi.json`).

pub mod api;
pub mod app;
pub mod failure;
pub mod limit;
pub mod page;
pub mod settings;
pub mod site;
pub mod store;
pub mod verify;
