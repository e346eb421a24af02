//! `receiptctl settings`: what each FEEPAY_* variable is set to here, from the one
//! declaration of the settings (`feepay_runtime::settings::catalog`).

use feepay_runtime::settings::{self, catalog};
use std::io::Write;
use std::process::ExitCode;

pub fn run(out: &mut impl Write, markdown: bool) -> anyhow::Result<ExitCode> {
    if markdown {
        write!(out, "{}", catalog::markdown_table())?;
        return Ok(ExitCode::SUCCESS);
    }
    for var in catalog::ALL {
        let set = settings::opt(var);
        let shown = match (&set, var.default) {
            // Secrets and URLs that may carry a password are never printed.
            (Some(_), _) if is_secret(var.name) => "(set)".to_string(),
            (Some(v), _) => v.clone(),
            (None, catalog::DefaultValue::Value(d)) => format!("{d} (default)"),
            (None, catalog::DefaultValue::Described(d)) => format!("{d} (default)"),
            (None, _) => "(unset)".to_string(),
        };
        writeln!(out, "{:<38} {shown}", var.name)?;
    }
    let unknown = settings::undeclared_in_env();
    for name in &unknown {
        eprintln!("warning: no setting reads {name}: misspelt or left over?");
    }
    Ok(ExitCode::SUCCESS)
}

fn is_secret(name: &str) -> bool {
    name.contains("PASSWORD") || name.contains("TOKEN") || name == catalog::DATABASE_URL.name
}
