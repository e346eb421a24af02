//! `receiptctl operators`: who may use the tool, with which role and agency scope.

use crate::access::{self, Role};
use crate::session::{session, Conn};
use crate::table;
use crate::OperatorsCmd;
use chrono::{DateTime, Utc};
use feepay_domain::receipt::datetime_gmt7;
use feepay_runtime::sql::stmt;
use sea_orm::ConnectionTrait;
use std::io::Write;
use std::process::ExitCode;

pub async fn run(out: &mut impl Write, conn: &Conn, cmd: &OperatorsCmd) -> anyhow::Result<ExitCode> {
    let (db, actor) = session(conn).await?;
    match cmd {
        OperatorsCmd::Add { name, role, scope, db_login } => {
            actor.require(Role::Admin, "add operators")?;
            let role = Role::parse(role)?;
            if scope != "*" {
                let known = db
                    .query_one(stmt("SELECT 1 AS x FROM agencies WHERE code = $1", vec![scope.clone().into()]))
                    .await?
                    .is_some();
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
            let inserted = txn
                .execute(stmt(
                    "INSERT INTO operators (name, role, scope, token_sha256, created_by, db_login) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
                    vec![name.clone().into(), role.as_str().into(), scope.clone().into(), access::token_hash(&token).into(), actor.name.clone().into(), db_login.clone().into()],
                ))
                .await?
                .rows_affected();
            if inserted == 0 {
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
            let rows = db
                .query_all(stmt(
                    "SELECT name, role, scope, db_login, created_at, created_by, revoked_at FROM operators ORDER BY name",
                    vec![],
                ))
                .await?;
            let mut t = Vec::new();
            for r in rows {
                let created: DateTime<Utc> = r.try_get("", "created_at")?;
                let revoked: Option<DateTime<Utc>> = r.try_get("", "revoked_at")?;
                t.push(vec![
                    r.try_get::<String>("", "name")?,
                    r.try_get::<String>("", "role")?,
                    r.try_get::<String>("", "scope")?,
                    r.try_get::<Option<String>>("", "db_login")?.unwrap_or_else(|| "-".into()),
                    datetime_gmt7(created),
                    r.try_get::<String>("", "created_by")?,
                    revoked.map(|t| format!("revoked {}", datetime_gmt7(t))).unwrap_or_else(|| "active".into()),
                ]);
            }
            table::print(out, &["NAME", "ROLE", "SCOPE", "DB LOGIN", "CREATED (GMT+7)", "BY", "STATE"], &t)?;
        }
        OperatorsCmd::Revoke { name, reason } => {
            actor.require(Role::Admin, "revoke operators")?;
            let txn = sea_orm::TransactionTrait::begin(&db).await?;
            let target = txn
                .query_one(stmt(
                    "SELECT role, scope FROM operators WHERE name = $1 AND revoked_at IS NULL FOR UPDATE",
                    vec![name.clone().into()],
                ))
                .await?;
            let Some(target) = target else {
                eprintln!("no active operator named {name}");
                return Ok(ExitCode::from(2));
            };
            let (role, scope): (String, String) = (target.try_get("", "role")?, target.try_get("", "scope")?);
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
                let others = txn
                    .query_all(stmt(
                        "SELECT scope FROM operators WHERE role = 'admin' AND revoked_at IS NULL AND name <> $1",
                        vec![name.clone().into()],
                    ))
                    .await?;
                let mut covered = false;
                for o in others {
                    let other: String = o.try_get("", "scope")?;
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
            txn.execute(stmt("UPDATE operators SET revoked_at = now() WHERE name = $1", vec![name.clone().into()]))
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
