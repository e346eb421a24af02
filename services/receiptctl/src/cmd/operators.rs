//! `receiptctl operators`: who may use the tool, with which role and agency scope.

use crate::access::{self, Role};
use crate::session::{session, Conn};
use crate::table;
use crate::OperatorsCmd;
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::operators::entity as operators;
use feepay_runtime::refdata::tables::agencies;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TryInsertResult,
};
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: &OperatorsCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    match cmd {
        OperatorsCmd::Add { name, role, scope, db_login } => {
            actor.require(Role::Admin, "add operators")?;
            let role = Role::parse(role)?;
            if scope != "*" {
                let known = agencies::Entity::find_by_id(scope.as_str()).count(&db).await? > 0;
                if !known {
                    eprintln!("agency {scope} is not in the reference data; give an agency code or * for all");
                    return Ok(ExitCode::from(2));
                }
            }
            if actor.agencies.is_some() && scope == "*" {
                return Err(access::Denied(
                    "an admin with an agency scope cannot create an all-agency operator".into(),
                )
                .into());
            }
            if scope != "*" {
                actor.check_agency(scope)?;
            }
            if let Some(login) = db_login {
                if let Some(other) = feepay_runtime::operators::bound_to(&db, login).await? {
                    eprintln!("database login {login} is bound to operator {} already", other.name);
                    return Ok(ExitCode::from(2));
                }
                if !access::login_exists(&db, login).await? {
                    eprintln!(
                        "note: there is no PostgreSQL login {login} yet; create it with \
                         CREATE ROLE \"{login}\" LOGIN PASSWORD '…' IN ROLE feepay_operator"
                    );
                }
            }
            let token = access::new_token();
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            let inserted = operators::Entity::insert(operators::ActiveModel {
                name: Set(name.clone()),
                role: Set(role.as_str().to_string()),
                scope: Set(scope.clone()),
                token_sha256: Set(access::token_hash(&token)),
                created_by: Set(actor.name.clone()),
                db_login: Set(db_login.clone()),
                ..Default::default()
            })
            .on_conflict(OnConflict::column(operators::Column::Name).do_nothing().to_owned())
            .do_nothing()
            .exec_without_returning(&txn)
            .await?;
            if !matches!(inserted, TryInsertResult::Inserted(1)) {
                eprintln!("operator {name} exists already; revoke it first or choose another name");
                return Ok(ExitCode::from(2));
            }
            actor
                .record(
                    &txn,
                    "operator.add",
                    name,
                    None,
                    serde_json::json!({"role": role.as_str(), "scope": scope, "db_login": db_login}),
                )
                .await?;
            txn.commit().await?;
            let bound = db_login.as_ref().map(|l| format!(", database login {l}")).unwrap_or_default();
            writeln!(out, "operator {name} added: role {}, scope {scope}{bound}", role.as_str())?;
            writeln!(out, "token (shown once; give it to {name} and keep it secret):\n{token}")?;
        }
        OperatorsCmd::List => {
            actor.require(Role::Admin, "list operators")?;
            let rows = operators::Entity::find().order_by_asc(operators::Column::Name).all(&db).await?;
            let mut t = Vec::new();
            for r in rows {
                t.push(vec![
                    r.name,
                    r.role,
                    r.scope,
                    r.db_login.unwrap_or_else(|| "-".into()),
                    datetime_gmt7(r.created_at),
                    r.created_by,
                    r.revoked_at.map(|t| format!("revoked {}", datetime_gmt7(t))).unwrap_or_else(|| "active".into()),
                ]);
            }
            table::print(out, &["NAME", "ROLE", "SCOPE", "DB LOGIN", "CREATED (GMT+7)", "BY", "STATE"], &t)?;
        }
        OperatorsCmd::Revoke { name, reason } => {
            actor.require(Role::Admin, "revoke operators")?;
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            let target = operators::Entity::find_by_id(name.as_str())
                .filter(operators::Column::RevokedAt.is_null())
                .lock_exclusive()
                .one(&txn)
                .await?;
            let Some(operators::Model { role, scope, .. }) = target else {
                eprintln!("no active operator named {name}");
                return Ok(ExitCode::from(2));
            };
            // An admin acts within its subtree, on operators too.
            let within = match (&actor.agencies, scope.as_str()) {
                (None, _) => true,
                (Some(_), "*") => false,
                (Some(_), s) => actor.covers(s),
            };
            if !within {
                return Err(access::Denied(format!(
                    "{} may not revoke {name}, whose scope ({scope}) is wider than or outside their own",
                    actor.name
                ))
                .into());
            }
            // A scope never loses its last admin: another active admin must cover it.
            if role == "admin" {
                let others: Vec<String> = operators::Entity::find()
                    .select_only()
                    .column(operators::Column::Scope)
                    .filter(operators::Column::Role.eq("admin"))
                    .filter(operators::Column::RevokedAt.is_null())
                    .filter(operators::Column::Name.ne(name.as_str()))
                    .into_tuple()
                    .all(&txn)
                    .await?;
                let mut covered = false;
                for other in others {
                    if other == "*" || (scope != "*" && access::subtree(&db, &other).await?.contains(&scope)) {
                        covered = true;
                        break;
                    }
                }
                if !covered {
                    return Err(access::Denied(format!(
                        "{name} is the last admin of scope {scope}: add another admin for it first"
                    ))
                    .into());
                }
            }
            operators::Entity::update_many()
                .col_expr(operators::Column::RevokedAt, Expr::value(crate::session::now()))
                .filter(operators::Column::Name.eq(name.as_str()))
                .exec(&txn)
                .await?;
            actor
                .record(&txn, "operator.revoke", name, Some(reason), serde_json::json!({"role": role, "scope": scope}))
                .await?;
            txn.commit().await?;
            writeln!(out, "operator {name} revoked")?;
        }
        OperatorsCmd::Whoami => {
            let scope = match &actor.agencies {
                None => "all agencies".to_string(),
                Some(a) => a.iter().cloned().collect::<Vec<_>>().join(", "),
            };
            writeln!(
                out,
                "{} ({}{}), scope: {scope}",
                actor.name,
                actor.role.as_str(),
                if actor.open { ", open local mode: no operators configured" } else { "" }
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
