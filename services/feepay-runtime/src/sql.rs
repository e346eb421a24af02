//! Helpers for the few statements written as SQL (those sea-orm has no form for: locks,
//! analytical reports, server functions; and the benchmark's direct measurements), and
//! [`rows_per_statement`] for chunking multi-row inserts made with sea-orm.

use sea_orm::sea_query::extension::postgres::PgFunc;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ColumnTrait, DbBackend, Statement, Value};

/// `column = 'text'`, the constant written into the statement ([`literal`]): the filter of
/// a partial index.
pub fn equals_constant(column: impl ColumnTrait, text: &'static str) -> SimpleExpr {
    Expr::col(column.as_column_ref()).eq(literal(text))
}

/// A receipt named by an operator: its id (when the text is a UUID) or its lookup code.
pub fn id_or_code(id: impl ColumnTrait, code: impl ColumnTrait, named: &str) -> sea_orm::Condition {
    let by_code = code.eq(named);
    match named.parse::<uuid::Uuid>() {
        Ok(uuid) => sea_orm::Condition::any().add(id.eq(uuid)).add(by_code),
        Err(_) => sea_orm::Condition::all().add(by_code),
    }
}

/// `column = ANY($1)`: the values go as one array parameter, so the statement's text (and
/// its prepared plan, cached per connection) is the same whatever their number. An
/// `IN ($1, …, $n)` list is a new statement to parse and plan for every length, which the
/// benchmark showed on the hot paths (the outbox relay, the sender, refunds per batch).
pub fn any_of(column: impl ColumnTrait, values: impl Into<Value>) -> SimpleExpr {
    Expr::col(column.as_column_ref()).eq(PgFunc::any(Expr::val(values.into())))
}

/// A constant written into the statement instead of bound as a parameter, for a filter a
/// partial index is defined by (`WHERE status = 'queued'`, say). PostgreSQL can only use
/// such an index when it sees the constant: with a parameter, the generic plan of a
/// prepared statement scans the whole table. The benchmark found exactly that on the
/// notifier's claim of due deliveries. Only for constants of the code (`&'static str`).
pub fn literal(text: &'static str) -> SimpleExpr {
    debug_assert!(!text.contains('\''), "a plain constant");
    Expr::cust(format!("'{text}'"))
}

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
    fn a_literal_is_written_into_the_statement() {
        use sea_orm::sea_query::{Alias, Expr, PostgresQueryBuilder, Query};
        let (sql, values) = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("deliveries"))
            .and_where(Expr::col(Alias::new("status")).eq(super::literal("queued")))
            .build(PostgresQueryBuilder);
        assert!(sql.ends_with(r#"WHERE "status" = ('queued')"#), "{sql}");
        assert!(values.0.is_empty());
    }

    #[test]
    fn any_of_is_one_array_parameter() {
        use sea_orm::{EntityTrait, QueryFilter, QueryTrait};
        let q = crate::outbox::entity::Entity::delete_many()
            .filter(super::any_of(crate::outbox::entity::Column::Id, vec![1i64, 2, 3]))
            .build(sea_orm::DbBackend::Postgres);
        assert!(q.sql.ends_with(r#"WHERE "outbox"."id" = ANY($1)"#), "{}", q.sql);
        assert_eq!(q.values.map(|v| v.0.len()), Some(1));
    }

    #[test]
    fn placeholders_number_left_to_right() {
        assert_eq!(super::placeholders(2, 3), "($1,$2,$3),($4,$5,$6)");
    }
}
