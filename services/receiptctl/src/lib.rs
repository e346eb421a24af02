//! `receiptctl`: the operators' command line.
//!
//! Exit codes: 0 success, 1 operational error (database unreachable, ...), 2 invalid
//! input (bad reference files, unknown agency, ...), 3 a check found a defect (audit).

#![allow(clippy::print_stdout)]

pub mod access;
mod cli;
mod cmd;
pub mod demo;
pub mod dlq;
pub mod keys;
pub mod parked;
pub mod reports;
mod session;
pub mod table;
pub mod tables;
pub mod tax;

pub use cli::*;

use std::process::ExitCode;

/// Runs a command. Exit code 4 when the operator is not allowed to do it.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cmd::run(cli).await {
        Err(e) if e.downcast_ref::<access::Denied>().is_some() => {
            eprintln!("not permitted: {e}");
            Ok(ExitCode::from(4))
        }
        other => other,
    }
}
