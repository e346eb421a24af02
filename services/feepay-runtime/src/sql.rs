//! Helpers for the few statements written as SQL (those sea-orm has no form for: locks,
//! analytical reports, server functions; and the benchmark's direct measurements), and
//! [`rows_per_statement`] for chunking multi-row inserts made with sea-orm.

use sea_orm::{DbBackend, Statement, Value};

/// `($1,$2,$3),($4,$5,$6)` for `rows` rows of `cols` columns.
pub fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

/// A Postgres statement with values.
pub fn stmt(sql: impl Into<String>, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// A Postgres statement without values.
pub fn raw(sql: impl Into<String>) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql)
}

/// Largest number of rows per multi-row statement (PostgreSQL allows 65535 parameters).
pub fn rows_per_statement(cols: usize) -> usize {
    (60_000 / cols).max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_left_to_right() {
        assert_eq!(super::placeholders(2, 3), "($1,$2,$3),($4,$5,$6)");
    }
}
